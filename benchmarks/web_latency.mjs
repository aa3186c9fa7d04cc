// web_latency.mjs: per-observation latency of a dqnkit ONNX policy in Node.js, for
// benchmarks/bench_web.py. One session.run per observation (batch 1), both outputs fetched.
//
//   node benchmarks/web_latency.mjs node|web POLICY.onnx OBS.json REPEATS
//
// "node": onnxruntime-node (examples/node/node_modules), native CPU, one thread.
// "web":  onnxruntime-web (web/node_modules), the page's wasm build, one thread, in Node.
// Prints {"perObservationUs": [one figure per repeat], "actions": [...]}.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [backend, modelPath, obsPath, repeatsText] = process.argv.slice(2);
const repeats = Number(repeatsText ?? 15);
let ort;
let options;
if (backend === 'node') {
  ort = createRequire(path.join(root, 'examples', 'node', 'package.json'))('onnxruntime-node');
  options = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' };
} else if (backend === 'web') {
  ort = createRequire(path.join(root, 'web', 'package.json'))('onnxruntime-web');
  ort.env.wasm.numThreads = 1;
  options = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
} else {
  console.error('usage: node web_latency.mjs node|web POLICY.onnx OBS.json REPEATS');
  process.exit(2);
}
const observations = JSON.parse(readFileSync(obsPath, 'utf8'));
const session = await ort.InferenceSession.create(new Uint8Array(readFileSync(modelPath)), options);
const [input] = session.inputNames;
const feeds = observations.map((o) => ({ [input]: new ort.Tensor('float32', Float32Array.from(o), [1, o.length]) }));
const outputs = ['q_values', 'action'];
const actions = [];
for (const feed of feeds) actions.push(Number((await session.run(feed, outputs)).action.data[0]));
const perObservationUs = [];
for (let r = 0; r < repeats; r++) {
  const start = process.hrtime.bigint();
  for (const feed of feeds) await session.run(feed, outputs);
  perObservationUs.push(Number(process.hrtime.bigint() - start) / 1000 / feeds.length);
}
process.stdout.write(JSON.stringify({ perObservationUs, actions }));
