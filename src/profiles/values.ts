import { ProfileError } from '../core/errors.js';

/** Helpers that turn a profile's textual numbers into values; shared by the loader and the simulated kernel. */

const UNITS: Record<string, bigint> = { K: 1n << 10n, M: 1n << 20n, G: 1n << 30n, T: 1n << 40n };

/** `"0x1000000"`, `"16M"`, `"256K"`, `"32G"`, `"4096"` → bytes. */
export function parseSize(raw: string, field = 'size'): bigint {
  const s = raw.trim();
  const unit = /^([0-9]+)([KMGT])$/i.exec(s);
  if (unit) return BigInt(unit[1]!) * UNITS[unit[2]!.toUpperCase()]!;
  if (/^0x[0-9a-f]+$/i.test(s) || /^[0-9]+$/.test(s)) return BigInt(s);
  throw new ProfileError(`${field}: ${JSON.stringify(raw)} is not a size (use 0x…, a decimal or 16M/256K/32G)`);
}

/** `"0xc0000000"` or `"c0000000"` → value. */
export function parseHexBig(raw: string, field = 'address'): bigint {
  const s = raw.trim().toLowerCase().replace(/^0x/, '');
  if (!/^[0-9a-f]+$/.test(s)) throw new ProfileError(`${field}: ${JSON.stringify(raw)} is not a hex number`);
  return BigInt(`0x${s}`);
}

/** `"0x030000"` → 0x030000. */
export function parseHexInt(raw: string, field: string): number {
  const v = parseHexBig(raw, field);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProfileError(`${field}: ${JSON.stringify(raw)} is too large`);
  return Number(v);
}
