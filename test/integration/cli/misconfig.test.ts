import { mkdtemp, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtinProfilesDir } from '../../../src/profiles/load.js';
import { loadBuiltinProfile } from '../../../src/profiles/load.js';
import { materialiseProfile } from '../../../src/profiles/materialise.js';
import { cli } from '../../support/cli.js';

const noStack = /\n\s+at /;

describe('misconfiguration says so', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vh-misconf-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each([['/nonexistent'], ['<empty dir>']])('inspect --host-root %s exits 2 and says the root holds no sysfs', async (root) => {
    const r = await cli(['inspect', '--host-root', root === '<empty dir>' ? dir : root]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/holds no sysfs \(no sys\/bus\/pci\/devices under it\): check the host mount/);
    expect(r.stdout).not.toMatch(/no GPUs found/);
  });

  it('one device directory in a symlink loop is reported unreadable; the rest is inspected', async () => {
    const root = join(dir, 'loop');
    await materialiseProfile(await loadBuiltinProfile('server-aspeed-4xh100'), root);
    const link = join(root, 'sys/bus/pci/devices/0000:3b:00.0');
    await unlink(link);
    await symlink('0000:3b:00.0', link); // points at itself: ELOOP
    const r = await cli(['inspect', '--host-root', root]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/! 0000:3b:00\.0 is unreadable and was left out: reading .* failed: ELOOP/);
    expect(r.stdout).toMatch(/0000:18:00\.0 .* PREPARABLE/);
    const json = JSON.parse((await cli(['inspect', '--host-root', root, '--json'])).stdout);
    expect(json.host.unreadable).toEqual([{ address: '0000:3b:00.0', error: expect.stringContaining('ELOOP') }]);
  });

  it('agent --front-end dra refuses a socket path over 107 bytes, a relative --cdi-dir and a --cdi-dir that is a file with exit 2 before it listens', async () => {
    const base = ['agent', '--front-end', 'dra', '--profile', 'server-aspeed-4xh100', '--node-name', 'node-a', '--claims-dir', join(dir, 'claims'), '--state-dir', join(dir, 'dra-state'), '--metrics-addr', '127.0.0.1:0'];
    const dirs = ['--plugin-registry-dir', join(dir, 'reg'), '--cdi-dir', join(dir, 'cdi')];
    const long = await cli([...base, ...dirs, '--dra-plugin-dir', join(dir, 'p'.repeat(110))]);
    expect(long.code, long.stderr).toBe(2);
    expect(long.stderr).toMatch(/dra\.sock" is \d+ bytes; the kernel allows 107/);
    expect(long.stderr).not.toMatch(/metrics server listening/);
    const rel = await cli([...base, '--plugin-registry-dir', join(dir, 'reg'), '--dra-plugin-dir', join(dir, 'plug'), '--cdi-dir', 'relative/cdi']);
    expect(rel.code, rel.stderr).toBe(2);
    expect(rel.stderr).toMatch(/--cdi-dir must be an absolute path, not "relative\/cdi"/);
    const file = join(dir, 'cdi-is-a-file');
    await writeFile(file, 'x');
    const notDir = await cli([...base, '--plugin-registry-dir', join(dir, 'reg'), '--dra-plugin-dir', join(dir, 'plug'), '--cdi-dir', file]);
    expect(notDir.code, notDir.stderr).toBe(2);
    expect(notDir.stderr).toMatch(/the CDI spec directory ".*cdi-is-a-file" is not a directory \(check --cdi-dir\)/);
    expect(notDir.stderr).not.toMatch(noStack);
  }, 60_000);

  it('a serving command that fails after its metrics server started exits with the error instead of hanging', async () => {
    // agent: metrics listen first, then the kubeconfig is read; before the fix the open server kept the process alive.
    const r = await cli(['agent', '--profile', 'server-aspeed-4xh100', '--node-name', 'node-a', '--metrics-addr', '127.0.0.1:0', '--device-plugin-dir', join(dir, 'dp'), '--kubeconfig', join(dir, 'no-such-kubeconfig')]);
    expect(r.stderr).toMatch(/metrics server listening/);
    expect(r.stderr).toMatch(/cannot read kubeconfig/);
    expect(r.code).not.toBe(0);
  }, 60_000);

  it.each([
    [['--resync-interval', '0s'], /--resync-interval must be between 1ms and \d+m, not "0s"/],
    [['--front-end', 'dra', '--rescan-interval', '0ms'], /--rescan-interval must be between 1ms and \d+m, not "0ms"/],
    [['--resync-interval', '40000m'], /--resync-interval must be between 1ms and 35791m, not "40000m"/],
    [['--front-end', 'dra', '--kube-client', 'bogus'], /--kube-client must be light or client-node, not "bogus"/],
    [['--front-end', 'dra', '--device-plugin', 'bogus'], /--device-plugin must be embedded or off, not "bogus"/],
    [['--front-end', 'dra', '--kube-client', 'client-node'], /--kube-client client-node is not supported with --front-end dra/],
    // A flag the chosen front end does not read is refused, not silently ignored.
    [['--front-end', 'dra', '--cdi', '--resource-config', join(tmpdir(), 'x.yaml')], /--cdi, --resource-config have no effect with --front-end dra/],
    [['--front-end', 'dra', '--device-plugin-dir', join(tmpdir(), 'dp')], /--device-plugin-dir has no effect with --front-end dra/],
    [['--keep-on-vfio', '--allow-boot-gpu'], /--allow-boot-gpu, --keep-on-vfio have no effect with --front-end device-plugin/],
  ])('agent %j exits 2 with a clear message before it starts anything (a zero or overlong timer period is a 1 ms busy loop; DRA used to ignore these flags)', async (flags, message) => {
    const dra = flags.includes('dra');
    const dirs = dra
      ? ['--claims-dir', join(dir, 'claims'), '--plugin-registry-dir', join(dir, 'iv-reg'), '--dra-plugin-dir', join(dir, 'iv-plug')]
      : ['--device-plugin-dir', join(dir, 'iv-dp')];
    const r = await cli(['agent', '--profile', 'server-aspeed-4xh100', '--node-name', 'node-a', '--metrics-addr', '127.0.0.1:0', '--state-dir', join(dir, 'iv-state'), '--cdi-dir', join(dir, 'iv-cdi'), ...dirs, ...flags]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/listening/);
  }, 60_000);

  it('--log-level bogus exits 2 without a stack trace', async () => {
    const r = await cli(['inspect', '--profile', 'workstation-efifb', '--log-level', 'bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--log-level must be one of fatal, error, warn, info, debug, trace, silent/);
    expect(r.stderr).not.toMatch(noStack);
  });

  it('--profile takes a file path (.yml/.json too) and names the extensions when a name is unknown', async () => {
    const yml = join(dir, 'host.yml');
    await writeFile(yml, await readFile(join(builtinProfilesDir(), 'workstation-efifb.yaml'), 'utf8'));
    expect((await cli(['inspect', '--profile', yml])).code).toBe(0);
    const r = await cli(['inspect', '--profile', 'my-host']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no built-in profile "my-host".*a profile file is a path with a "\/" or ending in \.yaml, \.yml, \.json/);
  });

  it('--profile with --state-dir is refused instead of silently ignored', async () => {
    const r = await cli(['prepare', '--all', '--profile', 'workstation-efifb', '--state-dir', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--state-dir cannot be used with --profile/);
  });

  it('release messages finish their sentence', async () => {
    const r = await cli(['release', '0000:18:00.0', '--profile', 'server-aspeed-4xh100']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/group 31 \(0000:18:00\.0\): already on its host drivers — nothing to do/);
    // A GPU bound to vfio-pci at boot (vfio-pci.ids=), never prepared by us: release leaves it and says so.
    const boot = await cli(['release', '0000:c3:00.0', '--profile', 'apu-0380-simpledrm-vfio']);
    expect(boot.code).toBe(0);
    expect(boot.stdout).toMatch(/group 21 \(0000:c3:00\.0\): left on vfio-pci — vfio-handoff did not prepare it \(no record\)/);
    expect(boot.stdout).not.toMatch(/host drivers|CONSOLE_WILL_GO_DARK/);
  });
});
