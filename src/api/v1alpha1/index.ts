/**
 * The handoff.dev/v1alpha1 contract between the operator and the node agent: names, types, CRD
 * defaults, GPU phases, reason codes and validators compiled from the CRDs in deploy/crds. The operator,
 * the agent, metrics and the CLI import this module, never each other's internals.
 */
export * from '../meta.js';
export * from './names.js';
export * from './types.js';
export * from './defaults.js';
export * from './reasons.js';
export * from './inventory.js';
export * from './crd.js';
export * from './validate.js';
