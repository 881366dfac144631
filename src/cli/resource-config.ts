import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { InvalidArgumentError } from '../core/errors.js';
import { compileResourceConfig, type ResourceConfig } from '../deviceplugin/resources.js';

/**
 * Resource-name overrides for the device plugin from a YAML/JSON file:
 * `overrides: [{ vendorDevice: "10de:2331", resourceName: "example.com/h100" }, { class: "0x0302", ... }, { address: ..., ... }]`.
 * Validated up front (kubelet's extended-resource rules) so a typo fails at start, not at registration.
 */
export async function loadResourceConfig(path: string | undefined): Promise<ResourceConfig> {
  if (!path) return {};
  let value: unknown;
  try {
    value = parseYaml(await readFile(path, 'utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`cannot read resource config ${path}: ${(err as Error).message}`, { cause: err });
  }
  const config = (value ?? {}) as ResourceConfig;
  compileResourceConfig(config);
  return config;
}
