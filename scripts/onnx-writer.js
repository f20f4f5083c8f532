'use strict';
// A minimal ONNX model writer (protobuf encoding by hand) so that the benchmark models can be
// generated on any machine with nothing but Node: no Python, no downloads. It writes exactly
// the subset of onnx.proto the benchmark graphs use — nodes with int / ints / float attributes,
// float32 initializers as raw little-endian bytes, and inputs/outputs with fixed or named dims.
// Field numbers are those of onnx/onnx.proto (ModelProto, GraphProto, NodeProto, ...).

const FLOAT = 1; // TensorProto.DataType.FLOAT
const ATTR = { FLOAT: 1, INT: 2, INTS: 7 };

function varint(n) {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n; // int64 two's complement
  const out = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}

const tag = (field, wire) => varint((field << 3) | wire);
const vint = (field, n) => Buffer.concat([tag(field, 0), varint(n)]);
const bytes = (field, buf) => Buffer.concat([tag(field, 2), varint(buf.length), buf]);
const str = (field, s) => bytes(field, Buffer.from(s, 'utf8'));
const msg = (field, parts) => bytes(field, Buffer.concat(parts));
function f32(field, x) {
  const b = Buffer.alloc(4);
  b.writeFloatLE(x);
  return Buffer.concat([tag(field, 5), b]);
}

function attribute(name, value) {
  const parts = [str(1, name)];
  if (Array.isArray(value)) {
    for (const v of value) parts.push(vint(8, v));
    parts.push(vint(20, ATTR.INTS));
  } else if (Number.isInteger(value)) {
    parts.push(vint(3, value), vint(20, ATTR.INT));
  } else {
    parts.push(f32(2, value), vint(20, ATTR.FLOAT));
  }
  return parts;
}

function node({ op, inputs, outputs, name, attrs = {} }) {
  const parts = [];
  for (const i of inputs) parts.push(str(1, i));
  for (const o of outputs) parts.push(str(2, o));
  parts.push(str(3, name ?? outputs[0]), str(4, op));
  for (const [k, v] of Object.entries(attrs)) parts.push(msg(5, attribute(k, v)));
  return msg(1, parts);
}

function initializer(name, dims, data) {
  const raw = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return msg(5, [...dims.map((d) => vint(1, d)), vint(2, FLOAT), str(8, name), bytes(9, raw)]);
}

function valueInfo(field, name, dims) {
  const shape = dims.map((d) => msg(1, [typeof d === 'string' ? str(2, d) : vint(1, d)]));
  return msg(field, [str(1, name), msg(2, [msg(1, [vint(1, FLOAT), msg(2, shape)])])]);
}

/**
 * graph: { name, nodes: [{op, inputs, outputs, attrs}], initializers: [{name, dims, data: Float32Array}],
 *          inputs: [{name, dims}], outputs: [{name, dims}] } → the .onnx bytes (opset 17, IR 8).
 */
function encodeModel(graph, { producer = 'nimify scripts/onnx-writer.js', doc = '' } = {}) {
  const g = [
    ...graph.nodes.map(node),
    str(2, graph.name),
    ...graph.initializers.map((t) => initializer(t.name, t.dims, t.data)),
    ...graph.inputs.map((v) => valueInfo(11, v.name, v.dims)),
    ...graph.outputs.map((v) => valueInfo(12, v.name, v.dims)),
  ];
  if (doc) g.push(str(10, doc));
  return Buffer.concat([vint(1, 8), str(2, producer), msg(7, g), msg(8, [str(1, ''), vint(2, 17)])]);
}

/** Deterministic pseudo-random numbers in [-0.5, 0.5). */
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/** Random weights scaled like He initialization (activations stay O(1) through deep nets). */
function weights(rand, count, fanIn) {
  const scale = Math.sqrt(6 / fanIn);
  return Float32Array.from({ length: count }, () => rand() * scale);
}

/** An MLP: [batch, sizes[0]] → Linear+Relu … → Linear → [batch, sizes.at(-1)]. */
function mlp(name, sizes, seed = 1) {
  const rand = rng(seed);
  const nodes = [];
  const initializers = [];
  let x = 'x';
  for (let l = 0; l + 1 < sizes.length; l++) {
    const [n, m] = [sizes[l], sizes[l + 1]];
    initializers.push({ name: `W${l}`, dims: [n, m], data: weights(rand, n * m, n) });
    initializers.push({ name: `b${l}`, dims: [m], data: Float32Array.from({ length: m }, () => rand() * 0.1) });
    const last = l + 2 === sizes.length;
    nodes.push({ op: 'MatMul', inputs: [x, `W${l}`], outputs: [`mm${l}`] });
    nodes.push({ op: 'Add', inputs: [`mm${l}`, `b${l}`], outputs: [last ? 'y' : `h${l}`] });
    if (!last) {
      nodes.push({ op: 'Relu', inputs: [`h${l}`], outputs: [`r${l}`] });
      x = `r${l}`;
    }
  }
  return {
    name,
    nodes,
    initializers,
    inputs: [{ name: 'x', dims: ['batch', sizes[0]] }],
    outputs: [{ name: 'y', dims: ['batch', sizes.at(-1)] }],
  };
}

/**
 * A ResNet-18-shaped classifier ([batch, 3, size, size] → [batch, classes]): 7×7 stem, max pool,
 * four stages of two basic blocks (64, 128, 256, 512 channels; batch norm folded into the
 * convolutions' bias), global average pool, linear. Random weights: for speed, not accuracy.
 */
function resnet18(name, { size = 224, classes = 1000, seed = 2 } = {}) {
  const rand = rng(seed);
  const nodes = [];
  const initializers = [];
  let id = 0;
  const conv = (x, cin, cout, k, stride, relu) => {
    const n = `c${id++}`;
    initializers.push({ name: `${n}_w`, dims: [cout, cin, k, k], data: weights(rand, cout * cin * k * k, cin * k * k) });
    initializers.push({ name: `${n}_b`, dims: [cout], data: Float32Array.from({ length: cout }, () => rand() * 0.1) });
    const pad = Math.floor(k / 2);
    nodes.push({ op: 'Conv', inputs: [x, `${n}_w`, `${n}_b`], outputs: [relu ? `${n}_pre` : n], attrs: { kernel_shape: [k, k], strides: [stride, stride], pads: [pad, pad, pad, pad] } });
    if (relu) nodes.push({ op: 'Relu', inputs: [`${n}_pre`], outputs: [n] });
    return n;
  };
  let x = conv('x', 3, 64, 7, 2, true);
  nodes.push({ op: 'MaxPool', inputs: [x], outputs: ['pool0'], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] } });
  x = 'pool0';
  let cin = 64;
  for (const [stage, cout] of [64, 128, 256, 512].entries()) {
    for (let block = 0; block < 2; block++) {
      const stride = stage > 0 && block === 0 ? 2 : 1;
      const a = conv(x, cin, cout, 3, stride, true);
      const b = conv(a, cout, cout, 3, 1, false);
      const skip = stride !== 1 || cin !== cout ? conv(x, cin, cout, 1, stride, false) : x;
      const sum = `add${id++}`;
      nodes.push({ op: 'Add', inputs: [b, skip], outputs: [`${sum}_pre`] });
      nodes.push({ op: 'Relu', inputs: [`${sum}_pre`], outputs: [sum] });
      x = sum;
      cin = cout;
    }
  }
  nodes.push({ op: 'GlobalAveragePool', inputs: [x], outputs: ['gap'] });
  nodes.push({ op: 'Flatten', inputs: ['gap'], outputs: ['flat'], attrs: { axis: 1 } });
  initializers.push({ name: 'fc_w', dims: [512, classes], data: weights(rand, 512 * classes, 512) });
  initializers.push({ name: 'fc_b', dims: [classes], data: new Float32Array(classes) });
  nodes.push({ op: 'MatMul', inputs: ['flat', 'fc_w'], outputs: ['fc'] });
  nodes.push({ op: 'Add', inputs: ['fc', 'fc_b'], outputs: ['y'] });
  return {
    name,
    nodes,
    initializers,
    inputs: [{ name: 'x', dims: ['batch', 3, size, size] }],
    outputs: [{ name: 'y', dims: ['batch', classes] }],
  };
}

module.exports = { encodeModel, mlp, resnet18, rng };
