"""Images/s of onnxruntime on an ONNX model: the reference `benches/onnx_speed.rs` holds
prunescope's executor against. Run by the benchmark with the per-user venv's Python
(scripts/env.sh installs onnxruntime and numpy there); not part of prunescope.

usage: ort_speed.py MODEL THREADS SECONDS [WINDOWS]  ->  prints "BATCH IMAGES_PER_S"
(the best of WINDOWS windows of SECONDS / WINDOWS each, as the benchmark measures its own side)
"""
import sys
import time

import numpy as np
import onnxruntime as ort

model, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
windows = int(sys.argv[4]) if len(sys.argv) > 4 else 1
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
inp = session.get_inputs()[0]
# The batch the file allows: its fixed first dimension, else 1.
batch = inp.shape[0] if isinstance(inp.shape[0], int) else 1
shape = [batch] + [d if isinstance(d, int) else 160 for d in inp.shape[1:]]
x = np.random.default_rng(0).random(shape, dtype=np.float32)
for _ in range(3):
    session.run(None, {inp.name: x})
best = 0.0
for _ in range(windows):
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds / windows:
        session.run(None, {inp.name: x})
        n += 1
    best = max(best, n * batch / (time.perf_counter() - start))
print(batch, best)
