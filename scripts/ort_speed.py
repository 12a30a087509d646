"""Images/s of onnxruntime on an ONNX model: the reference `benches/onnx_speed.rs` holds
prunescope's executor against. Run by the benchmark with the per-user venv's Python
(scripts/env.sh installs onnxruntime and numpy there); not part of prunescope.

usage: ort_speed.py MODEL THREADS
Prints the batch the file allows ("BATCH"), then for every line SECONDS read from stdin runs
the model for that long and prints its images/s: the benchmark interleaves these windows
with its own, so that a slow stretch of a shared machine falls on both sides alike.
"""
import sys
import time

import numpy as np
import onnxruntime as ort

model, threads = sys.argv[1], int(sys.argv[2])
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
print(batch, flush=True)
for line in sys.stdin:
    seconds = float(line)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, {inp.name: x})
        n += 1
    print(n * batch / (time.perf_counter() - start), flush=True)
