// The fake API server ships in src/testing (the demo and the operator benchmark use it); tests keep importing it here.
export * from '../../../src/testing/fake-apiserver/index.js';
