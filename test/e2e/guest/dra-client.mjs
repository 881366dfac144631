// The kubelet side of DRA, reduced to what kubelet 1.34's plugin manager and DRA manager send over the wire
// (pkg/kubelet/pluginmanager + pkg/kubelet/cm/dra): GetInfo on the registration socket, the service chosen the way
// kubelet chooses it (the first entry of the plugin's supported_versions that kubelet knows), then
// NodePrepareResources / NodeUnprepareResources with claims {namespace, uid, name} only. Run in the QEMU guest,
// where there is no kube-apiserver for the Go kubelet harness; the peers suite drives the real kubelet code.
// Plain JavaScript on purpose (runs unbuilt in the guest): only @grpc/grpc-js and the API's .proto files.
//
//   node dra-client.mjs <repo> <registration socket> info|prepare|unprepare [claims JSON]
// Prints one JSON object: {info, service, response} or {error}.
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [repo, regSocket, op, claimsJson] = process.argv.slice(2);
const require = createRequire(join(repo, 'package.json'));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

/** kubelet 1.34.4: servicesSupportedByKubelet (pkg/kubelet/cm/dra/plugin/dra_plugin.go). */
const KUBELET_SERVICES = ['v1.DRAPlugin', 'v1beta1.DRAPlugin'];
const OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, arrays: true, objects: true, oneofs: true };
const load = (p) => grpc.loadPackageDefinition(protoLoader.loadSync(join(repo, 'proto', p), OPTIONS));

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 120_000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function main() {
  const reg = load('pluginregistration/v1/api.proto').pluginregistration.Registration;
  const regClient = new reg(`unix:${regSocket}`, grpc.credentials.createInsecure());
  const info = await unary(regClient, 'GetInfo', {});
  const chosen = (info.supported_versions ?? []).find((s) => KUBELET_SERVICES.includes(s));
  if (info.type !== 'DRAPlugin' || chosen === undefined) {
    await unary(regClient, 'NotifyRegistrationStatus', { plugin_registered: false, error: `unusable plugin ${JSON.stringify(info)}` });
    return { info, error: 'kubelet would refuse this plugin' };
  }
  await unary(regClient, 'NotifyRegistrationStatus', { plugin_registered: true, error: '' });
  regClient.close();
  if (op === 'info') return { info, service: chosen };
  const version = chosen.split('.')[0];
  const Dra = load(`dra/${version}/api.proto`).k8s.io.kubelet.pkg.apis.dra[version].DRAPlugin;
  const endpoint = info.endpoint || regSocket;
  const client = new Dra(`unix:${endpoint}`, grpc.credentials.createInsecure());
  const claims = JSON.parse(claimsJson ?? '[]');
  const method = op === 'prepare' ? 'NodePrepareResources' : 'NodeUnprepareResources';
  const response = await unary(client, method, { claims });
  client.close();
  return { info, service: chosen, response };
}

main().then(
  (out) => {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    process.exit(0);
  },
  (err) => {
    process.stdout.write(`${JSON.stringify({ error: String(err?.message ?? err), code: err?.code })}\n`);
    process.exit(1);
  },
);
