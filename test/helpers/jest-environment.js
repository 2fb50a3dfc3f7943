// jest runs each test file in its own V8 context, so `Float32Array` inside a test is not the
// `Float32Array` that onnxruntime-node's native code allocates its outputs with, and
// onnxruntime-common's `instanceof` checks fail across the two realms. This environment hands
// the test context the host's typed-array constructors, as Node itself would have them.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer', 'SharedArrayBuffer', 'DataView',
  'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
  'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
];

class HostTypedArraysEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}

module.exports = HostTypedArraysEnvironment;
