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
/// Each figure is the best of WINDOWS windows of WINDOW seconds. Ours and onnxruntime's
/// windows alternate (a pause between them lets the other side's spinning threads sleep):
/// on a shared virtual machine a neighbour slows whole stretches of seconds, which then
/// fall on both sides, and the fastest window is the figure least disturbed.
const WINDOW: f64 = 0.3;
const WINDOWS: u32 = 10;
const PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Images/s of `run` on batches of `batch` over one window.
fn window(batch: i64, run: &dyn Fn()) -> f64 {
    let (mut n, start) = (0, Instant::now());
    while start.elapsed().as_secs_f64() < WINDOW {
        run();
        n += 1;
    }
    (n * batch) as f64 / start.elapsed().as_secs_f64()
}

/// A run of `model` on a random batch of `batch`, warmed up.
fn ours(model: &Net, batch: i64) -> impl Fn() + '_ {
    let mut shape = model.input_shape(None).unwrap();
    shape[0] = batch;
    let x = Tensor::rand(shape.as_slice(), (Kind::Float, tch::Device::Cpu));
    let name = model.inputs[0].name.clone();
    let run = move || drop(model.run(vec![(name.clone(), x.shallow_clone())], Keep::Outputs).unwrap());
    for _ in 0..3 {
        run();
    }
    run
}

/// onnxruntime on one model in the per-user venv's Python (`scripts/ort_speed.py`),
/// measuring a window when asked.
struct OnnxRuntime {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    /// The batch the file allows.
    batch: i64,
}

impl OnnxRuntime {
    fn start(path: &Path) -> Result<OnnxRuntime, String> {
        use std::io::BufRead;
        let venv = std::env::var_os("PRUNESCOPE_TORCH_VENV")
            .ok_or("PRUNESCOPE_TORCH_VENV is not set (source scripts/env.sh)")?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ort_speed.py");
        let mut child = std::process::Command::new(Path::new(&venv).join("bin/python"))
            .arg(script)
            .arg(path)
            .arg(THREADS.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let input = child.stdin.take().ok_or("no stdin")?;
        let mut output = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let line = output.next().ok_or("onnxruntime exited (see its error above)")?.map_err(|e| e.to_string())?;
        let batch = line.trim().parse().map_err(|_| format!("not a batch: {line}"))?;
        Ok(OnnxRuntime { child, input, output, batch })
    }

    fn window(&mut self) -> Result<f64, String> {
        use std::io::Write;
        writeln!(self.input, "{WINDOW}").map_err(|e| e.to_string())?;
        let line = self.output.next().ok_or("onnxruntime exited")?.map_err(|e| e.to_string())?;
        line.trim().parse().map_err(|_| format!("not a speed: {line}"))
    }
}

impl Drop for OnnxRuntime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let darknet = || drop(forward.forward(&x).unwrap());
    let through_ir = || drop(ir.run(vec![("input".into(), x.shallow_clone())], Keep::Outputs).unwrap());
    darknet();
    through_ir();
    let (mut a, mut b) = (0f64, 0f64);
    for _ in 0..WINDOWS {
        a = a.max(window(8, &darknet));
        b = b.max(window(8, &through_ir));
    }
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
        "ONNX executor vs onnxruntime, {THREADS} CPU threads, per figure the best of {WINDOWS} windows of {WINDOW} s, the two sides alternating"
    );
    println!(
        "{:<26} {:>12} {:>12} {:>16} {:>14} {:>14}",
        "model", "ours b1", "ours b8", "onnxruntime", "b8 / ort", "equal batch"
    );
    for name in ["yolo11pico-detect", "yolov8pico-pose", "mobilenet_v3_small-cls"] {
        let path = dir.join(format!("{name}.onnx"));
        let model = onnx::read(&path).unwrap();
        let (b1, b8) = (ours(&model, 1), ours(&model, 8));
        let mut ort = match OnnxRuntime::start(&path) {
            Ok(ort) => Some(ort),
            Err(e) => {
                println!("{name:<26} onnxruntime not measured: {}", e.trim());
                None
            }
        };
        let equal_batch = ort.as_ref().map_or(1, |o| o.batch);
        let equal = (equal_batch != 1).then(|| ours(&model, equal_batch));
        let mut best = [0f64; 4];
        for _ in 0..WINDOWS {
            best[0] = best[0].max(window(1, &b1));
            best[1] = best[1].max(window(8, &b8));
            if let Some(run) = &equal {
                best[2] = best[2].max(window(equal_batch, run));
            }
            if let Some(o) = ort.as_mut() {
                std::thread::sleep(PAUSE);
                match o.window() {
                    Ok(v) => best[3] = best[3].max(v),
                    Err(e) => {
                        println!("{name:<26} onnxruntime stopped: {e}");
                        ort = None;
                    }
                }
                std::thread::sleep(PAUSE);
            }
        }
        let [b1, b8, equal, ort_speed] = best;
        let equal = if equal_batch == 1 { b1 } else { equal };
        if ort.is_some() {
            println!(
                "{name:<26} {b1:>10.1}/s {b8:>10.1}/s {ort_speed:>10.1}/s (b{equal_batch}) {:>13.2}× {:>13.2}×",
                b8 / ort_speed,
                equal / ort_speed
            );
        } else {
            println!("{name:<26} {b1:>10.1}/s {b8:>10.1}/s");
        }
    }
    darknet_sample();
}
