# The two commands of the README. Each installs what it needs (libtorch via the PyPI torch
# wheel, cached per user) and is idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := run

.PHONY: run test build bench

## run: the main job (for now: inspect the bundled tiny cfg)
run:
	source scripts/env.sh && cargo build --release --locked --bin prunescope \
	  && ./target/release/prunescope inspect --cfg sample_runs/shapes/yolov3-tiny-shapes.cfg

## test: the whole test suite
test:
	source scripts/env.sh && cargo test --release --locked

build:
	source scripts/env.sh && cargo build --release --locked

## bench: the benchmarks (figures printed, nothing asserted)
bench:
	source scripts/env.sh && cargo bench --locked --bench eval_overhead && cargo bench --locked --bench sensitivity_speed
