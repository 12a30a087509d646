#!/usr/bin/env python3
"""Makes tests/fixtures/onnx_matmul/: a small classifier whose fully connected layers are
MatMul + Add with `[in, out]` weight matrices, as tf2onnx exports Keras Dense layers (torch
exports Linear as Gemm), and its onnxruntime outputs.

Conv(3→8, 3×3) → Relu → GlobalAveragePool → Flatten → MatMul([8, 12]) → Add → Relu →
MatMul([12, 4]) → Add → `logits` [1, 4]; opset 13, batch 1, 16×16 input, random weights
(seed 0). Built with onnx.helper, so nothing but the onnx and onnxruntime packages is needed:

    pip install onnx onnxruntime==1.32.0 safetensors numpy
    python scripts/make_matmul_fixture.py --out tests/fixtures/onnx_matmul
"""

import argparse
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    f = lambda *s: rng.normal(0, 0.5, s).astype(np.float32)
    inits = [
        numpy_helper.from_array(f(8, 3, 3, 3), "conv.weight"),
        numpy_helper.from_array(f(8), "conv.bias"),
        numpy_helper.from_array(f(8, 12), "dense/kernel"),
        numpy_helper.from_array(f(12), "dense/bias"),
        numpy_helper.from_array(f(12, 4), "logits/kernel"),
        numpy_helper.from_array(f(4), "logits/bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "conv.weight", "conv.bias"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "dense/kernel"], ["d"], name="dense/MatMul"),
        helper.make_node("Add", ["d", "dense/bias"], ["db"], name="dense/BiasAdd"),
        helper.make_node("Relu", ["db"], ["dr"], name="dense/Relu"),
        helper.make_node("MatMul", ["dr", "logits/kernel"], ["l"], name="logits/MatMul"),
        helper.make_node("Add", ["l", "logits/bias"], ["logits"], name="logits/BiasAdd"),
    ]
    graph = helper.make_graph(
        nodes,
        "dense-matmul",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_matmul_fixture")
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "dense-matmul-cls.onnx")
    onnx.save(model, path)
    probe = onnx.load(path)
    for name in ["c", "d", "l"]:
        probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.random((1, 3, 16, 16), dtype=np.float32)
    outs = sess.run(None, {"images": x})
    names = [o.name for o in sess.get_outputs()]
    tensors = {"a.input": x}
    for n, v in zip(names, outs):
        tensors[("a.output." if n == "logits" else "a.node.") + n] = np.ascontiguousarray(v)
    save_file(tensors, os.path.join(args.out, "dense-matmul-cls_io.safetensors"))
    print(names, [o.shape for o in outs])


if __name__ == "__main__":
    main()
