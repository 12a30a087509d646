//! Images/s of prunescope's ONNX executor against onnxruntime (the per-user venv's, run by
//! `scripts/ort_speed.py`) on the same number of CPU threads, for the fixture detector,
//! pose model and classifier: ours at batch 1 and 8, onnxruntime at the batch the file
//! allows. Goal (issue 15): ours at batch 8 ≥ onnxruntime at batch 1, and ≥ 0.7× onnxruntime
//! at equal batch. Prints the figures and the ratios; asserts nothing.
//!
//! Run with `make bench` (or `cargo bench --bench onnx_speed` inside the libtorch env).

use prunescope::model::ir::exec::Keep;
use prunescope::model::ir::Net;
use prunescope::model::onnx;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Kind, Tensor};

const THREADS: i32 = 2;
/// Each figure is the best of WINDOWS windows of SECONDS / WINDOWS each, for both sides: on
/// a shared virtual machine a neighbour slows whole stretches of seconds, and the fastest
/// window is the figure least disturbed by it.
const SECONDS: f64 = 3.0;
const WINDOWS: u32 = 10;

/// Images/s of `run` on batches of `batch`: 3 warm-up calls, then the best window.
fn images_per_s(batch: i64, run: &dyn Fn()) -> f64 {
    for _ in 0..3 {
        run();
    }
    let window = SECONDS / WINDOWS as f64;
    let mut best: f64 = 0.0;
    for _ in 0..WINDOWS {
        let (mut n, start) = (0, Instant::now());
        while start.elapsed().as_secs_f64() < window {
            run();
            n += 1;
        }
        best = best.max((n * batch) as f64 / start.elapsed().as_secs_f64());
    }
    best
}

fn ours(model: &Net, batch: i64) -> f64 {
    let mut shape = model.input_shape(None).unwrap();
    shape[0] = batch;
    let x = Tensor::rand(shape.as_slice(), (Kind::Float, tch::Device::Cpu));
    let name = model.inputs[0].name.clone();
    images_per_s(batch, &|| drop(model.run(vec![(name.clone(), x.shallow_clone())], Keep::Outputs).unwrap()))
}

/// (batch, images/s) of onnxruntime, or why it could not be measured.
fn onnxruntime(path: &Path) -> Result<(i64, f64), String> {
    let venv =
        std::env::var_os("PRUNESCOPE_TORCH_VENV").ok_or("PRUNESCOPE_TORCH_VENV is not set (source scripts/env.sh)")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ort_speed.py");
    let out = std::process::Command::new(Path::new(&venv).join("bin/python"))
        .arg(script)
        .arg(path)
        .arg(THREADS.to_string())
        .arg(SECONDS.to_string())
        .arg(WINDOWS.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let batch = parts.next().and_then(|s| s.parse().ok()).ok_or("no batch printed")?;
    let speed = parts.next().and_then(|s| s.parse().ok()).ok_or("no speed printed")?;
    Ok((batch, speed))
}

/// The bundled Darknet sample at batch 8: the Darknet forward (what the engine runs today)
/// against the same model imported into the IR.
fn darknet_sample() {
    use prunescope::model::{darknet, Cfg, Darknet, Graph, Layout, Weights};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes");
    let cfg_path = dir.join("yolov3-tiny-shapes.cfg");
    let cfg = Cfg::from_file(&cfg_path).unwrap();
    let graph = Graph::build(&cfg, 8, cfg.height, cfg.width).unwrap();
    let weights = Weights::load(&dir.join("yolov3-tiny-shapes.safetensors"), &Layout::of(&cfg, &graph)).unwrap();
    let forward = Darknet::new(&cfg, &graph, &weights, tch::Device::Cpu).unwrap();
    let ir = darknet::to_net(&cfg, &graph, &weights, &cfg_path).unwrap();
    let x = Tensor::rand([8, 3, cfg.height as i64, cfg.width as i64], (Kind::Float, tch::Device::Cpu));
    let a = images_per_s(8, &|| drop(forward.forward(&x).unwrap()));
    let b = images_per_s(8, &|| drop(ir.run(vec![("input".into(), x.shallow_clone())], Keep::Outputs).unwrap()));
    println!(
        "darknet sample ({}x{}, batch 8): Darknet forward {a:.1}/s, the same model through the IR {b:.1}/s ({:.2}×)",
        cfg.width,
        cfg.height,
        b / a
    );
}

fn main() {
    tch::set_num_threads(THREADS);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    println!(
        "ONNX executor vs onnxruntime, {THREADS} CPU threads, per figure the best of {WINDOWS} windows in {SECONDS} s"
    );
    println!(
        "{:<26} {:>12} {:>12} {:>16} {:>14} {:>14}",
        "model", "ours b1", "ours b8", "onnxruntime", "b8 / ort", "equal batch"
    );
    for name in ["yolo11pico-detect", "yolov8pico-pose", "mobilenet_v3_small-cls"] {
        let path = dir.join(format!("{name}.onnx"));
        let model = onnx::read(&path).unwrap();
        let (b1, b8) = (ours(&model, 1), ours(&model, 8));
        match onnxruntime(&path) {
            Ok((batch, ort)) => {
                let equal = if batch == 1 { b1 } else { ours(&model, batch) };
                println!(
                    "{name:<26} {b1:>10.1}/s {b8:>10.1}/s {ort:>10.1}/s (b{batch}) {:>13.2}× {:>13.2}×",
                    b8 / ort,
                    equal / ort
                );
            }
            Err(e) => println!("{name:<26} {b1:>10.1}/s {b8:>10.1}/s   onnxruntime not measured: {}", e.trim()),
        }
    }
    darknet_sample();
}
