import { InvalidArgumentError } from './errors.js';

/**
 * A PCI class selector: a prefix of the 24-bit class code `0xCCSSPP` (base class, subclass, programming
 * interface, as in sysfs `class` and the PCI Code and ID Assignment spec). One grammar for every place a
 * user names classes (GpuPassthrough `spec.gpus.classes`, the device plugin's resource overrides):
 *
 *     selector = [ "0x" ] ( 2 | 4 | 6 ) hex digits        (hex digits of either case)
 *
 *   `0x03` / `03`         base class 03 (display controller), any subclass and prog-if
 *   `0x0302` / `0302`     base class 03, subclass 02 (3D controller), any prog-if
 *   `0x030200`            exactly 03/02/00
 *
 * The GpuPassthrough CRD narrows this further by its own `pattern` (0x and 4 or 6 digits); what the API
 * server accepts is always valid here.
 */
export interface PciClassSelector {
  /** The selector's digits as a number: 0x03, 0x0302 or 0x030200. */
  readonly value: number;
  /** How many hex digits were given: 2 (base class), 4 (+ subclass) or 6 (+ prog-if). */
  readonly digits: 2 | 4 | 6;
}

const SELECTOR = /^(?:0x)?((?:[0-9a-fA-F]{2}){1,3})$/;

/** Parses a selector; throws InvalidArgumentError naming the input and the grammar. */
export function parsePciClassSelector(raw: string): PciClassSelector {
  const m = typeof raw === 'string' ? SELECTOR.exec(raw) : null;
  if (!m) throw new InvalidArgumentError(`class ${JSON.stringify(raw)} must be 2, 4 or 6 hex digits (e.g. 0x0302)`);
  const digits = m[1]!;
  return { value: parseInt(digits, 16), digits: digits.length as 2 | 4 | 6 };
}

/** Whether a 24-bit class code (`0x030200`) starts with the selector's digits. */
export function pciClassMatches(selector: PciClassSelector, classCode: number): boolean {
  return classCode >> (24 - selector.digits * 4) === selector.value;
}
