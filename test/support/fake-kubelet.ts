// The kubelet emulator ships in src/testing (the demo registers with it); tests keep importing it here.
export * from '../../src/testing/fake-kubelet.js';
