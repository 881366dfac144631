// Scenario runner, started by the guest's /init (PID 1) with the `e2e_*` kernel cmdline parameters in its env.
// Plain JavaScript on purpose: it runs unbuilt inside the guest and must not import our code, because the facts
// it records (driver links, driver_override, /dev/vfio, /proc/iomem, /proc/fb, vtconsoles, dmesg) are the
// independent witness the tests check the CLI's claims against.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync, renameSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { handoffTiming } from './handoff-timing.mjs';

const env = process.env;
const REPO = env.e2e_repo ?? '';
const OUT = env.e2e_out ?? '/tmp';
const SCENARIO = env.e2e_scenario ?? '';
const CLI = join(REPO, 'dist', 'cli', 'main.js');
const STATE_DIR = '/var/lib/vfio-handoff';
const HERE = dirname(fileURLToPath(import.meta.url));
const t0 = Date.now();

const report = {
  scenario: SCENARIO,
  kernelRelease: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
  nodeVersion: process.version,
  steps: [],
  complete: false,
  runnerMs: 0,
};

function flush() {
  report.runnerMs = Date.now() - t0;
  // Write then rename, so the host never reads a half-written report if the guest dies mid-write.
  writeFileSync(join(OUT, 'report.json.tmp'), JSON.stringify(report, null, 1));
  renameSync(join(OUT, 'report.json.tmp'), join(OUT, 'report.json'));
}

function log(msg) {
  console.log(`E2E: [${((Date.now() - t0) / 1000).toFixed(2)}s] ${msg}`);
}

const readOr = (p, fallback = null) => {
  try {
    return readFileSync(p, 'utf8').trim();
  } catch {
    return fallback;
  }
};
const linkBase = (p) => {
  try {
    return basename(readlinkSync(p));
  } catch {
    return null;
  }
};
const ls = (p) => {
  try {
    return readdirSync(p).sort();
  } catch {
    return [];
  }
};

let dmesgSeen = 0;
function newDmesg() {
  const r = spawnSync('dmesg', [], { encoding: 'utf8' });
  const lines = (r.stdout ?? '').split('\n').filter((l) => l !== '');
  const fresh = lines.slice(dmesgSeen);
  dmesgSeen = lines.length;
  return fresh;
}

function readTree(dir, prefix = '', out = {}) {
  for (const name of ls(dir)) {
    const p = join(dir, name);
    let st;
    try {
      st = statSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) readTree(p, `${prefix}${name}/`, out);
    else out[`${prefix}${name}`] = (readOr(p, '<unreadable>') ?? '').slice(0, 65536);
  }
  return out;
}

function facts() {
  const pci = {};
  for (const a of ls('/sys/bus/pci/devices')) {
    const d = `/sys/bus/pci/devices/${a}`;
    const override = readOr(`${d}/driver_override`);
    pci[a] = {
      class: readOr(`${d}/class`),
      vendor: readOr(`${d}/vendor`),
      device: readOr(`${d}/device`),
      driver: linkBase(`${d}/driver`),
      driverOverride: override === '(null)' ? null : override,
      bootVga: readOr(`${d}/boot_vga`),
      enable: readOr(`${d}/enable`),
      iommuGroup: linkBase(`${d}/iommu_group`),
    };
  }
  const groups = {};
  for (const g of ls('/sys/kernel/iommu_groups')) groups[g] = ls(`/sys/kernel/iommu_groups/${g}/devices`);
  const platformFramebuffers = {};
  const platformFramebufferPaths = {};
  for (const p of ls('/sys/bus/platform/devices')) {
    if (!/framebuffer/.test(p)) continue;
    platformFramebuffers[p] = linkBase(`/sys/bus/platform/devices/${p}/driver`);
    // Where the device sits in /sys/devices: under devices/platform, or under the PCI device sysfb parented it to.
    try {
      platformFramebufferPaths[p] = readlinkSync(`/sys/bus/platform/devices/${p}`).replace(/^(\.\.\/)+/, '');
    } catch {
      platformFramebufferPaths[p] = null;
    }
  }
  const vtconsoles = ls('/sys/class/vtconsole').map((entry) => ({
    entry,
    name: readOr(`/sys/class/vtconsole/${entry}/name`, ''),
    bind: readOr(`/sys/class/vtconsole/${entry}/bind`, ''),
  }));
  const iomem = (readOr('/proc/iomem', '') ?? '')
    .split('\n')
    .filter((l) => /efifb|vesafb|simplefb|simple-framebuffer|BOOTFB|bochs|vfio|drm/i.test(l))
    .map((l) => l.trim());
  return {
    uptime: Number((readOr('/proc/uptime', '0') ?? '0').split(' ')[0]),
    pci,
    groups,
    devVfio: ls('/dev/vfio'),
    platformFramebuffers,
    platformFramebufferPaths,
    procFb: (readOr('/proc/fb', '') ?? '').split('\n').filter((l) => l !== ''),
    vtconsoles,
    iomem,
    dmesg: newDmesg(),
    stateDir: readTree(STATE_DIR),
    // What a VMM needs besides the group: vfio-pci and an IOMMU backend (type1 or iommufd's /dev/iommu).
    modules: {
      vfio_pci: existsSync('/sys/module/vfio_pci'),
      vfio_iommu_type1: existsSync('/sys/module/vfio_iommu_type1'),
      iommufd: existsSync('/sys/module/iommufd'),
    },
    devIommu: existsSync('/dev/iommu'),
  };
}

function record(name, extra = {}) {
  const s = { name, ...extra, facts: facts() };
  report.steps.push(s);
  flush();
  return s;
}

function cli(args, extraEnv = {}) {
  const argv = [CLI, ...args];
  const started = Date.now();
  const r = spawnSync(process.execPath, argv, {
    encoding: 'utf8',
    env: { ...process.env, ...extraEnv },
    timeout: 180_000,
    maxBuffer: 32 << 20,
  });
  let json = null;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = null;
  }
  const run = {
    argv: ['vfio-handoff', ...args],
    exitCode: r.status,
    signal: r.signal,
    stdout: r.stdout ?? '',
    stderr: (r.stderr ?? '').slice(-16384),
    json,
    ms: Date.now() - started,
    ...(Object.keys(extraEnv).length > 0 ? { env: extraEnv } : {}),
  };
  log(`vfio-handoff ${args.join(' ')} -> exit=${r.status} signal=${r.signal} (${run.ms} ms)`);
  return run;
}

/** Runs the CLI and records its output together with the facts right after it. */
function cliStep(name, args, extraEnv = {}) {
  return record(name, { cli: cli(args, extraEnv) });
}

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  log(`${cmd} ${args.join(' ')} -> ${r.status}${r.stderr ? ` ${r.stderr.trim()}` : ''}`);
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function modprobe(...mods) {
  for (const m of mods) sh('modprobe', [m]);
}

/** Driver probing after modprobe is asynchronous to nothing here, but give the bus a moment to settle. */
function waitFor(pred, ms = 10_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (pred()) return true;
    spawnSync('sleep', ['0.2']);
  }
  return pred();
}

const driverOf = (a) => linkBase(`/sys/bus/pci/devices/${a}/driver`);
const groupOf = (a) => linkBase(`/sys/bus/pci/devices/${a}/iommu_group`);

/**
 * The VMM check (vfio_check.py) on `address` and every other function of its group that vfio-pci holds: container,
 * viable group, TYPE1v2, device fd, then a read and an mmap of every memory BAR, as QEMU does.
 */
function vfioCheck(name, address) {
  const group = groupOf(address) ?? '';
  const members = ls(`/sys/kernel/iommu_groups/${group}/devices`).filter((a) => a === address || driverOf(a) === 'vfio-pci');
  const devices = members.includes(address) ? members : [address, ...members];
  const r = spawnSync('python3', [join(HERE, 'vfio_check.py'), group, ...devices], { encoding: 'utf8' });
  let data = null;
  try {
    data = JSON.parse(r.stdout);
  } catch {
    data = { ok: false, parseError: true };
  }
  log(`vfio_check ${group} ${devices.join(' ')} -> ${r.status} ${r.stdout.trim()} ${r.stderr.trim()}`);
  // The facts right after the check carry its dmesg (e.g. "BAR 0: can't reserve").
  report.steps.push({ name, data: { ...data, status: r.status, stderr: r.stderr }, facts: facts() });
  flush();
}

/** What a user does without our tool: driver_override + drivers_probe, nothing else (no console/framebuffer release). */
function bindOnly(address) {
  const d = `/sys/bus/pci/devices/${address}`;
  const writes = [];
  const write = (path, value) => {
    try {
      writeFileSync(path, value);
      writes.push({ path, value, ok: true });
    } catch (e) {
      writes.push({ path, value, ok: false, code: e.code });
    }
  };
  if (driverOf(address) !== null) write(`${d}/driver/unbind`, address);
  write(`${d}/driver_override`, 'vfio-pci');
  write('/sys/bus/pci/drivers_probe', address);
  log(`bind-only ${address}: ${JSON.stringify(writes)}`);
  return writes;
}

const BOOT_GPU = '0000:00:02.0';

const scenarios = {
  // a. Boot VGA + HDA in one group under efifb, no native drivers.
  bootGpu() {
    record('initial');
    cliStep('inspect', ['inspect', '--json']);
    cliStep('inspect-allowed', ['inspect', '--json', '--allow-boot-gpu']);
    cliStep('prepare-not-allowed', ['prepare', BOOT_GPU, '--json']);
    cliStep('prepare', ['prepare', BOOT_GPU, '--allow-boot-gpu', '--json']);
    vfioCheck('vfio-check', BOOT_GPU);
    cliStep('inspect-after-prepare', ['inspect', '--json', '--allow-boot-gpu']);
    cliStep('prepare-again', ['prepare', BOOT_GPU, '--allow-boot-gpu', '--json']);
    cliStep('release', ['release', BOOT_GPU, '--json']);
    cliStep('release-again', ['release', BOOT_GPU, '--json']);
  },

  // b. Native drivers bound first (bochs-drm + snd_hda_intel): prepare, then release gives them back.
  nativeDrivers() {
    modprobe('bochs', 'snd-hda-intel', 'vfio-pci');
    waitFor(() => driverOf(BOOT_GPU) !== null && driverOf('0000:00:02.1') !== null);
    record('initial');
    cliStep('inspect', ['inspect', '--json', '--allow-boot-gpu']);
    cliStep('prepare', ['prepare', BOOT_GPU, '--allow-boot-gpu', '--json']);
    vfioCheck('vfio-check', BOOT_GPU);
    cliStep('release', ['release', BOOT_GPU, '--json']);
    waitFor(() => existsSync('/sys/class/vtconsole/vtcon1'), 3000);
    record('settled');
  },

  // c. A secondary VGA (boot_vga=0) beside the boot VGA.
  secondaryVga() {
    const second = '0000:00:05.0';
    modprobe('vfio-pci');
    record('initial');
    cliStep('inspect', ['inspect', '--json']);
    const first = cliStep('prepare', ['prepare', second, '--json']);
    if (first.cli.exitCode === 4) {
      // The CLI may ask for the boot-GPU permission because, on 6.1, this also takes the boot console.
      cliStep('prepare-allowed', ['prepare', second, '--allow-boot-gpu', '--json']);
    }
    vfioCheck('vfio-check', second);
    cliStep('release', ['release', second, '--json']);
  },

  // d. The GPU shares its group with a foreign device: prepare must refuse and write nothing.
  foreignDevice() {
    modprobe('vfio-pci', 'e1000');
    const gpus = ls('/sys/bus/pci/devices').filter((a) => !a.startsWith('0000:00:') && readOr(`/sys/bus/pci/devices/${a}/class`)?.startsWith('0x0300'));
    const gpu = gpus[0] ?? '';
    record('initial', { data: { gpu } });
    cliStep('inspect', ['inspect', '--json', '--allow-boot-gpu']);
    cliStep('prepare', ['prepare', gpu, '--json']);
    cliStep('prepare-allowed', ['prepare', gpu, '--allow-boot-gpu', '--json']);
    cliStep('prepare-by-id', ['prepare', '1234:1111', '--json']);
    // Nothing was handed off, so a VMM must not get the group either.
    vfioCheck('vfio-check', gpu);
  },

  // e. SIGKILL after each step k of prepare, then prepare again: converge or roll back, never half-bound.
  crashRecovery() {
    modprobe('bochs', 'snd-hda-intel', 'vfio-pci');
    waitFor(() => driverOf(BOOT_GPU) !== null && driverOf('0000:00:02.1') !== null);
    record('initial');
    const maxK = Number(env.e2e_maxk ?? '24');
    for (let k = 1; k <= maxK; k++) {
      const crash = cliStep(`k${k}:crash`, ['prepare', BOOT_GPU, '--allow-boot-gpu', '--json'], {
        VFIO_HANDOFF_TEST_HOOKS: '1',
        VFIO_HANDOFF_CRASH_AFTER_STEP: String(k),
      });
      const killed = crash.cli.signal === 'SIGKILL';
      if (killed) cliStep(`k${k}:rerun`, ['prepare', BOOT_GPU, '--allow-boot-gpu', '--json']);
      // Converged (by the rerun, or by the run the hook never stopped): a VMM must be able to use it.
      if (driverOf(BOOT_GPU) === 'vfio-pci') vfioCheck(`k${k}:vfio-check`, BOOT_GPU);
      cliStep(`k${k}:release`, ['release', BOOT_GPU, '--json']);
      waitFor(() => driverOf(BOOT_GPU) === 'bochs-drm' && driverOf('0000:00:02.1') === 'snd_hda_intel', 3000);
      record(`k${k}:settled`);
      if (!killed) {
        report.steps.push({ name: 'last-k', data: { k, stepsInRun: k - 1 } });
        flush();
        break;
      }
    }
  },

  // e'. Same, on the efifb boot GPU with no native driver, for one k per boot: once prepare has run, the kernel
  // has unregistered efi-framebuffer.0 for good, so the console/framebuffer steps exist only in a fresh boot.
  crashRecoveryEfifb() {
    modprobe('vfio-pci');
    record('initial');
    const k = env.e2e_k ?? '1';
    const crash = cliStep('crash', ['prepare', BOOT_GPU, '--allow-boot-gpu', '--json'], {
      VFIO_HANDOFF_TEST_HOOKS: '1',
      VFIO_HANDOFF_CRASH_AFTER_STEP: k,
    });
    if (crash.cli.signal === 'SIGKILL') cliStep('rerun', ['prepare', BOOT_GPU, '--allow-boot-gpu', '--json']);
    if (driverOf(BOOT_GPU) === 'vfio-pci') vfioCheck('vfio-check', BOOT_GPU);
    cliStep('release', ['release', BOOT_GPU, '--json']);
  },

  // h. The DRA kubelet plugin (`agent --front-end dra`, no API server: claims from files) on the boot GPU on its
  // native drivers, driven over its sockets the way kubelet 1.34 drives it (guest/dra-client.mjs): registration,
  // a claim without the boot-GPU permission (refused, nothing moves), a claim with it (group on vfio-pci, VMM
  // check), unprepare (back on bochs-drm + snd_hda_intel), unprepare again (idempotent).
  draGrpc() {
    modprobe('bochs', 'snd-hda-intel', 'vfio-pci');
    waitFor(() => driverOf(BOOT_GPU) !== null && driverOf('0000:00:02.1') !== null);
    record('initial');
    const node = 'qemu-guest';
    const claimsDir = join(OUT, 'claims');
    const registry = '/var/lib/kubelet/plugins_registry';
    const pluginDir = '/var/lib/kubelet/plugins/gpu.handoff.dev';
    const cdiDir = '/var/run/cdi';
    const regSocket = join(registry, 'gpu.handoff.dev-reg.sock');
    const device = `gpu-${BOOT_GPU.replace(/[:.]/g, '-')}`;
    const claim = (name, uid, config) => ({
      apiVersion: 'resource.k8s.io/v1',
      kind: 'ResourceClaim',
      metadata: { name, namespace: 'vms', uid },
      spec: { devices: { requests: [{ name: 'gpu', exactly: { deviceClassName: 'gpu.handoff.dev' } }] } },
      status: {
        allocation: {
          devices: {
            results: [{ request: 'gpu', driver: 'gpu.handoff.dev', pool: node, device }],
            config: config ? [{ source: 'FromClaim', requests: ['gpu'], opaque: { driver: 'gpu.handoff.dev', parameters: config } }] : [],
          },
        },
        reservedFor: [{ resource: 'pods', name: 'virt-launcher-vm1', uid: '00000000-0000-0000-0000-0000000000aa' }],
      },
    });
    mkdirSync(join(claimsDir, 'vms'), { recursive: true });
    writeFileSync(join(claimsDir, 'vms', 'no-permit.json'), JSON.stringify(claim('no-permit', '11111111-1111-1111-1111-111111111111', null)));
    writeFileSync(
      join(claimsDir, 'vms', 'gpu-claim.json'),
      JSON.stringify(claim('gpu-claim', '22222222-2222-2222-2222-222222222222', { apiVersion: 'gpu.handoff.dev/v1alpha1', kind: 'GpuConfig', allowBootGpu: true })),
    );
    const agentLog = join(OUT, 'dra-agent.log');
    const fd = openSync(agentLog, 'w');
    const agent = spawn(process.execPath, [
      CLI, 'agent', '--front-end', 'dra', '--node-name', node, '--claims-dir', claimsDir, '--resource-slice-file', join(OUT, 'resourceslice.json'),
      '--plugin-registry-dir', registry, '--dra-plugin-dir', pluginDir, '--cdi-dir', cdiDir, '--allow-boot-gpu',
      '--state-dir', STATE_DIR, '--metrics-addr', '', '--log-level', 'debug',
    ], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const agentText = () => readOr(agentLog, '') ?? '';
    const up = waitFor(() => existsSync(regSocket), 180_000);
    log(`DRA agent pid ${agent.pid}: registration socket ${up ? 'up' : 'MISSING'}`);
    const client = (name, op, claims) => {
      const started = Date.now();
      const r = spawnSync(process.execPath, [join(HERE, 'dra-client.mjs'), REPO, regSocket, op, JSON.stringify(claims)], { encoding: 'utf8', timeout: 300_000 });
      let data;
      try {
        data = JSON.parse(r.stdout);
      } catch {
        data = { parseError: true, stdout: r.stdout };
      }
      log(`dra-client ${op} -> ${r.status} ${r.stdout.trim().slice(0, 400)} ${(r.stderr ?? '').trim().slice(0, 400)} (${Date.now() - started} ms)`);
      return record(name, { data: { ...data, status: r.status, ms: Date.now() - started } });
    };
    const ref = (name, uid) => [{ namespace: 'vms', uid, name }];
    const noPermit = ref('no-permit', '11111111-1111-1111-1111-111111111111');
    const permitted = ref('gpu-claim', '22222222-2222-2222-2222-222222222222');
    // Each client run costs ~15-30 s of node start-up under TCG: registration is checked on the first call's
    // GetInfo, and the two repeated unprepares go in one request, as kubelet batches a driver's claims.
    client('dra-prepare-not-allowed', 'prepare', noPermit);
    client('dra-prepare', 'prepare', permitted);
    vfioCheck('vfio-check', BOOT_GPU);
    record('dra-files', { data: { cdi: readTree(cdiDir), plugin: readTree(pluginDir), slice: readOr(join(OUT, 'resourceslice.json')) } });
    client('dra-prepare-again', 'prepare', permitted);
    client('dra-unprepare', 'unprepare', permitted);
    waitFor(() => driverOf(BOOT_GPU) === 'bochs-drm' && driverOf('0000:00:02.1') === 'snd_hda_intel', 5000);
    record('settled', { data: { cdi: readTree(cdiDir), plugin: readTree(pluginDir) } });
    client('dra-unprepare-again', 'unprepare', [...permitted, ...noPermit]);
    agent.kill('SIGTERM');
    waitFor(() => !existsSync(regSocket), 30_000);
    spawnSync('sleep', ['1']);
    agent.kill('SIGKILL');
    agent.unref();
    record('agent-stopped', { data: { log: agentText().slice(-16384) } });
  },

  // f. The boot-VGA handoff on native drivers timed against the bare recipe (same writes, plain sh), in one boot.
  handoffTiming() {
    handoffTiming({ CLI, REPO, OUT, BOOT_GPU, AUDIO: '0000:00:02.1', record, cliStep, modprobe, waitFor, driverOf, report, flush, log, rounds: env.e2e_rounds });
  },

  // g. A non-VGA boot display (bochs-display, class 0x0380): OVMF's GOP puts efifb inside its BAR0, there is no
  // boot_vga, and vfio-pci does not remove the firmware framebuffer of a non-VGA device. vfio-pci is loaded but no
  // IOMMU backend: prepare must load vfio_iommu_type1 itself. After release gives efifb back,
  // a plain driver_override + drivers_probe (what users do by hand) shows the BAR conflict our release step avoids,
  // and a prepare on top of that bind repairs it.
  bochsDisplay() {
    // vfio-pci without an IOMMU backend: modprobe pulls vfio_iommu_type1 in through vfio's softdep, so remove it
    // again, as on hosts that load vfio-pci without modprobe's softdep handling (insmod from an initramfs).
    modprobe('vfio-pci');
    sh('modprobe', ['-r', 'vfio_iommu_type1']);
    record('initial', { data: { iomem: readOr('/proc/iomem', '') } });
    cliStep('inspect', ['inspect', '--json']);
    cliStep('prepare-not-allowed', ['prepare', BOOT_GPU, '--json']);
    cliStep('prepare', ['prepare', BOOT_GPU, '--allow-boot-gpu', '--json']);
    vfioCheck('vfio-check', BOOT_GPU);
    cliStep('inspect-after-prepare', ['inspect', '--json', '--allow-boot-gpu']);
    cliStep('release', ['release', BOOT_GPU, '--json']);
    const writes = bindOnly(BOOT_GPU);
    record('bind-only', { data: { writes } });
    vfioCheck('vfio-check-bind-only', BOOT_GPU);
    cliStep('inspect-bind-only', ['inspect', '--json', '--allow-boot-gpu']);
    cliStep('prepare-over-bind-only', ['prepare', BOOT_GPU, '--allow-boot-gpu', '--json']);
    vfioCheck('vfio-check-repaired', BOOT_GPU);
  },
};

try {
  log(`scenario ${SCENARIO} on ${report.kernelRelease}`);
  // The first facts carry the whole boot log (efifb, vgaarb, iommu group lines); later ones only what is new.
  const fn = scenarios[SCENARIO];
  if (fn === undefined) throw new Error(`unknown scenario ${SCENARIO}`);
  fn();
  report.complete = true;
} catch (err) {
  report.error = String(err?.stack ?? err);
  log(`runner failed: ${report.error}`);
}
flush();
log(`done in ${report.runnerMs} ms`);
