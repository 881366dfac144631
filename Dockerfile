# syntax=docker/dockerfile:1
# One image, one binary (`vfio-handoff agent|plugin|operator|inspect|prepare|release`).
# Build:  docker build -t ghcr.io/vfio-handoff/vfio-handoff:0.1.0 .
# Base images are pinned to a Node 20 / Debian 12 release; never `latest`.

# --- build: compile TypeScript and keep only production dependencies -----------------------------------------
FROM node:20.20.2-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY proto ./proto
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime: slim Debian with Node and the PCI ID database -----------------------------------------------------
FROM node:20.20.2-bookworm-slim AS runtime
# pci.ids (Debian's hwdata depends on it) gives /usr/share/misc/pci.ids, used to name GPU models in resource names.
# Programs the code runs (src/sysfs/programs.ts): modprobe (kmod, not in slim images) loads vfio-pci;
# flock (util-linux) holds the state lock; sh and cat come with dash and coreutils.
RUN apt-get update \
 && apt-get install -y --no-install-recommends hwdata kmod util-linux dash coreutils \
 && rm -rf /var/lib/apt/lists/* \
 && test -s /usr/share/misc/pci.ids \
 && command -v modprobe && command -v flock && command -v sh && command -v cat && command -v node
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto ./proto
# The operator compares the installed CRDs with these at start-up, and the operator and the agent validate every
# object they read against them (src/api/v1alpha1/crd.ts resolves ../../../deploy/crds from dist/api/v1alpha1).
COPY deploy/crds ./deploy/crds
RUN printf '#!/bin/sh\nexec node /app/dist/cli/main.js "$@"\n' > /usr/local/bin/vfio-handoff \
 && chmod 0755 /usr/local/bin/vfio-handoff
# Non-root by default: the operator and the read-only plugin run like this. Only the agent's DaemonSet
# overrides it with runAsUser: 0 (privileged), because writing sysfs needs root.
USER 65532:65532
EXPOSE 9464 9465
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["--help"]
