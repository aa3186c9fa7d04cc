// worker.js: runs the policy with ONNX Runtime Web (wasm, one thread) off the page's main thread.
//
// Messages in:  {id, type: 'load', model: URL, dtype, shape}
//               {id, type: 'run', data: TypedArray, batch}           -> q_values and actions
//               {id, type: 'bench', data: TypedArray, count, repeats} -> per-observation times
// Messages out: {id, ok: true, ...result} or {id, ok: false, error: message}
'use strict';

importScripts('ort/ort.wasm.min.js');

// One thread: no SharedArrayBuffer, so no cross-origin isolation headers are needed.
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.wasm.wasmPaths = new URL('ort/', self.location.href).href;

const TYPED = { float32: Float32Array, float64: Float64Array, uint8: Uint8Array };

let session = null;
let spec = null; // {input, outputs: [q, action], dtype, shape, nActions}

async function load(message) {
  const response = await fetch(message.model);
  if (!response.ok) throw new Error(`${message.model}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  const [qName, actionName] = message.outputs;
  if (session.inputNames.length !== 1 || session.inputNames[0] !== message.input) {
    throw new Error(`the model's inputs ${session.inputNames} are not [${message.input}]`);
  }
  for (const name of message.outputs) {
    if (!session.outputNames.includes(name)) {
      throw new Error(`the model has no output ${name} (it has ${session.outputNames})`);
    }
  }
  if (!TYPED[message.dtype]) throw new Error(`unsupported observation dtype ${message.dtype}`);
  spec = {
    input: message.input,
    q: qName,
    action: actionName,
    dtype: message.dtype,
    shape: message.shape,
    size: message.shape.reduce((a, b) => a * b, 1),
  };
  return { inputNames: session.inputNames, outputNames: session.outputNames };
}

function tensor(data, batch) {
  if (!(data instanceof TYPED[spec.dtype]) || data.length !== batch * spec.size) {
    throw new Error(`expected ${batch} x ${spec.size} ${spec.dtype} values, got ${data.length}`);
  }
  return new ort.Tensor(spec.dtype, data, [batch, ...spec.shape]);
}

async function run(message) {
  const feeds = { [spec.input]: tensor(message.data, message.batch) };
  const result = await session.run(feeds, [spec.q, spec.action]);
  const q = Float32Array.from(result[spec.q].data);
  // The graph's argmax is int64 (BigInt64Array); action indices are small, so Numbers are exact.
  const actions = Array.from(result[spec.action].data, Number);
  return { q, actions };
}

// Times session.run on one observation at a time, the way a page that acts step by step runs
// it. Timers in a page that is not cross-origin isolated are coarse (0.1 ms in Chromium), so
// each figure is the time of `count` runs in a row divided by `count`.
async function bench(message) {
  const n = message.count;
  const inputs = [];
  for (let i = 0; i < n; i++) {
    const row = message.data.slice(i * spec.size, (i + 1) * spec.size);
    inputs.push({ [spec.input]: tensor(row, 1) });
  }
  for (let i = 0; i < Math.min(n, 50); i++) await session.run(inputs[i]); // warm-up
  const perObservationUs = [];
  for (let r = 0; r < message.repeats; r++) {
    const start = performance.now();
    for (let i = 0; i < n; i++) await session.run(inputs[i], [spec.q, spec.action]);
    perObservationUs.push(((performance.now() - start) * 1000) / n);
  }
  return { perObservationUs };
}

const HANDLERS = { load, run, bench };

self.onmessage = async (event) => {
  const message = event.data;
  try {
    const handler = HANDLERS[message.type];
    if (!handler) throw new Error(`unknown message ${message.type}`);
    if (message.type !== 'load' && session === null) throw new Error('no model loaded');
    const result = await handler(message);
    self.postMessage({ id: message.id, ok: true, ...result });
  } catch (error) {
    self.postMessage({ id: message.id, ok: false, error: String(error && error.message ? error.message : error) });
  }
};
