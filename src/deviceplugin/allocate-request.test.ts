/**
 * The cheap checks of a whole AllocateRequest before any host read (checkAllocateRequest): a hostile
 * request is refused at its first problem, with a message naming it, whatever its size.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../core/errors.js';
import type { PciAddress } from '../core/pci-address.js';
import { checkAllocateRequest } from './allocate.js';
import type { PluginDevice } from './devices.js';

const R = 'nvidia.com/GA102';
const device = (id: string): PluginDevice => ({ id: id as PciAddress, resource: R, health: 'Healthy', group: 1, numaNode: 0, reason: undefined });
const ADVERTISED = [device('0000:01:00.0'), device('0000:41:00.0')];
const containers = (...ids: string[][]) => ids.map((devices_ids) => ({ devices_ids }));

describe('checkAllocateRequest', () => {
  it('accepts every advertised device once, over one or several containers', () => {
    expect(() => checkAllocateRequest(R, ADVERTISED, containers(['0000:01:00.0', '0000:41:00.0']))).not.toThrow();
    expect(() => checkAllocateRequest(R, ADVERTISED, containers(['0000:41:00.0'], ['0000:01:00.0']))).not.toThrow();
    expect(() => checkAllocateRequest(R, ADVERTISED, containers([], ['0000:01:00.0']))).not.toThrow();
  });

  it.each([
    ['more IDs than advertised', containers(['0000:01:00.0', '0000:41:00.0', '0000:81:00.0']), `allocate for ${R}: more device IDs requested than the 2 this plugin advertises`],
    ['a device twice in one container', containers(['0000:01:00.0', '0000:01:00.0']), `allocate for ${R}: device 0000:01:00.0 is requested twice`],
    ['a device in two containers', containers(['0000:41:00.0'], ['0000:41:00.0']), `allocate for ${R}: device 0000:41:00.0 is requested twice`],
    ['an ID not advertised', containers(['0000:81:00.0']), `allocate for ${R}: unknown device "0000:81:00.0" (not a device this plugin advertises)`],
    ['a long unknown ID, cut to 64 characters', containers(['x'.repeat(100)]), `allocate for ${R}: unknown device "${'x'.repeat(64)}" (not a device this plugin advertises)`],
  ])('refuses %s', (_what, request, message) => {
    let err: unknown;
    try {
      checkAllocateRequest(R, ADVERTISED, request);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toBe(message);
  });

  it('stops counting at the advertised number: a request of 10,000 IDs is refused at the third', () => {
    const ids = Array.from({ length: 10_000 }, (_, i) => `0000:${(i % 256).toString(16).padStart(2, '0')}:00.0`);
    ids[0] = '0000:01:00.0';
    ids[1] = '0000:41:00.0';
    expect(() => checkAllocateRequest(R, ADVERTISED, containers(ids))).toThrow(`allocate for ${R}: more device IDs requested than the 2 this plugin advertises`);
  });

  it('a plugin that advertises nothing refuses any ID', () => {
    expect(() => checkAllocateRequest(R, [], containers(['0000:01:00.0']))).toThrow(`allocate for ${R}: more device IDs requested than the 0 this plugin advertises`);
  });
});
