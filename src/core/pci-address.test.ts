import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from './errors.js';
import { comparePciAddress, isPciAddress, normaliseHexId, parsePciAddress, parseVendorDevice, pciAddressParts, type PciAddress } from './pci-address.js';

const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');
const parts = fc.record({
  domain: fc.integer({ min: 0, max: 0xffff }),
  bus: fc.integer({ min: 0, max: 0xff }),
  device: fc.integer({ min: 0, max: 0x1f }),
  fn: fc.integer({ min: 0, max: 7 }),
});

describe(parsePciAddress.name, () => {
  it('round-trips every valid address, in any case', () => {
    fc.assert(
      fc.property(parts, fc.boolean(), (p, upper) => {
        let raw = `${hex(p.domain, 4)}:${hex(p.bus, 2)}:${hex(p.device, 2)}.${p.fn}`;
        if (upper) raw = raw.toUpperCase();
        const addr = parsePciAddress(raw);
        expect(addr).toBe(raw.toLowerCase());
        expect(pciAddressParts(addr)).toEqual(p);
      }),
    );
  });

  it('accepts NVML 8-digit domains and lspci short forms only when asked', () => {
    expect(parsePciAddress('00000000:01:00.0')).toBe('0000:01:00.0');
    expect(parsePciAddress('65:00.0', { allowShort: true })).toBe('0000:65:00.0');
    expect(() => parsePciAddress('65:00.0')).toThrow(InvalidArgumentError);
  });

  it('never yields anything but a canonical address (no path tricks survive)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 24 }), (raw) => {
        try {
          const a = parsePciAddress(raw, { allowShort: true });
          expect(a).toMatch(/^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/);
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidArgumentError);
        }
      }),
      { numRuns: 2000 },
    );
  }, 60_000); // 2,000 cases: an explicit budget rather than vitest's 5 s default, which a busy machine outlasts

  it.each(['0000:01:00.0/..', '../0000:01:00.0', '0000:01:20.0', '0000:01:00.8', '0000:01:00.0\u0000', ' 0000:01:00.0', '0000:01:00'])('rejects %j', (raw) => {
    expect(() => parsePciAddress(raw, { allowShort: true })).toThrow(InvalidArgumentError);
  });

  it('sorts numerically by domain, bus, device, function', () => {
    const list = ['0000:0a:00.0', '0000:01:00.1', '0004:01:00.0', '0000:01:00.0'].map((a) => parsePciAddress(a));
    expect([...list].sort(comparePciAddress)).toEqual(['0000:01:00.0', '0000:01:00.1', '0000:0a:00.0', '0004:01:00.0'] as PciAddress[]);
  });
});

describe(parseVendorDevice.name, () => {
  it('normalises case and 0x', () => {
    expect(parseVendorDevice('0x10DE:0x2331')).toEqual({ vendorId: '10de', deviceId: '2331' });
  });
  it.each(['10de', '10de:233', '10de:2331:1', 'zzzz:2331'])('rejects %j', (raw) => {
    expect(() => parseVendorDevice(raw)).toThrow(InvalidArgumentError);
  });
});

describe('PCI address helpers: exact answers and messages', () => {
  it('says what it expected', () => {
    expect(() => parsePciAddress('65:00.0')).toThrow(new InvalidArgumentError('malformed PCI address "65:00.0": expected dddd:bb:dd.f (e.g. 0000:65:00.0)'));
    expect(() => parsePciAddress(42 as unknown as string)).toThrow(new InvalidArgumentError('PCI address must be a string'));
    expect(() => parseVendorDevice('10de')).toThrow(new InvalidArgumentError('malformed vendor:device "10de": expected e.g. 10de:2331'));
    expect(() => normaliseHexId('0xzz', 4)).toThrow(new InvalidArgumentError('not a hex id: "0xzz"'));
  });

  it('an NVML domain must have a zero upper half; short forms are bus:device.fn only', () => {
    expect(parsePciAddress('0000ABCD:01:00.0')).toBe('abcd:01:00.0');
    expect(() => parsePciAddress('00010000:01:00.0')).toThrow(InvalidArgumentError);
    expect(parsePciAddress('AB:1F.7', { allowShort: true })).toBe('0000:ab:1f.7');
    expect(() => parsePciAddress('x65:00.0', { allowShort: true })).toThrow(InvalidArgumentError);
    expect(() => parsePciAddress('65:00.0x', { allowShort: true })).toThrow(InvalidArgumentError);
  });

  it('isPciAddress accepts only the canonical form', () => {
    expect(isPciAddress('0000:65:00.0')).toBe(true);
    for (const raw of ['0000:65:00.0 ', ' 0000:65:00.0', '0000:65:00.8', '0000:65:20.0', '0000:6G:00.0', '0000:65:00', 'ABCD:65:00.0', '65:00.0']) {
      expect(isPciAddress(raw), raw).toBe(false);
    }
  });

  it('compares numerically: domain, bus, device, function; equal is 0', () => {
    const a = ['0001:00:00.0', '0000:ff:00.0', '0000:01:1f.0', '0000:01:00.7', '0000:01:00.0'] as PciAddress[];
    expect([...a].sort(comparePciAddress)).toEqual(['0000:01:00.0', '0000:01:00.7', '0000:01:1f.0', '0000:ff:00.0', '0001:00:00.0']);
    expect(comparePciAddress('0000:01:00.0' as PciAddress, '0000:01:00.0' as PciAddress)).toBe(0);
    expect(comparePciAddress('0000:01:00.1' as PciAddress, '0000:01:00.0' as PciAddress)).toBe(1);
  });

  it('normalises sysfs hex ids: trimmed, lower-case, no 0x, padded', () => {
    expect(normaliseHexId('0x10DE\n', 4)).toBe('10de');
    expect(normaliseHexId('0x1\n', 4)).toBe('0001');
    expect(normaliseHexId('0x030000', 6)).toBe('030000');
    expect(() => normaliseHexId('', 4)).toThrow(InvalidArgumentError);
    expect(() => normaliseHexId('0x10de0x', 4)).toThrow(InvalidArgumentError);
    expect(() => normaliseHexId('10x0', 4)).toThrow(InvalidArgumentError);
    expect(() => normaliseHexId('zz10', 4)).toThrow(InvalidArgumentError);
  });

  it('vendor:device is anchored and lower-cased on both halves', () => {
    expect(parseVendorDevice('0x10DE:0x23AB')).toEqual({ vendorId: '10de', deviceId: '23ab' });
    expect(() => parseVendorDevice('x10de:2331')).toThrow(InvalidArgumentError);
  });
});
