#!/bin/bash
# Plants each of issue 16's bugs in a scratch copy and runs the unit and in-process integration tests
# against it; each bug must make them fail. A pattern that no longer matches the code is an error (exit 2),
# not a quiet "nothing planted":
#   1. a group counts as ready without being viable (src/host/readiness.ts, the one readiness rule);
#   2. an unbound endpoint makes its group not viable (src/host/readiness.ts, viabilityBlocker);
#   3. prepare skips the verify step when /dev/vfio/N is missing (src/handoff/plan.ts).
# Exit 0 when every bug fails the tests, 1 when one does not.
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
S=$(mktemp -d)/scratch
status=0
for bug in 1 2 3; do
  rm -rf $S; mkdir -p $S
  (cd $SRC && git ls-files -z | xargs -0 cp --parents -t $S)
  ln -s $SRC/node_modules $S/node_modules
  cd $S
  case $bug in
    1) file=src/host/readiness.ts; perl -0pi -e "s/  if \(blocker\) return \{ reason: 'GROUP_NOT_VIABLE', message: blocker \};\n//" $file ;;
    2) file=src/host/readiness.ts; perl -0pi -e "s/m\.driver !== undefined && !isUserDmaDriver\(m\.driver\)/!isUserDmaDriver(m.driver ?? '')/" $file ;;
    3) file=src/handoff/plan.ts; perl -0pi -e 's/if \(changes \|\| nodeMissing\)/if (changes)/' $file ;;
  esac
  echo "=== bug $bug: $file"
  if diff -u $SRC/$file $S/$file; then echo "bug $bug: pattern not found in $file (the code moved); update this script"; exit 2; fi
  out=$(timeout 900 nice npx vitest run --project unit --project integration src test/integration/engine test/integration/host 2>&1 | sed 's/\x1b\[[0-9;]*m//g')
  echo "$out" | grep -E "^ FAIL|Tests  |Test Files" | sort -u | head -20
  if echo "$out" | grep -qE "Tests .*[0-9]+ failed"; then echo "bug $bug: caught"; else echo "bug $bug: NOT caught"; status=1; fi
done
exit $status
