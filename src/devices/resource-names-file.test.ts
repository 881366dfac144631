import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../core/errors.js';
import type { PciAddress } from '../core/pci-address.js';
import type { PciFunction } from '../host/model.js';
import { formatResourceNames, parseResourceNames, publicationKey } from './resource-names-file.js';

const A = '0000:18:00.0' as PciAddress;
const B = '0000:3b:00.0' as PciAddress;

describe('resource names file format', () => {
  it('writes sorted, versioned JSON that reads back to the same names and generation', () => {
    const text = formatResourceNames(new Map([[B, 'example.com/l40s'], [A, 'example.com/h100']]), 7);
    expect(JSON.parse(text)).toEqual({ version: 1, generation: 7, names: { [A]: 'example.com/h100', [B]: 'example.com/l40s' } });
    expect(Object.keys((JSON.parse(text) as { names: object }).names)).toEqual([A, B]);
    const doc = parseResourceNames(text);
    expect(doc.generation).toBe(7);
    expect([...doc.names]).toEqual([[A, 'example.com/h100'], [B, 'example.com/l40s']]);
  });

  it('is byte-identical for equal maps in any insertion order', () => {
    const arbAddress = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 31 }), fc.integer({ min: 0, max: 7 })).map(
      ([b, d, f]) => `0000:${b.toString(16).padStart(2, '0')}:${d.toString(16).padStart(2, '0')}.${f}`,
    );
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(arbAddress, fc.constantFrom('example.com/a', 'vendor.io/b-1')), { selector: ([a]) => a, maxLength: 8 }), (entries) => {
        const forward = formatResourceNames(new Map(entries), 3);
        const backward = formatResourceNames(new Map([...entries].reverse()), 3);
        expect(forward).toBe(backward);
        expect(new Map(parseResourceNames(forward).names)).toEqual(new Map(entries));
      }),
    );
  });

  it('accepts an empty map and a missing generation (0)', () => {
    expect(parseResourceNames(formatResourceNames(new Map(), 0)).names.size).toBe(0);
    expect(parseResourceNames('{"version":1,"names":{}}').generation).toBe(0);
  });

  it.each([
    ['not JSON', '{"version":1,'],
    ['an array', '[]'],
    ['another version', '{"version":2,"names":{}}'],
    ['no names', '{"version":1}'],
    ['names as a list', '{"version":1,"names":[]}'],
    ['a negative generation', '{"version":1,"generation":-1,"names":{}}'],
    ['a fractional generation', '{"version":1,"generation":1.5,"names":{}}'],
    ['a short address', '{"version":1,"names":{"18:00.0":"example.com/h100"}}'],
    ['an upper-case address', '{"version":1,"names":{"0000:AB:00.0":"example.com/h100"}}'],
    ['a path in the address', '{"version":1,"names":{"../../etc":"example.com/h100"}}'],
    ['a name without a domain', '{"version":1,"names":{"0000:18:00.0":"h100"}}'],
    ['a kubernetes.io name', '{"version":1,"names":{"0000:18:00.0":"kubernetes.io/h100"}}'],
    ['a non-string name', '{"version":1,"names":{"0000:18:00.0":5}}'],
  ])('rejects %s with InvalidArgumentError', (_what, text) => {
    expect(() => parseResourceNames(text)).toThrow(InvalidArgumentError);
  });

  it('refuses to write what it would refuse to read', () => {
    expect(() => formatResourceNames(new Map([['18:00.0', 'example.com/h100']]), 1)).toThrow(InvalidArgumentError);
    expect(() => formatResourceNames(new Map([[A, 'no-domain']]), 1)).toThrow(InvalidArgumentError);
    expect(() => formatResourceNames(new Map(), -1)).toThrow(InvalidArgumentError);
  });
});

describe('publicationKey', () => {
  const fn = (address: string, driver: string | undefined) => ({ address, driver }) as unknown as PciFunction;
  const host = (driver: string | undefined) => ({ functions: [fn(A, driver), fn('0000:18:00.1', 'snd_hda_intel')], vfioGroupNodes: driver === 'vfio-pci' ? [31] : [] });

  it('changes when a binding or a name changes, not when the map order does', () => {
    const names = new Map([[A, 'example.com/h100'], [B, 'example.com/l40s']]);
    const base = publicationKey(names, host('nvidia'));
    expect(publicationKey(new Map([...names].reverse()), host('nvidia'))).toBe(base);
    expect(publicationKey(names, host('vfio-pci'))).not.toBe(base);
    expect(publicationKey(names, host(undefined))).not.toBe(base);
    expect(publicationKey(new Map([[A, 'example.com/h100']]), host('nvidia'))).not.toBe(base);
    expect(publicationKey(new Map([[A, 'example.com/x'], [B, 'example.com/l40s']]), host('nvidia'))).not.toBe(base);
  });
});
