#!/usr/bin/env python3
"""Trains nimify's demo model: a small CNN on scikit-learn's bundled 8x8 digits (no download).

Development-time only. Needs numpy, scikit-learn, onnx, onnxruntime and Pillow, all in the local
pip mirror, e.g.:

    python3 -m venv /tmp/digits-venv
    /tmp/digits-venv/bin/pip install --index-url file:///opt/pypi/simple \\
        --extra-index-url file:///opt/pypi-more/simple numpy scikit-learn onnx onnxruntime pillow
    /tmp/digits-venv/bin/python scripts/digits/train.py

The network is written and trained in plain numpy (im2col convolution, backprop, Adam), with
fixed seeds, so a rerun reproduces the committed files. It writes into examples/digits/:

    digits/1/model.onnx     the model (input `image` [batch, 1, 8, 8] float32, output `logits` [batch, 10])
    digits/labels.txt       one label per class index
    samples/*.png           32x32 greyscale PNGs of held-out test digits (dark ink on white)
    training.json           data split, architecture, hyper-parameters, measured accuracies, and
                            per sample its exact model input and ONNX Runtime's logits (for tests)

Input convention: pixel / 255 of a greyscale image, paper = 1.0 and ink = 0.0, i.e. what a
scanned or photographed digit gives after greyscale, resize to 8x8 and scale 1/255. The 8x8
training images (0..16, ink = 16) are mapped the same way: 1 - v / 16.
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import checker, helper, numpy_helper
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "examples", "digits")
SEED = 20261130
EPOCHS = 40
BATCH = 64
LR = 0.003
C1 = 16      # conv filters
HIDDEN = 64  # dense units


def to_input(v):
    """sklearn digits (0..16, ink high) -> model input (paper 1.0, ink 0.0), [n, 1, 8, 8] float32."""
    return (1.0 - v.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)


def im2col(x):
    """[n, 1, 8, 8] -> [n, 8, 8, 9]: every pixel's 3x3 neighbourhood (zero padding 1)."""
    n = x.shape[0]
    p = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
    cols = np.empty((n, 8, 8, 9), dtype=x.dtype)
    for dy in range(3):
        for dx in range(3):
            cols[:, :, :, dy * 3 + dx] = p[:, dy:dy + 8, dx:dx + 8]
    return cols


def forward(params, x, keep=False):
    w1, b1, w2, b2, w3, b3 = params
    cols = im2col(x)                                  # [n, 8, 8, 9]
    conv = cols @ w1.reshape(C1, 9).T + b1            # [n, 8, 8, C1]
    relu1 = np.maximum(conv, 0)
    blocks = relu1.reshape(-1, 4, 2, 4, 2, C1)        # [n, 4, 2, 4, 2, C1]
    pool = blocks.max(axis=(2, 4))                    # [n, 4, 4, C1]
    flat = pool.transpose(0, 3, 1, 2).reshape(-1, C1 * 16)  # channel-major, as ONNX Flatten of NCHW
    h = flat @ w2 + b2
    relu2 = np.maximum(h, 0)
    logits = relu2 @ w3 + b3
    if not keep:
        return logits
    return logits, (cols, conv, relu1, blocks, pool, flat, h, relu2)


def backward(params, cache, dlogits):
    w1, b1, w2, b2, w3, b3 = params
    cols, conv, relu1, blocks, pool, flat, h, relu2 = cache
    n = dlogits.shape[0]
    dw3 = relu2.T @ dlogits
    db3 = dlogits.sum(0)
    dh = (dlogits @ w3.T) * (h > 0)
    dw2 = flat.T @ dh
    db2 = dh.sum(0)
    dflat = dh @ w2.T
    dpool = dflat.reshape(n, C1, 4, 4).transpose(0, 2, 3, 1)          # [n, 4, 4, C1]
    mask = blocks == pool[:, :, None, :, None, :]                        # the max of each 2x2 block
    mask = mask / mask.sum(axis=(2, 4), keepdims=True)                  # ties share the gradient
    drelu1 = (mask * dpool[:, :, None, :, None, :]).reshape(n, 8, 8, C1)
    dconv = drelu1 * (conv > 0)
    dw1 = (dconv.reshape(-1, C1).T @ cols.reshape(-1, 9)).reshape(C1, 1, 3, 3)
    db1 = dconv.reshape(-1, C1).sum(0)
    return [dw1, db1, dw2, db2, dw3, db3]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def train(x, y, rng):
    params = [
        rng.normal(0, np.sqrt(2 / 9), (C1, 1, 3, 3)).astype(np.float32), np.zeros(C1, np.float32),
        rng.normal(0, np.sqrt(2 / (C1 * 16)), (C1 * 16, HIDDEN)).astype(np.float32), np.zeros(HIDDEN, np.float32),
        rng.normal(0, np.sqrt(2 / HIDDEN), (HIDDEN, 10)).astype(np.float32), np.zeros(10, np.float32),
    ]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    for epoch in range(EPOCHS):
        order = rng.permutation(len(x))
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            logits, cache = forward(params, x[idx], keep=True)
            p = softmax(logits)
            p[np.arange(len(idx)), y[idx]] -= 1
            grads = backward(params, cache, p / len(idx))
            step += 1
            for k in range(len(params)):
                m[k] = 0.9 * m[k] + 0.1 * grads[k]
                v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
                mh = m[k] / (1 - 0.9 ** step)
                vh = v[k] / (1 - 0.999 ** step)
                params[k] = (params[k] - LR * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
    return params


def export(params, path):
    w1, b1, w2, b2, w3, b3 = params
    inits = [numpy_helper.from_array(a, n) for a, n in [(w1, "conv.w"), (b1, "conv.b"), (w2, "fc1.w"), (b2, "fc1.b"), (w3, "fc2.w"), (b3, "fc2.b")]]
    nodes = [
        helper.make_node("Conv", ["image", "conv.w", "conv.b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu1"]),
        helper.make_node("MaxPool", ["relu1"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc1.w", "fc1.b"], ["fc1"]),
        helper.make_node("Relu", ["fc1"], ["relu2"]),
        helper.make_node("Gemm", ["relu2", "fc2.w", "fc2.b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info("image", T.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", T.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="nimify scripts/digits/train.py")
    model.ir_version = 8
    model.doc_string = "8x8 digit classifier trained on scikit-learn's digits; input: greyscale / 255 (paper 1, ink 0)"
    checker.check_model(model, full_check=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(model, path)
    size = os.path.getsize(path)
    assert size < 2_000_000, f"{path} is {size} bytes"
    return size


def main():
    rng = np.random.RandomState(SEED)
    digits = load_digits()
    x_tr, x_te, y_tr, y_te, i_tr, i_te = train_test_split(
        digits.data, digits.target, np.arange(len(digits.target)), test_size=0.2, random_state=0, stratify=digits.target)
    xt, xe = to_input(x_tr), to_input(x_te)
    params = train(xt, y_tr, rng)
    train_acc = float((forward(params, xt).argmax(1) == y_tr).mean())
    test_acc_numpy = float((forward(params, xe).argmax(1) == y_te).mean())

    model_path = os.path.join(OUT, "digits", "1", "model.onnx")
    size = export(params, model_path)
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"image": xe})[0]
    assert np.allclose(logits, forward(params, xe), atol=1e-4), "ONNX and numpy disagree"
    test_acc = float((logits.argmax(1) == y_te).mean())

    with open(os.path.join(OUT, "digits", "labels.txt"), "w") as f:
        f.write("".join(f"{d}\n" for d in range(10)))

    # Samples: the first held-out image of each class, 4x nearest upscale to 32x32, ink dark.
    sdir = os.path.join(OUT, "samples")
    os.makedirs(sdir, exist_ok=True)
    samples = []
    for d in range(10):
        k = int(np.nonzero(y_te == d)[0][0])
        pixels = np.round(255 * (1 - x_te[k].reshape(8, 8) / 16)).astype(np.uint8)
        img = Image.fromarray(np.kron(pixels, np.ones((4, 4), np.uint8)), mode="L")
        name = f"digit-{d}.png"
        img.save(os.path.join(sdir, name), optimize=True)
        predicted = int(logits[k].argmax())
        samples.append({
            "file": f"samples/{name}", "label": d, "datasetIndex": int(i_te[k]), "predicted": predicted,
            # The exact model input for this image (k / 16 steps) and ONNX Runtime's (Python) logits.
            "input": [float(v) for v in xe[k].reshape(-1)],
            "logits": [round(float(v), 5) for v in logits[k]],
        })

    report = {
        "data": "scikit-learn load_digits (1797 images, 8x8, 10 classes), bundled with scikit-learn",
        "split": {"test_size": 0.2, "random_state": 0, "stratify": True, "train": int(len(y_tr)), "test": int(len(y_te))},
        "architecture": f"Conv 3x3x{C1} pad 1 -> ReLU -> MaxPool 2x2 -> Flatten {C1 * 16} -> Gemm {HIDDEN} -> ReLU -> Gemm 10 (logits)",
        "input": "image [batch, 1, 8, 8] float32 = greyscale / 255, paper 1.0, ink 0.0",
        "training": {"optimizer": "Adam", "lr": LR, "batch": BATCH, "epochs": EPOCHS, "seed": SEED, "loss": "softmax cross-entropy"},
        "accuracy": {"train": round(train_acc, 4), "test": round(test_acc, 4), "testNumpy": round(test_acc_numpy, 4)},
        "modelBytes": size,
        "samples": samples,
        "versions": {"numpy": np.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
    }
    with open(os.path.join(OUT, "training.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(json.dumps(report["accuracy"]), f"model {size} bytes")


if __name__ == "__main__":
    main()
