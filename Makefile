# The two commands of the README. Each installs what it needs (libtorch via the PyPI torch
# wheel, cached per user) and is idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := run

.PHONY: run test build lint bench

## run: the main job: the explorer on the bundled sample experiment
run:
	scripts/gui-deps.sh
	source scripts/env.sh && cargo build --release --locked --bin prunescope \
	  && ./target/release/prunescope gui sample_runs/shapes

## test: the whole test suite
test:
	scripts/gui-deps.sh
	source scripts/env.sh && cargo test --release --locked

build:
	source scripts/env.sh && cargo build --release --locked

## lint: formatting and clippy, as CI checks them
lint:
	cargo fmt --check
	source scripts/env.sh && cargo clippy --locked --all-targets -- -D warnings

## bench: the benchmarks (figures printed, nothing asserted)
bench:
	source scripts/env.sh && cargo bench --locked --bench eval_overhead && cargo bench --locked --bench sensitivity_speed && cargo bench --locked --bench gui_frame && cargo bench --locked --bench onnx_speed
