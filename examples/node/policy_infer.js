// policy_infer.js: runs a dqnkit ONNX policy (policy.onnx) from Node.js with onnxruntime-node.
//
//   node policy_infer.js POLICY.onnx [OBS_FILE]
//
// Reads observations, one per line as whitespace-separated numbers (the flattened
// observation), from OBS_FILE or stdin, runs them as one batch [B, *obs_shape] and prints
//   # dqnkit metadata: {...the contract JSON stored in the artifact...}
//   ACTION Q_0 Q_1 ... Q_{A-1}        (one line per observation)
//
// onnxruntime-node exposes input/output metadata but not the model's metadata_props, so the
// contract is read from the .onnx file itself: a few lines of protobuf decoding below.
'use strict';

const fs = require('fs');
const ort = require('onnxruntime-node');

// Reads a protobuf varint at buf[pos]; returns [value, nextPos].
function readVarint(buf, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = buf[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, pos];
    shift += 7;
  }
}

// Calls visit(fieldNumber, bytes) for each length-delimited field of a protobuf message.
function forEachField(buf, visit) {
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const field = Math.floor(key / 8);
    const wireType = key & 7;
    if (wireType === 0) {
      [, pos] = readVarint(buf, pos);
    } else if (wireType === 1) {
      pos += 8;
    } else if (wireType === 5) {
      pos += 4;
    } else if (wireType === 2) {
      let length;
      [length, pos] = readVarint(buf, pos);
      visit(field, buf.subarray(pos, pos + length));
      pos += length;
    } else {
      throw new Error(`unsupported protobuf wire type ${wireType}`);
    }
  }
}

// ModelProto.metadata_props is field 14: StringStringEntryProto {key = 1, value = 2}.
function readMetadataProps(modelBytes) {
  const props = {};
  forEachField(modelBytes, (field, bytes) => {
    if (field !== 14) return;
    let key = '';
    let value = '';
    forEachField(bytes, (f, b) => {
      if (f === 1) key = b.toString('utf8');
      if (f === 2) value = b.toString('utf8');
    });
    props[key] = value;
  });
  return props;
}

const TYPED_ARRAYS = { float32: Float32Array, float64: Float64Array, uint8: Uint8Array };

async function main() {
  const [modelPath, obsPath] = process.argv.slice(2);
  if (!modelPath) {
    console.error('usage: node policy_infer.js POLICY.onnx [OBS_FILE]  (stdin without it)');
    process.exit(1);
  }
  const modelBytes = fs.readFileSync(modelPath);
  const text = readMetadataProps(modelBytes).dqnkit;
  if (text === undefined) throw new Error(`${modelPath} has no dqnkit metadata`);
  const metadata = JSON.parse(text);
  console.log(`# dqnkit metadata: ${text}`);

  const obsSize = metadata.obs_shape.reduce((a, b) => a * b, 1);
  const input = fs.readFileSync(obsPath && obsPath !== '-' ? obsPath : 0, 'utf8');
  const rows = input
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0)
    .map((line) => line.split(/\s+/).map(Number));
  if (rows.length === 0) return;
  const Typed = TYPED_ARRAYS[metadata.obs_dtype];
  if (!Typed) throw new Error(`unsupported obs_dtype ${metadata.obs_dtype}`);
  const data = new Typed(rows.length * obsSize);
  rows.forEach((row, i) => {
    if (row.length !== obsSize || row.some(Number.isNaN)) {
      throw new Error(`observation ${i} is not ${obsSize} numbers`);
    }
    data.set(row, i * obsSize);
  });

  const session = await ort.InferenceSession.create(modelBytes, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });
  const obs = new ort.Tensor(metadata.obs_dtype, data, [rows.length, ...metadata.obs_shape]);
  const [qName, actionName] = metadata.outputs;
  const result = await session.run({ [metadata.input]: obs }, [qName, actionName]);
  const q = result[qName].data;
  const action = result[actionName].data; // BigInt64Array: the graph's argmax is int64
  const nActions = metadata.n_actions;
  for (let i = 0; i < rows.length; i++) {
    const values = Array.from(q.subarray(i * nActions, (i + 1) * nActions), String);
    console.log(`${action[i]} ${values.join(' ')}`);
  }
}

main().catch((error) => {
  console.error(`policy_infer: error: ${error.message}`);
  process.exit(1);
});
