//! The sensitivity engine against the naive loop, in one process, on the bundled sample model
//! and validation set: the naive loop evaluates every point in full (prune the checkpoint,
//! build the model, `eval::evaluate`: decode, forward, NMS, metrics), the engine runs the
//! same points with one worker. Prints both times, the speed-up, where the time went, whether
//! every metric is identical, and the engine's MACs/s against the bare forward's.
//!
//! `cargo bench --bench sensitivity_speed` (inside the libtorch env; `make bench` runs it).
//! Arguments: `--images N` (default: all 300), `--method l1|l1-filter|l2-filter`,
//! `--model M.onnx` (an ONNX detector on the sample's validation set instead of the Darknet
//! sample, e.g. tests/fixtures/onnx/yolo11pico-detect.onnx: five classes at 160).

use prunescope::data::{DetectionDataset, OnBad, OpenOptions};
use prunescope::eval::{self, EvalConfig, NetPredictor};
use prunescope::model::{Model, ModelFiles};
use prunescope::prune::{self, Method};
use prunescope::sensitivity::{self, store, AnalysisConfig};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tch::{Device, Tensor};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes");
    let images: Option<usize> = arg("--images").and_then(|v| v.parse().ok());
    let method = match arg("--method").as_deref() {
        Some("l1-filter") => Method::L1Filter,
        Some("l2-filter") => Method::L2Filter,
        _ => Method::L1,
    };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let out = tempfile::tempdir().unwrap();
    let onnx: Option<std::path::PathBuf> = arg("--model").map(Into::into);
    let config = AnalysisConfig {
        cfg: root.join("yolov3-tiny-shapes.cfg"),
        weights: root.join("yolov3-tiny-shapes.safetensors"),
        model: onnx.clone(),
        data: root.join("data.yaml"),
        out: out.path().join("run"),
        method,
        limit: images,
        workers: 1,
        ..Default::default()
    };
    let files = match &onnx {
        Some(path) => ModelFiles::Onnx { path: path.clone(), task: None },
        None => ModelFiles::Darknet { cfg: config.cfg.clone(), weights: config.weights.clone() },
    };
    let model = Model::open(&files, None).unwrap();
    let size = model.img_size;
    let weights = &model.weights;
    let opts = OpenOptions { on_bad: OnBad::Error, limit: images, ..Default::default() };
    let ds = DetectionDataset::open_with(&config.data, opts).unwrap();
    let layers = sensitivity::select_layers(&model, &[], false).unwrap();
    let n_points = layers.len() * config.sparsities.len();
    println!(
        "model {} ({} layers × {} sparsities = {n_points} points, {method}), {} images, {threads} threads, one worker",
        model.path().display(),
        layers.len(),
        config.sparsities.len(),
        ds.samples.len()
    );
    tch::set_num_threads(threads as i32);

    // The engine.
    let (tx, rx) = crossbeam_channel::unbounded();
    let cancel = AtomicBool::new(false);
    let t = Instant::now();
    let summary = sensitivity::run(&config, &tx, &cancel).unwrap();
    let engine_s = t.elapsed().as_secs_f64();
    drop(tx);
    drop(rx);
    let run = store::read(&config.out).unwrap();

    // The naive loop: one full evaluation per point, same code otherwise.
    let ecfg = EvalConfig { img_size: size, batch: config.batch, ..Default::default() };
    let t = Instant::now();
    let (mut fwd, mut nms, mut met, mut dec) = (0.0, 0.0, 0.0, 0.0);
    let mut mismatches = 0;
    let mut worst: f64 = 0.0;
    let base_net = NetPredictor::new(&model, weights, Device::Cpu).unwrap();
    let base = eval::evaluate(&base_net, &ds, &ecfg, &mut |_, _| true).unwrap();
    drop(base_net);
    for &l in &layers {
        let layer = &model.layers[l];
        for &s in &config.sparsities {
            let mut w = weights.clone();
            prune::prune_layer(&mut w, &layer.keys, method, s);
            let net = NetPredictor::new(&model, &w, Device::Cpu).unwrap();
            let r = eval::evaluate(&net, &ds, &ecfg, &mut |_, _| true).unwrap();
            fwd += r.timing.forward_s;
            nms += r.timing.postprocess_s;
            met += r.timing.metrics_s;
            dec += r.timing.decode_wait_s;
            let p = run.points.iter().find(|p| p.layer == layer.name && p.sparsity == s).unwrap();
            let d = [
                (p.metrics.map50 - r.map50).abs(),
                (p.metrics.map - r.map).abs(),
                (p.metrics.precision - r.precision).abs(),
                (p.metrics.recall - r.recall).abs(),
            ]
            .into_iter()
            .fold(0.0, f64::max);
            worst = worst.max(d);
            if d != 0.0 {
                mismatches += 1;
            }
        }
    }
    let naive_s = t.elapsed().as_secs_f64() + base.timing.total_s;
    let baseline_equal = run.baseline.unwrap().0.map50 == base.map50;

    // The bare forward: MACs/s of the unpruned model over the decoded images, batch 8.
    let net = NetPredictor::new(&model, weights, Device::Cpu).unwrap();
    let mut batches = Vec::new();
    for chunk in ds.samples.chunks(config.batch) {
        let mut flat = Vec::new();
        for s in chunk {
            flat.extend(
                prunescope::data::try_letterbox(&prunescope::data::load_rgb(&s.image).unwrap(), size).unwrap().data,
            );
        }
        batches.push(Tensor::from_slice(&flat).view([chunk.len() as i64, 3, size as i64, size as i64]));
    }
    let _ = net.output(&batches[0]).unwrap();
    let t = Instant::now();
    for _ in 0..3 {
        for b in &batches {
            let _ = net.output(b).unwrap();
        }
    }
    let bare_s = t.elapsed().as_secs_f64() / 3.0;
    let model_macs = model.macs;
    let bare_rate = model_macs as f64 * ds.samples.len() as f64 / bare_s;
    let tm = &summary.timing;
    let engine_rate = summary.point_macs as f64 / tm.forward_s;

    println!("\nnaive loop : {naive_s:8.1} s  (forward {fwd:.1} s, NMS {nms:.1} s, metrics {met:.1} s, waiting for decode {dec:.1} s, other {:.1} s)", naive_s - fwd - nms - met - dec);
    println!(
        "engine     : {engine_s:8.1} s  (forward {:.1} s, NMS {:.1} s, metrics {:.1} s, activations {:.1} s, decode {:.1} s, baseline+cache {:.1} s, other {:.1} s)",
        tm.forward_s,
        tm.nms_s,
        tm.metrics_s,
        tm.activations_s,
        tm.decode_s,
        tm.baseline_s,
        engine_s - tm.forward_s - tm.nms_s - tm.metrics_s - tm.activations_s - tm.decode_s - tm.baseline_s
    );
    println!("speed-up   : {:.2}× with one worker (target ≥ 2×)", naive_s / engine_s);
    println!(
        "metrics    : {} of {n_points} points identical (largest difference {worst:e}); baseline identical: {baseline_equal}",
        n_points - mismatches
    );
    println!(
        "MACs/s     : engine forward {:.2} GMac/s (the blocks it ran) vs bare forward {:.2} GMac/s ({:.0} %); the engine ran {:.1} % of the naive loop's MACs",
        engine_rate / 1e9,
        bare_rate / 1e9,
        100.0 * engine_rate / bare_rate,
        100.0 * summary.point_macs as f64 / (model_macs as f64 * ds.samples.len() as f64 * n_points as f64)
    );
    println!("cache      : {:.1} MiB for {} batches", summary.cache_bytes as f64 / 1048576.0, summary.cached_batches);
}
