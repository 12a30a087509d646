#!/usr/bin/env python3
"""Makes tests/fixtures/onnx83/: an Ultralytics 8.3 detector export, the layout with one
Split([64, nc]) of the concatenated head outputs (8.4 splits each level's box and class
branches apart), and its onnxruntime outputs.

A YOLOv8n layout at a sixteenth of the nano width, 5 classes, 160 x 160, random weights
(BatchNorm statistics randomised so that fusing them is exercised; nothing downloaded),
exported with Ultralytics' defaults (batch 1, onnxslim). Run once, in a scratch virtualenv:

    pip install "ultralytics==8.3.253" onnx onnxslim onnxruntime opencv-python-headless safetensors
    python scripts/make_yolov8_83_fixture.py --out tests/fixtures/onnx83

Writes yolov8pico83-detect.onnx and yolov8pico83-detect_io.safetensors (`a.input`,
`a.output.output0`, and `a.node.<name>` for every Conv output, as onnxruntime 1.32 computes
them), and models.json (the Split's sizes, the parameter count).
"""

import argparse
import json
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
from safetensors.numpy import save_file
from ultralytics import YOLO

YAML = """
nc: 5
scales:
  p: [0.33, 0.0625, 1024]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 3, C2f, [128, True]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 6, C2f, [256, True]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [-1, 6, C2f, [512, True]]
  - [-1, 1, Conv, [1024, 3, 2]]
  - [-1, 3, C2f, [1024, True]]
  - [-1, 1, SPPF, [1024, 5]]
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]]
  - [-1, 3, C2f, [512]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]]
  - [-1, 3, C2f, [256]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 12], 1, Concat, [1]]
  - [-1, 3, C2f, [512]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, 9], 1, Concat, [1]]
  - [-1, 3, C2f, [1024]]
  - [[15, 18, 21], 1, Detect, [nc]]
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "yolov8pico83.yaml")
        with open(cfg, "w") as f:
            f.write(YAML)
        model = YOLO(cfg)
        for m in model.model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.3, 0.3)
        exported = model.export(format="onnx", imgsz=160)
        path = os.path.join(args.out, "yolov8pico83-detect.onnx")
        os.replace(exported, path)
    m = onnx.load(path)
    splits = [n for n in m.graph.node if n.op_type == "Split"]
    assert splits, "the 8.3 layout has a Split of the concatenated head outputs"
    convs = [n.output[0] for n in m.graph.node if n.op_type == "Conv"]
    # Every Conv output as a graph output, so onnxruntime returns it.
    probe = onnx.load(path)
    for name in convs:
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    tensors = {"a.input": x}
    for name, value in zip(names, outs):
        key = "a.output." + name if name == "output0" else "a.node." + name
        tensors[key] = np.ascontiguousarray(value)
    save_file(tensors, os.path.join(args.out, "yolov8pico83-detect_io.safetensors"))
    inits = {i.name: i for i in m.graph.initializer}
    params = 0
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul"):
            for k in n.input[1:3]:
                if k in inits:
                    params += int(np.prod(inits[k].dims))
    split_sizes = []
    for s in splits:
        sizes = inits.get(s.input[1]) if len(s.input) > 1 else None
        split_sizes.append(onnx.numpy_helper.to_array(sizes).tolist() if sizes is not None else None)
    meta = {p.key: p.value for p in m.metadata_props}
    info = {
        "yolov8pico83-detect": {
            "ultralytics": meta.get("version"),
            "opset": m.opset_import[0].version,
            "split_sizes": split_sizes,
            "onnx_weight_params": params,
            "output": [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim],
        }
    }
    with open(os.path.join(args.out, "models.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
