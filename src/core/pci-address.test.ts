import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from './errors.js';
import { comparePciAddress, parsePciAddress, parseVendorDevice, pciAddressParts, type PciAddress } from './pci-address.js';

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
