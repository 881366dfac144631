export { FakeApiServer } from './server.js';
export type { FakeApiServerOptions, RequestLogEntry, RequestMatch, StoredObject, Verb, WatchEventType, WatchFault } from './server.js';
export { DEFAULT_RESOURCES, apiVersionOf, resourceKey, resourceTypesFromCrd } from './resources.js';
export type { ResourceType } from './resources.js';
export { applyJsonPatch, applyMergePatch, PatchError } from './patch.js';
export type { JsonPatchOp } from './patch.js';
export { parseLabelSelector, matchesLabels } from './selectors.js';
