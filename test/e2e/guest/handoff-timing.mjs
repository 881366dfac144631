// Scenario "handoffTiming" (plain JS, runs unbuilt in the guest): the boot-VGA handoff timed two ways in one boot.
// 1. An attribution run of our `prepare` under strace (-f -ttt -T -y): its sysfs writes, in order, become the bare
//    recipe, and its timestamps say where our time goes (process start, discovery, steps, verification, fsyncs).
// 2. Alternating timed runs, restored to the same state in between: the bare recipe (`sh` doing only those writes)
//    and our `prepare` (the whole process, wall time); plus `sh -c :` and `node -e 0` to separate process start.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const WRITE = /^(\d+)\s+(\d+\.\d+)\s+write\(\d+<(\/sys\/[^>]+)>, "((?:[^"\\]|\\.)*)"(?:\.\.\.)?, \d+\) = (-?\d+)[^<]*<(\d+\.\d+)>/;
const FSYNC = /^(\d+)\s+(\d+\.\d+)\s+(?:fsync|fdatasync)\(\d+<([^>]*)>\) = \d+ <(\d+\.\d+)>/;
const TIME = /^(\d+)\s+(\d+\.\d+)\s+/;

const unescape = (s) => s.replace(/\\n/g, '\n').replace(/\\t/g, '\t').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
const shQuote = (s) => `'${s.replace(/'/g, `'\\''`)}'`;
const ms = (a, b) => Math.round((b - a) * 1e6) / 1e3;

/**
 * With -f, a syscall interrupted by another thread's is split into `<pid> <t> write(… <unfinished ...>` and, later,
 * `<pid> <t'> <... write resumed>) = 8 <0.01>`; join each pair into one line at the start time.
 */
export function joinResumed(lines) {
  const open = new Map();
  const out = [];
  for (const l of lines) {
    const pid = TIME.exec(l)[1];
    if (l.endsWith('<unfinished ...>')) {
      open.set(pid, { line: l.slice(0, -'<unfinished ...>'.length).trimEnd(), index: out.length });
      out.push(l);
      continue;
    }
    const resumed = /<\.\.\. \w+ resumed>\s?(.*)$/.exec(l);
    const start = open.get(pid);
    if (resumed && start) {
      out[start.index] = `${start.line}${resumed[1]}`;
      open.delete(pid);
      continue;
    }
    out.push(l);
  }
  return out;
}

/**
 * Phases of one traced run, in ms, from strace's wall-clock timestamps. `repo` is where dist/ and node_modules/ live.
 * nodeStart: exec → first file of ours (Node's own start); load: → first discovery read of /sys/bus|class|kernel
 * (loading our modules and their dependencies, lazily per subcommand); discoveryAndPlan: → first sysfs write (discovery,
 * verdict, plan, lock, journal begin); steps: first → last sysfs write (with read-back checks and journal updates);
 * afterLastWrite: → exit (verify-group, records, report).
 */
export function attribute(trace, repo) {
  const lines = joinResumed(trace.split('\n').filter((l) => TIME.test(l))).sort((a, b) => Number(TIME.exec(a)[2]) - Number(TIME.exec(b)[2]));
  const at = (l) => Number(TIME.exec(l)[2]);
  const exec = lines.find((l) => /\sexecve\(/.test(l));
  const mainPid = exec ? TIME.exec(exec)[1] : '';
  const ours = lines.filter((l) => l.includes(`openat(AT_FDCWD</>, "${repo}/`) || l.includes(`openat(AT_FDCWD, "${repo}/`));
  const firstSys = lines.find((l) => /openat\([^,]*, "\/sys\/(bus|class|kernel)\//.test(l));
  // The CLI's own exit, not that of a child it ran (modprobe).
  const exit = lines.find((l) => TIME.exec(l)[1] === mainPid && /exit_group\(/.test(l)) ?? lines.at(-1);
  const writes = lines.map((l) => WRITE.exec(l)).filter(Boolean).map((m) => ({ at: Number(m[2]), path: m[3], data: unescape(m[4]), ret: Number(m[5]), kernelMs: Number(m[6]) * 1000 }));
  const fsyncs = lines.map((l) => FSYNC.exec(l)).filter(Boolean).map((m) => ({ at: Number(m[2]), path: m[3], ms: Number(m[4]) * 1000 }));
  if (!exec || !firstSys || ours.length === 0 || writes.length === 0) return { error: 'trace has no execve, module load, /sys read or sysfs write', lines: lines.length };
  const t0 = at(exec);
  const first = writes[0].at;
  const last = writes.at(-1).at;
  const end = at(exit);
  return {
    totalMs: ms(t0, end),
    nodeStartMs: ms(t0, at(ours[0])),
    loadMs: ms(at(ours[0]), at(firstSys)),
    discoveryAndPlanMs: ms(at(firstSys), first),
    stepsMs: ms(first, last),
    afterLastWriteMs: ms(last, end),
    moduleFiles: ours.length,
    modulesAfterDiscoveryStarted: ours.filter((l) => at(l) > at(firstSys)).length,
    kernelWriteMs: Math.round(writes.reduce((n, w) => n + w.kernelMs, 0) * 1000) / 1000, // inside the sysfs write syscalls
    fsyncs: fsyncs.length,
    fsyncMs: Math.round(fsyncs.reduce((n, f) => n + f.ms, 0) * 1000) / 1000,
    writes: writes.map(({ path, data, ret, kernelMs }) => ({ path, data, ret, kernelMs })),
    fsyncPaths: [...new Set(fsyncs.map((f) => f.path))],
  };
}

/** The bare recipe: exactly these writes, in this order, with the shell's echo (no checks, no waits). */
export function bareScript(writes) {
  return ['#!/bin/sh', 'set -e', ...writes.map((w) => `printf %s ${shQuote(w.data)} > ${w.path}`)].join('\n') + '\n';
}

/** Its inverse for this layout: clear the overrides, take the functions off vfio-pci, reprobe, rebind the consoles. */
export function restoreScript(writes) {
  const overridden = writes.filter((w) => w.path.endsWith('/driver_override')).map((w) => w.path.split('/').at(-2));
  const consoles = writes.filter((w) => /\/vtconsole\/[^/]+\/bind$/.test(w.path) && w.data.trim() === '0').map((w) => w.path);
  return ['#!/bin/sh', ...overridden.map((a) => `echo > /sys/bus/pci/devices/${a}/driver_override`),
    ...overridden.map((a) => `echo ${a} > /sys/bus/pci/drivers/vfio-pci/unbind`),
    ...overridden.map((a) => `echo ${a} > /sys/bus/pci/drivers_probe`),
    ...consoles.map((p) => `echo 1 > ${p}`)].join('\n') + '\n';
}

const wall = (cmd, args, env) => {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 32 << 20, timeout: 180_000 });
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, status: r.status, stdout: (r.stdout ?? '').slice(-4000), stderr: (r.stderr ?? '').slice(-4000) };
};

/**
 * `h` carries run.mjs's helpers: { CLI, REPO, OUT, BOOT_GPU, AUDIO, record, cliStep, modprobe, waitFor, driverOf, report, flush, log, rounds }.
 */
export function handoffTiming(h) {
  const { CLI, BOOT_GPU, AUDIO } = h;
  h.modprobe('bochs', 'snd-hda-intel', 'vfio-pci');
  const native = () => h.driverOf(BOOT_GPU) === 'bochs-drm' && h.driverOf(AUDIO) === 'snd_hda_intel';
  h.waitFor(native);
  h.record('initial');
  const prepareArgs = ['prepare', BOOT_GPU, '--allow-boot-gpu', '--json'];

  // 1. Attribution run under strace.
  const traceFile = '/tmp/prepare.strace';
  // --seccomp-bpf: only the traced syscalls stop the process (without it every futex/epoll/mmap does, and Node
  // under TCG slows down a hundredfold).
  const traced = wall('strace', ['--seccomp-bpf', '-f', '-ttt', '-T', '-y', '-qq', '-s', '256', '-e', 'trace=execve,openat,write,fsync,fdatasync,exit_group', '-o', traceFile,
    process.execPath, CLI, ...prepareArgs]);
  const trace = readFileSync(traceFile, 'utf8');
  writeFileSync(join(h.OUT, 'prepare.strace'), trace); // for reading offline next to serial.log
  const attribution = attribute(trace, h.REPO);
  h.record('traced-prepare', { data: { status: traced.status, stdout: traced.stdout, stderr: traced.stderr, wallMs: traced.ms, attribution } });
  if (attribution.error) throw new Error(`strace attribution failed: ${attribution.error}\n${trace.slice(0, 3000)}`);
  const bare = bareScript(attribution.writes);
  const restore = restoreScript(attribution.writes);
  writeFileSync('/tmp/bare.sh', bare);
  writeFileSync('/tmp/restore.sh', restore);
  h.cliStep('release-traced', ['release', BOOT_GPU, '--json']);
  h.waitFor(native, 5000);

  // 2. Alternating timed runs, each from the same restored state (recorded just before it).
  const rounds = Number(h.rounds ?? 3);
  const runs = [];
  for (let i = 0; i < rounds; i++) {
    h.record(`r${i}:before-bare`);
    const b = wall('sh', ['/tmp/bare.sh']);
    h.record(`r${i}:bare`, { data: b });
    runs.push({ round: i, kind: 'bare', ms: b.ms, status: b.status });
    wall('sh', ['/tmp/restore.sh']);
    h.waitFor(native, 5000);
    h.record(`r${i}:before-ours`);
    const o = wall(process.execPath, [CLI, ...prepareArgs]);
    h.record(`r${i}:ours`, { data: o });
    runs.push({ round: i, kind: 'ours', ms: o.ms, status: o.status });
    const rel = h.cliStep(`r${i}:release`, ['release', BOOT_GPU, '--json']);
    if (rel.cli.exitCode !== 0) throw new Error(`release failed in round ${i}: ${rel.cli.stderr}`);
    h.waitFor(native, 5000);
  }
  const baselines = { sh: [], node: [] };
  for (let i = 0; i < rounds; i++) {
    baselines.sh.push(wall('sh', ['-c', ':']).ms);
    baselines.node.push(wall(process.execPath, ['-e', '0']).ms);
  }
  h.report.steps.push({ name: 'timing', data: { bare, restore, runs, baselines } });
  h.flush();
  h.log(`timing: ${runs.map((r) => `${r.kind}=${r.ms.toFixed(0)}ms`).join(' ')}; node -e 0: ${baselines.node.map((m) => m.toFixed(0)).join('/')} ms`);
}
