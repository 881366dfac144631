import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from './errors.js';
import { parsePciClassSelector, pciClassMatches } from './pci-class.js';

describe(parsePciClassSelector.name, () => {
  it.each([
    // the plugin configuration's inputs
    ['0x03', 0x03, 2],
    ['03', 0x03, 2],
    ['0302', 0x0302, 4],
    // the CRD's inputs (0x and 4 or 6 digits)
    ['0x0302', 0x0302, 4],
    ['0x0300', 0x0300, 4],
    ['0x030200', 0x030200, 6],
    ['0x1200', 0x1200, 4],
    ['030200', 0x030200, 6],
    ['0x03AbCd', 0x03abcd, 6],
  ])('%s → value %i, %i digits', (raw, value, digits) => {
    expect(parsePciClassSelector(raw)).toEqual({ value, digits });
  });

  it.each(['', '0x', '0x3', '3', '0x03020', '0x03020000', 'zz0302', '0x0302zz', ' 0x0302', '0x0302\n', '0X0302', '0x-302', 'VGA', '../0302'])(
    'refuses %j with the grammar in the message',
    (raw) => {
      expect(() => parsePciClassSelector(raw)).toThrow(new InvalidArgumentError(`class ${JSON.stringify(raw)} must be 2, 4 or 6 hex digits (e.g. 0x0302)`));
    },
  );

  it('refuses a non-string (JSON from a config file)', () => {
    expect(() => parsePciClassSelector(302 as unknown as string)).toThrow(InvalidArgumentError);
  });
});

describe(pciClassMatches.name, () => {
  it.each([
    ['0x03', 0x030200, true],
    ['0x03', 0x030000, true],
    ['0x03', 0x120000, false],
    ['0x0302', 0x030200, true],
    ['0x0302', 0x030201, true],
    ['0x0302', 0x030000, false],
    ['0x0300', 0x030000, true],
    ['0x030200', 0x030200, true],
    ['0x030200', 0x030201, false],
    ['0x00', 0x000000, true],
    ['0x00', 0x030000, false],
  ])('%s vs class %i → %s', (raw, classCode, want) => {
    expect(pciClassMatches(parsePciClassSelector(raw), classCode)).toBe(want);
  });
});
