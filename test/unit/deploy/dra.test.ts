import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evaluate } from '@marcbachmann/cel-js';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments, stringify } from 'yaml';
import { gpuFacts } from '../../../src/devices/facts.js';
import { discoverHost } from '../../../src/host/discover.js';
import { DRIVER_NAME, sliceDevices, type SliceDevice } from '../../../src/dra/slice.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { SimulatedKernel } from '../../../src/sysfs/simulated-kernel.js';
import { REPO_ROOT, ensureHelm, ensureKubectl } from './support/tools.js';
import { allows, checkArgs, parseObjects, podSpec, rulesOf, validateObjects, type K8sObject } from './support/validate.js';

interface DeviceClass {
  metadata: { name: string };
  spec: { selectors: { cel: { expression: string } }[] };
}

const classes = parseAllDocuments(readFileSync(join(REPO_ROOT, 'deploy/dra/deviceclasses.yaml'), 'utf8')).map((d) => d.toJSON() as DeviceClass);

/** The DRA CEL environment's `device` for one of our slice devices: attributes by domain, unqualified ones under the driver's. */
function celDevice(d: SliceDevice): unknown {
  const attributes: Record<string, Record<string, unknown>> = {};
  for (const [key, value] of Object.entries(d.attributes)) {
    const slash = key.indexOf('/');
    const [domain, id] = slash >= 0 ? [key.slice(0, slash), key.slice(slash + 1)] : [DRIVER_NAME, key];
    (attributes[domain] ??= {})[id] = Object.values(value)[0];
  }
  return { driver: DRIVER_NAME, attributes };
}

async function devicesOf(profile: string): Promise<SliceDevice[]> {
  const snapshot = await discoverHost(new SimulatedKernel(await loadBuiltinProfile(profile)));
  return sliceDevices(snapshot, new Map(snapshot.gpus.map((g) => [g.fn.address, gpuFacts(g)])));
}

function selected(className: string, devices: readonly SliceDevice[]): string[] {
  const c = classes.find((k) => k.metadata.name === className)!;
  return devices.filter((d) => c.spec.selectors.every((s) => evaluate(s.cel.expression, { device: celDevice(d) }) === true)).map((d) => d.name);
}

describe('deploy/dra DeviceClasses select by the attributes the driver publishes (CEL evaluated on real profiles)', () => {
  it('ships the four classes', () => {
    expect(classes.map((c) => c.metadata.name)).toEqual(['gpu.handoff.dev', 'nvidia.gpu.handoff.dev', 'amd.gpu.handoff.dev', 'boot-gpu.gpu.handoff.dev']);
  });

  it('server with an ASPEED boot VGA and 4× H100: the passthrough and NVIDIA classes take the H100s, never the BMC; the boot class only the BMC', async () => {
    const devices = await devicesOf('server-aspeed-4xh100');
    const h100s = ['gpu-0000-18-00-0', 'gpu-0000-3b-00-0', 'gpu-0000-9b-00-0', 'gpu-0000-bb-00-0'];
    expect(selected('gpu.handoff.dev', devices)).toEqual(h100s);
    expect(selected('nvidia.gpu.handoff.dev', devices)).toEqual(h100s);
    expect(selected('amd.gpu.handoff.dev', devices)).toEqual([]);
    expect(selected('boot-gpu.gpu.handoff.dev', devices)).toEqual(['gpu-0000-02-00-0']);
  });

  it('MI300X host: the AMD class takes the AMD GPUs, the NVIDIA class none', async () => {
    const devices = await devicesOf('mi300x-sriov');
    const amd = selected('amd.gpu.handoff.dev', devices);
    expect(amd.length).toBeGreaterThan(0);
    expect(selected('nvidia.gpu.handoff.dev', devices)).toEqual([]);
    expect(amd.every((n) => selected('gpu.handoff.dev', devices).includes(n))).toBe(true);
  });

  it('workstation whose only GPU is the boot GPU: no default class selects it', async () => {
    const devices = await devicesOf('workstation-efifb');
    expect(selected('gpu.handoff.dev', devices)).toEqual([]);
    expect(selected('boot-gpu.gpu.handoff.dev', devices)).toEqual(['gpu-0000-01-00-0']);
  });
});

const kubectl = ensureKubectl();
describe.skipIf(!kubectl.path)('deploy/dra (kubectl kustomize)', () => {
  const objects: K8sObject[] = kubectl.path ? parseObjects(execFileSync(kubectl.path, ['kustomize', join(REPO_ROOT, 'deploy/dra')], { encoding: 'utf8' })) : [];

  it('renders valid objects; the DaemonSet passes only flags the CLI knows and runs on handoff.dev/mode=dra nodes', () => {
    expect(validateObjects(objects, 'vfio-handoff')).toEqual([]);
    const ds = objects.find((o) => o.kind === 'DaemonSet')!;
    const spec = podSpec(ds)!;
    expect((spec as { nodeSelector?: Record<string, string> }).nodeSelector?.['handoff.dev/mode']).toBe('dra');
    const args = spec.containers[0]!.args ?? [];
    expect(checkArgs(args)).toEqual([]);
    expect(args.slice(0, 3)).toEqual(['agent', '--front-end', 'dra']);
  });

  it('RBAC: ResourceSlices written, ResourceClaims only read, no pods or secrets', () => {
    const rules = rulesOf(objects, 'ClusterRole', 'dra');
    for (const verb of ['create', 'update', 'delete', 'list', 'watch']) expect(allows(rules, 'resource.k8s.io', 'resourceslices', verb)).toBe(true);
    expect(allows(rules, 'resource.k8s.io', 'resourceclaims', 'get')).toBe(true);
    for (const verb of ['create', 'update', 'patch', 'delete']) expect(allows(rules, 'resource.k8s.io', 'resourceclaims', verb)).toBe(false);
    expect(allows(rules, '', 'secrets', 'get')).toBe(false);
    expect(allows(rules, '', 'pods', 'get')).toBe(false);
  });

  it('the agent DaemonSet stays off DRA nodes', () => {
    const agent = parseYaml(readFileSync(join(REPO_ROOT, 'deploy/agent/daemonset.yaml'), 'utf8')) as K8sObject;
    expect(JSON.stringify(podSpec(agent))).toMatch(/"key":"handoff.dev\/mode","operator":"NotIn","values":\["plugin-only","dra"\]/);
  });
});

const helm = ensureHelm();
describe.skipIf(!helm.path)('helm chart: dra.enabled', () => {
  function template(values: unknown): K8sObject[] {
    const dir = mkdtempSync(join(tmpdir(), 'vh-dra-'));
    try {
      writeFileSync(join(dir, 'values.yaml'), stringify(values));
      const r = spawnSync(helm.path!, ['template', 'vh', join(REPO_ROOT, 'helm/vfio-handoff'), '--namespace', 'gpu-system', '-f', join(dir, 'values.yaml')], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return parseObjects(r.stdout);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('off by default: no DRA object', () => {
    expect(template({}).filter((o) => o.metadata.labels?.['app.kubernetes.io/component'] === 'dra')).toEqual([]);
  });

  it('on: valid objects, the same DeviceClass selectors as deploy/dra, node policy flags passed through', () => {
    const objects = template({ dra: { enabled: true, allowBootGpu: true } });
    expect(validateObjects(objects, 'gpu-system')).toEqual([]);
    const rendered = objects.filter((o) => o.kind === 'DeviceClass') as unknown as DeviceClass[];
    expect(rendered.map((c) => [c.metadata.name, c.spec.selectors[0]!.cel.expression])).toEqual(classes.map((c) => [c.metadata.name, c.spec.selectors[0]!.cel.expression.trim()]));
    const ds = objects.find((o) => o.kind === 'DaemonSet' && o.metadata.name.endsWith('-dra'))!;
    const args = podSpec(ds)!.containers[0]!.args ?? [];
    expect(checkArgs(args)).toEqual([]);
    expect(args).toContain('--allow-boot-gpu');
    expect(args).not.toContain('--keep-on-vfio');
  });
});
