/**
 * Socket file names at the edges of the 108-byte unix-socket limit (107 bytes of path): a name that fits
 * exactly is kept whole, one byte more is shortened to a prefix plus the 8-hex-digit FNV-1a hash (zero
 * padded), a plugin directory too long for any prefix leaves only the hash; the default and slash-ended
 * plugin directories; `assertSocketPathFits` at exactly 107 and 108 bytes. Also: a bad class selector in
 * the resource configuration keeps the parse error as the cause.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../core/errors.js';
import { assertSocketPathFits, compileResourceConfig, socketFileName } from './resources.js';

// 12 + 45 = 57 characters: `vfio-handoff-<57>.sock` is 75 bytes, and `/var/lib/kubelet/device-plugins/` + 75 = 107.
const FITS_EXACTLY = `example.com/${'A'.repeat(45)}`;
// One character more: 108 bytes whole, so it is shortened. FNV-1a of this name is 0x07bf04c9.
const ONE_TOO_LONG = `example.com/${'A'.repeat(46)}`;

describe(`${socketFileName.name}: the 107-byte boundary`, () => {
  it('keeps a name whole when the socket path is exactly 107 bytes, in the default kubelet directory', () => {
    const file = socketFileName(FITS_EXACTLY);
    expect(file).toBe(`vfio-handoff-example.com_${'A'.repeat(45)}.sock`);
    expect(Buffer.byteLength(`/var/lib/kubelet/device-plugins/${file}`)).toBe(107);
  });

  it('shortens a name one byte too long to the characters that fit, a dash and the zero-padded hash', () => {
    // 107 - 31 (directory) - 1 (slash) = 75 bytes for the file: 13 prefix + 48 kept + 1 dash + 8 hash + 5 `.sock`.
    expect(socketFileName(ONE_TOO_LONG)).toBe(`vfio-handoff-example.com_${'A'.repeat(36)}-07bf04c9.sock`);
    expect(socketFileName(ONE_TOO_LONG, '/var/lib/kubelet/device-plugins')).toBe(`vfio-handoff-example.com_${'A'.repeat(36)}-07bf04c9.sock`);
  });

  it('ignores trailing slashes of the plugin directory', () => {
    const whole = `vfio-handoff-example.com_${'A'.repeat(45)}.sock`;
    expect(socketFileName(FITS_EXACTLY, '/var/lib/kubelet/device-plugins/')).toBe(whole);
    expect(socketFileName(FITS_EXACTLY, '/var/lib/kubelet/device-plugins//')).toBe(whole);
    expect(socketFileName(ONE_TOO_LONG, '/var/lib/kubelet/device-plugins//')).toBe(`vfio-handoff-example.com_${'A'.repeat(36)}-07bf04c9.sock`);
  });

  it('in a longer directory (microk8s) keeps fewer characters', () => {
    // 56-byte directory: 50 bytes for the file, 23 characters of the name.
    expect(socketFileName(ONE_TOO_LONG, '/var/snap/microk8s/common/var/lib/kubelet/device-plugins')).toBe(
      'vfio-handoff-example.com_AAAAAAAAAAA-07bf04c9.sock',
    );
  });

  it('leaves only the hash when the directory has no room for any character of the name', () => {
    // 80-byte directory: 26 bytes for the file = 13 prefix + 8 hash + 5 `.sock`, no dash.
    const dir80 = `/${'d'.repeat(79)}`;
    expect(socketFileName(ONE_TOO_LONG, dir80)).toBe('vfio-handoff-07bf04c9.sock');
    expect(Buffer.byteLength(`${dir80}/vfio-handoff-07bf04c9.sock`)).toBe(107);
    // 79 bytes: one byte short of room for a character and its dash: still the hash alone.
    expect(socketFileName(ONE_TOO_LONG, `/${'d'.repeat(78)}`)).toBe('vfio-handoff-07bf04c9.sock');
    // 78 bytes: room for one character.
    expect(socketFileName(ONE_TOO_LONG, `/${'d'.repeat(77)}`)).toBe('vfio-handoff-e-07bf04c9.sock');
  });
});

describe(assertSocketPathFits.name, () => {
  it('accepts a path of exactly 107 bytes and refuses 108', () => {
    expect(() => assertSocketPathFits(`/${'p'.repeat(106)}`)).not.toThrow();
    expect(() => assertSocketPathFits(`/${'p'.repeat(107)}`)).toThrow(InvalidArgumentError);
    // Bytes, not characters: 1 + 53 × 2 = 107 bytes, 1 + 54 × 2 = 109.
    expect(() => assertSocketPathFits(`/${'é'.repeat(53)}`)).not.toThrow();
    expect(() => assertSocketPathFits(`/${'é'.repeat(54)}`)).toThrow(/is 109 bytes; the kernel allows 107/);
  });
});

describe(`${compileResourceConfig.name}: a bad class selector`, () => {
  it('names the entry and keeps the selector parse error as the cause', () => {
    let caught: unknown;
    try {
      compileResourceConfig({ overrides: [{ address: '0000:01:00.0', resourceName: 'example.com/a' }, { class: '0x3', resourceName: 'example.com/b' }] });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError);
    expect((caught as Error).message).toBe('resource override #2: class "0x3" must be 2, 4 or 6 hex digits (e.g. 0x0302)');
    const cause = (caught as Error).cause;
    expect(cause).toBeInstanceOf(InvalidArgumentError);
    expect((cause as Error).message).toBe('class "0x3" must be 2, 4 or 6 hex digits (e.g. 0x0302)');
  });
});
