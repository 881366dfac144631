export * from './kube-api.js';
export * from './informer.js';
export * from './work-queue.js';
export * from './leader-election.js';
export * from './events.js';
