//! Frame time of the sensitivity view with YOLOv3's 75 convolutions × 10 sparsities (a
//! synthetic run on YOLOv3's real layer list, random weights): the CPU time the UI thread
//! spends per frame (egui pass + tessellation; the GPU upload is not included), while a
//! threshold moves every frame and the live totals are recomputed on the cost worker.
//! Then the same while a sensitivity analysis runs on every core, to show the UI stays
//! responsive. Prints medians and 95th percentiles; asserts nothing.
//!
//! `cargo bench --bench gui_frame [-- --frames N]`

use prunescope::gui::{App, Project, ProjectPaths};
use prunescope::model::{Cfg, Graph, Layout, Model, ModelFiles, Weights};
use prunescope::provenance::DatasetRef;
use prunescope::prune::Method;
use prunescope::sensitivity::store::{EvalSettings, RunHeader, RUN_FORMAT};
use prunescope::sensitivity::{AnalysisConfig, Metric, Metrics, PointRecord, StoredRun, DEFAULT_SPARSITIES};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

const CFG: &str = "tests/fixtures/darknet/yolov3.cfg";

fn thread_cpu_seconds() -> f64 {
    // /proc/thread-self/stat: utime and stime (fields 14 and 15) in clock ticks; too coarse
    // (10 ms) for one frame, so frames are timed by wall clock and CPU is reported in total.
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn synthetic_project(dir: &Path) -> Project {
    let cfg = Cfg::from_file(Path::new(CFG)).expect("YOLOv3 cfg from tests/fixtures");
    let graph = Graph::build(&cfg, 1, 416, 416).unwrap();
    let layout = Layout::of(&cfg, &graph);
    let weights_path = dir.join("synthetic.safetensors");
    Weights::initialize(&layout, 7).save(&weights_path, &layout).unwrap();
    let model =
        Model::open(&ModelFiles::Darknet { cfg: PathBuf::from(CFG), weights: weights_path }, Some(416)).unwrap();
    let reference = model.reference.clone();
    let layers: Vec<(String, usize)> = model.layers.iter().map(|l| (l.name.clone(), l.id)).collect();
    assert_eq!(layers.len(), 75);
    let baseline = 0.55;
    let mut points = Vec::new();
    for (i, (name, block)) in layers.iter().enumerate() {
        // Smooth made-up curves of varying sensitivity: baseline − a·s^p.
        let a = 0.05 + 0.5 * ((i * 37) % 75) as f64 / 75.0;
        let pw = 1.5 + (i % 5) as f64;
        for &s in &DEFAULT_SPARSITIES {
            let v = baseline - a * s.powf(pw);
            points.push(PointRecord {
                layer: name.clone(),
                block: *block,
                sparsity: s,
                zeroed: 0,
                metrics: Metrics { map50: v, map: v * 0.6, precision: v, recall: v, ..Default::default() },
                seconds: 1.0,
            });
        }
    }
    let header = RunHeader {
        format: RUN_FORMAT.into(),
        model: reference,
        dataset: DatasetRef { path: PathBuf::from("synthetic"), images: 5000, sha256: "2".repeat(64) },
        method: Method::L1,
        sparsities: DEFAULT_SPARSITIES.to_vec(),
        layers: layers.iter().map(|l| l.0.clone()).collect(),
        metric: Metric::Map50,
        eval: EvalSettings { img_size: 416, conf: 0.001, iou: 0.6, max_det: 300, preprocess: Default::default() },
        device: "cpu".into(),
        created_at: "2026-11-25T00:00:00Z".into(),
        shard: None,
    };
    let run = StoredRun {
        header,
        baseline: Some((
            Metrics { map50: baseline, map: 0.33, precision: 0.6, recall: 0.6, ..Default::default() },
            1.0,
        )),
        points,
        torn_lines: Vec::new(),
    };
    let paths =
        ProjectPaths { cfg: PathBuf::from(CFG), weights: dir.join("synthetic.safetensors"), ..Default::default() };
    Project::new(paths, Arc::new(model), Some(run)).unwrap()
}

struct Timing {
    median_ms: f64,
    p95_ms: f64,
    cpu_ms_per_frame: f64,
    vertices: usize,
}

/// `n` frames; with `pace`, one frame per `pace` as a 60 Hz display asks for them.
fn frames(
    app: &mut App,
    ctx: &egui::Context,
    n: usize,
    pace: Option<std::time::Duration>,
    screen: egui::Vec2,
) -> Timing {
    let mut times = Vec::with_capacity(n);
    let mut vertices = 0;
    let cpu0 = thread_cpu_seconds();
    for f in 0..n {
        let mut input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, screen)),
            time: Some(f as f64 / 60.0),
            ..Default::default()
        };
        // The pointer sweeps over the grid, as a user looking at the plots does.
        input.events.push(egui::Event::PointerMoved(egui::pos2(40.0 + (f % 400) as f32, 200.0 + (f % 300) as f32)));
        // Move the selected layer's threshold every frame (the drag path: live totals).
        if let (Some(b), Some(p)) = (app.selected_block(), app.project.as_mut()) {
            p.set_sparsity(b, (f % 80) as f64 / 100.0);
        }
        if f % 25 == 0 {
            app.select((f / 25) % 75);
        }
        let t = Instant::now();
        let out = ctx.run_ui(input, |ui| app.frame(ui));
        let prims = ctx.tessellate(out.shapes, out.pixels_per_point);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        vertices = prims
            .iter()
            .map(|p| match &p.primitive {
                egui::epaint::Primitive::Mesh(m) => m.vertices.len(),
                _ => 0,
            })
            .sum();
        if let Some(d) = pace {
            std::thread::sleep(d.saturating_sub(t.elapsed()));
        }
    }
    let cpu = (thread_cpu_seconds() - cpu0) * 1e3 / n as f64;
    times.sort_by(|a, b| a.total_cmp(b));
    Timing { median_ms: times[n / 2], p95_ms: times[(n * 95) / 100], cpu_ms_per_frame: cpu, vertices }
}

fn main() {
    let mut n = 300;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--frames") {
        n = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(n);
    }
    let ctx = egui::Context::default();
    prunescope::gui::setup_context(&ctx);
    // Starts on the sample (as a first start does); the synthetic project replaces it.
    let mut app = App::new(Some(ctx.clone()), None, None);
    while app.loading.is_some() {
        app.poll();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    app.loaded(synthetic_project(dir.path()));
    println!("synthetic YOLOv3 project: 75 layers × 10 points, loaded in {:.2} s", t.elapsed().as_secs_f64());
    // Warm up: fonts, the first totals.
    let window = egui::vec2(1600.0, 1000.0);
    let _ = frames(&mut app, &ctx, 30, None, window);
    let idle = frames(&mut app, &ctx, n, None, window);
    println!(
        "sensitivity view, 1600×1000, {n} frames: median {:.2} ms, p95 {:.2} ms per frame (wall, UI thread); \
         UI-thread CPU {:.2} ms/frame on average; {} vertices in the last frame",
        idle.median_ms, idle.p95_ms, idle.cpu_ms_per_frame, idle.vertices
    );
    // A screen tall enough that every one of the 75 small plots is drawn each frame.
    let tall = egui::vec2(2560.0, 2400.0);
    let _ = frames(&mut app, &ctx, 30, None, tall);
    let all = frames(&mut app, &ctx, n, None, tall);
    println!(
        "all 75 plots on screen (2560×2400), {n} frames: median {:.2} ms, p95 {:.2} ms per frame; \
         UI-thread CPU {:.2} ms/frame; {} vertices",
        all.median_ms, all.p95_ms, all.cpu_ms_per_frame, all.vertices
    );

    // The same while an analysis of the sample runs on every core.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let out = std::env::temp_dir().join(format!("prunescope-bench-gui-{}", std::process::id()));
    let config = AnalysisConfig {
        cfg: "sample_runs/shapes/yolov3-tiny-shapes.cfg".into(),
        weights: "sample_runs/shapes/yolov3-tiny-shapes.safetensors".into(),
        data: "sample_runs/shapes/data.yaml".into(),
        out: out.clone(),
        method: Method::L1,
        sparsities: DEFAULT_SPARSITIES.to_vec(),
        layers: Vec::new(),
        include_heads: false,
        metric: Metric::Map50,
        workers: cores,
        device: "cpu".into(),
        limit: Some(100),
        img_size: None,
        batch: 8,
        cache_mem: 1 << 30,
        resume: false,
        shard: None,
        conf: 0.001,
        iou: Some(0.6),
        max_det: 300,
        ..Default::default()
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = crossbeam_channel::unbounded();
    let c2 = cancel.clone();
    let worker = std::thread::spawn(move || prunescope::sensitivity::run(&config, &tx, &c2));
    // Wait until the analysis is evaluating (past loading), then time frames.
    let started = Instant::now();
    for e in rx.iter() {
        if matches!(e, prunescope::sensitivity::Event::Baseline { .. }) || started.elapsed().as_secs() > 60 {
            break;
        }
    }
    let paced = 600; // ten seconds at 60 Hz
    let busy = frames(&mut app, &ctx, paced, Some(std::time::Duration::from_millis(16)), window);
    let mut rate = 0.0;
    while let Ok(e) = rx.try_recv() {
        if let prunescope::sensitivity::Event::Progress { images_per_s, .. } = e {
            rate = images_per_s;
        }
    }
    cancel.store(true, Ordering::Relaxed);
    let _ = worker.join();
    let _ = std::fs::remove_dir_all(&out);
    println!(
        "{paced} frames at 60 Hz while an analysis runs with {cores} workers (evaluating {rate:.0} images/s meanwhile): \
         median {:.2} ms, p95 {:.2} ms per frame; UI-thread CPU {:.2} ms/frame",
        busy.median_ms, busy.p95_ms, busy.cpu_ms_per_frame
    );
}
