//! The sensitivity engine: masks with exact counts, suffix runs equal to the full forward of
//! the pruned model, resume after SIGKILL, shards, refusals.

mod common;

use prunescope::eval::NetPredictor;
use prunescope::model::{Cfg, Darknet, Graph, Layout, Model, ModelFiles, Weights};
use prunescope::prune::{self, Method};
use prunescope::sensitivity::{self, store, AnalysisConfig, Event, RunSummary};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use tch::{Device, Kind, Tensor};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes")
}

fn sample_cfg() -> PathBuf {
    sample().join("yolov3-tiny-shapes.cfg")
}

fn sample_weights() -> PathBuf {
    sample().join("yolov3-tiny-shapes.safetensors")
}

fn sample_data() -> PathBuf {
    sample().join("data.yaml")
}

/// For every convolution of parity.cfg (every layer kind of the tiny family, two heads) and
/// each method, the engine's way of computing a point (the full pass's tensors, the pruned
/// layer, then only its dependents) equals the full forward pass of the pruned model through
/// the same executor bit for bit, and the Darknet forward (PyTorch-YOLOv3's, layer by
/// layer) within the parity tolerance, 1e-4 relative to max(1, |value|): the executor runs
/// convolutions channels-last, whose kernels round differently, and box sizes are
/// exponentials of the head's output.
#[test]
fn suffix_equals_the_full_forward_for_every_layer() {
    let files = ModelFiles::Darknet { cfg: common::darknet("parity.cfg"), weights: common::darknet("parity.weights") };
    let model = Model::open(&files, Some(128)).unwrap();
    let net = NetPredictor::new(&model, &model.weights, Device::Cpu).unwrap();
    let cfg = Cfg::from_file(&common::darknet("parity.cfg")).unwrap();
    let graph = Graph::build(&cfg, 1, 128, 128).unwrap();
    tch::manual_seed(1);
    let image = Tensor::rand([2, 3, 128, 128], (Kind::Float, Device::Cpu));
    let sparsities = [0.3, 0.88];
    let mut worst: f64 = 0.0;
    assert_eq!(model.layers.len(), Layout::of(&cfg, &graph).convs.len());
    for layer in &model.layers {
        for method in [Method::L1, Method::L1Filter, Method::L2Filter] {
            let got = sensitivity::pruned_detections(&net, &model, layer.id, method, &sparsities, &image).unwrap();
            for (s, g) in sparsities.iter().zip(&got) {
                let mut pruned = model.weights.clone();
                prune::prune_layer(&mut pruned, &layer.keys, method, *s);
                let full = NetPredictor::new(&model, &pruned, Device::Cpu).unwrap().output(&image).unwrap();
                assert!(g.equal(&full), "{} {method} {s}: the suffix run differs from the full pass", layer.name);
                let darknet = Darknet::new(&cfg, &graph, &pruned, Device::Cpu).unwrap().forward(&image).unwrap();
                let scaled = (g - &darknet).abs() / darknet.abs().clamp_min(1.0);
                let d = scaled.max().double_value(&[]);
                let at = scaled.flatten(0, -1).argmax(0, false).int64_value(&[]);
                let cols = darknet.size()[2];
                assert!(
                    d <= 1e-4,
                    "{} {method} {s}: max |suffix − Darknet forward| / max(1, |Darknet|) = {d} at row {}, column {} ({} vs {})",
                    layer.name,
                    at / cols,
                    at % cols,
                    g.flatten(0, -1).double_value(&[at]),
                    darknet.flatten(0, -1).double_value(&[at])
                );
                worst = worst.max(d);
            }
        }
    }
    eprintln!("largest difference from the Darknet forward over all layers and methods: {worst:e}");
}

/// Pruned counts are exact: round(fraction × weights) for L1, round(fraction × filters)
/// whole filters (with their BN scale and shift) for the filter methods.
#[test]
fn masks_have_exact_counts() {
    let cfg = Cfg::from_file(&sample_cfg()).unwrap();
    let graph = Graph::build(&cfg, 1, 160, 160).unwrap();
    let layout = Layout::of(&cfg, &graph);
    let weights = Weights::initialize(&layout, 5);
    for keys in &layout.convs {
        let w = weights.get(&keys.weight);
        let (n, filters) = (w.data.len(), w.shape[0]);
        for &s in &sensitivity::DEFAULT_SPARSITIES {
            let mut p = weights.clone();
            prune::prune_layer(&mut p, keys, Method::L1, s);
            let zeros = p.get(&keys.weight).data.iter().filter(|v| **v == 0.0).count();
            assert_eq!(zeros, (s * n as f64).round() as usize, "conv_{} l1 {s}", keys.block);
            for method in [Method::L1Filter, Method::L2Filter] {
                let mut p = weights.clone();
                let count = prune::prune_layer(&mut p, keys, method, s);
                let pw = p.get(&keys.weight);
                let per = n / filters;
                let zero_filters: Vec<usize> =
                    (0..filters).filter(|f| pw.data[f * per..(f + 1) * per].iter().all(|v| *v == 0.0)).collect();
                assert_eq!(
                    zero_filters.len(),
                    (s * filters as f64).round() as usize,
                    "conv_{} {method} {s}",
                    keys.block
                );
                assert_eq!(count.filters_zeroed, zero_filters.len());
                // The zeroed filters are those of smallest norm.
                let norms = prune::mask::filter_norms(w, method == Method::L2Filter);
                let kept_min =
                    (0..filters).filter(|f| !zero_filters.contains(f)).map(|f| norms[f]).fold(f64::MAX, f64::min);
                assert!(zero_filters.iter().all(|&f| norms[f] <= kept_min));
                let channel = match &keys.bn {
                    Some([bw, bb, _, _]) => vec![p.get(bw), p.get(bb)],
                    None => vec![p.get(keys.bias.as_ref().unwrap())],
                };
                for t in channel {
                    assert!(zero_filters.iter().all(|&f| t.data[f] == 0.0));
                }
            }
        }
    }
}

fn config(out: &Path) -> AnalysisConfig {
    AnalysisConfig {
        cfg: sample_cfg(),
        weights: sample_weights(),
        data: sample_data(),
        out: out.to_path_buf(),
        sparsities: vec![0.3, 0.8],
        layers: vec!["conv_2".into(), "conv_11".into(), "conv_19".into()],
        limit: Some(24),
        ..Default::default()
    }
}

fn run(c: &AnalysisConfig) -> Result<(RunSummary, Vec<Event>), String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let cancel = AtomicBool::new(false);
    let summary = sensitivity::run(c, &tx, &cancel).map_err(|e| e.to_string())?;
    drop(tx);
    Ok((summary, rx.iter().collect()))
}

/// Metrics of a point computed the naive way: the pruned checkpoint evaluated in full.
fn naive(c: &AnalysisConfig, block: usize, sparsity: f64) -> prunescope::eval::EvalReport {
    use prunescope::data::{DetectionDataset, OnBad};
    use prunescope::eval::{self, EvalConfig};
    let files = ModelFiles::Darknet { cfg: c.cfg.clone(), weights: c.weights.clone() };
    let model = Model::open(&files, Some(160)).unwrap();
    let mut w = model.weights.clone();
    prune::prune_layer(&mut w, &model.layer_by_id(block).unwrap().keys, c.method, sparsity);
    let net = NetPredictor::new(&model, &w, Device::Cpu).unwrap();
    let mut ds = DetectionDataset::open(&c.data, None, OnBad::Error).unwrap();
    ds.limit(c.limit.unwrap());
    eval::evaluate(&net, &ds, &EvalConfig { img_size: 160, batch: c.batch, ..Default::default() }, &mut |_, _| true)
        .unwrap()
}

/// The engine's points equal full evaluations of the pruned checkpoints, with the
/// activation cache and without it (a cap too small for one batch), for unstructured and
/// filter pruning; the events stream every point and end with Finished.
#[test]
fn engine_points_equal_full_evaluations_cached_or_not() {
    let d = tempfile::tempdir().unwrap();
    for method in [Method::L1, Method::L2Filter] {
        let mut cached = config(&d.path().join(format!("cached-{method}")));
        cached.method = method;
        let mut uncached = cached.clone();
        uncached.out = d.path().join(format!("uncached-{method}"));
        uncached.cache_mem = 1;
        let (sa, events) = run(&cached).unwrap();
        let (sb, _) = run(&uncached).unwrap();
        assert_eq!((sa.cached_batches, sb.cached_batches, sa.batches), (3, 0, 3));
        assert_eq!(sb.cache_bytes, 0);
        assert!(matches!(events.first(), Some(Event::Started { total: 6, .. })));
        assert!(matches!(events.last(), Some(Event::Finished(_))));
        assert_eq!(events.iter().filter(|e| matches!(e, Event::Point(_))).count(), 6);
        let a = store::read(&cached.out).unwrap();
        let b = store::read(&uncached.out).unwrap();
        let full = naive(&cached, 0, 0.0);
        assert_eq!(a.baseline.unwrap().0.map50, full.map50);
        for (p, q) in a.points.iter().zip(&b.points) {
            assert_eq!((p.block, p.sparsity, p.metrics), (q.block, q.sparsity, q.metrics));
        }
        for p in &a.points {
            let n = naive(&cached, p.block, p.sparsity);
            assert_eq!(
                (p.metrics.map50, p.metrics.map, p.metrics.precision, p.metrics.recall),
                (n.map50, n.map, n.precision, n.recall),
                "{} {method} {}",
                p.layer,
                p.sparsity
            );
        }
    }
}

fn strip_seconds(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("points.jsonl")).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v.to_string()
        })
        .collect();
    lines.sort();
    lines
}

fn analyze(out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_prunescope"));
    c.arg("analyze").arg("--cfg").arg(sample_cfg()).arg("--weights").arg(sample_weights());
    c.arg("--data").arg(sample_data()).arg("--out").arg(out);
    c.args([
        "--limit",
        "16",
        "--sparsities",
        "10,30,50,70,88",
        "--layers",
        "conv_0,conv_4,conv_6,conv_8,conv_10,conv_12",
    ]);
    c.args(extra);
    c
}

/// A run killed with SIGKILL mid-way and resumed gives the same points as an uninterrupted
/// run, and the resumed part does not redo the finished points.
#[test]
fn killed_and_resumed_equals_uninterrupted() {
    let d = tempfile::tempdir().unwrap();
    let (full, killed) = (d.path().join("full"), d.path().join("killed"));
    let st = analyze(&full, &[]).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let mut child =
        analyze(&killed, &[]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Kill as soon as the first layer's points are on disk.
    let points = killed.join("points.jsonl");
    let start = std::time::Instant::now();
    loop {
        let n = std::fs::read_to_string(&points).map(|t| t.lines().count()).unwrap_or(0);
        if n >= 2 || start.elapsed().as_secs() > 120 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before it could be killed");
    let before = store::read(&killed).unwrap().points.len();
    assert!((1..30).contains(&before), "{before} points before the kill");
    // A torn line, as a kill in the middle of a write leaves it.
    let mut text = std::fs::read_to_string(&points).unwrap();
    text.push_str("{\"kind\":\"point\",\"layer\":\"conv_");
    std::fs::write(&points, text).unwrap();
    let out = analyze(&killed, &["--resume"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{} points computed ({before} resumed)", 30 - before)), "{stdout}");
    assert_eq!(strip_seconds(&killed), strip_seconds(&full));
    assert!(killed.join("sensitivity.csv").exists() && killed.join("sensitivity.png").exists());
}

/// Two shards merged equal one full run; merging refuses incomplete or foreign shards.
#[test]
fn shards_merge_into_the_full_run() {
    let d = tempfile::tempdir().unwrap();
    let full = d.path().join("full");
    let c = config(&full);
    run(&c).unwrap();
    let mut shards = Vec::new();
    for i in 0..2 {
        let mut s = c.clone();
        s.out = d.path().join(format!("shard{i}"));
        s.shard = Some(format!("{i}/2").parse().unwrap());
        let (summary, _) = run(&s).unwrap();
        assert_eq!(summary.total_points, 3);
        shards.push(s.out);
    }
    let merged = d.path().join("merged");
    sensitivity::merge::merge(&shards, &merged).unwrap();
    assert_eq!(strip_seconds(&merged), strip_seconds(&full));
    let e = sensitivity::merge::merge(&shards[..1], &d.path().join("m2")).unwrap_err().to_string();
    assert!(e.contains("shard 1/2 is missing"), "{e}");
    let e = sensitivity::merge::merge(&[shards[0].clone(), shards[0].clone()], &d.path().join("m3"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("shard 0/2 is also"), "{e}");
    // `merge --out` onto an existing run is refused; the run is left as it was.
    let before = std::fs::read(full.join("points.jsonl")).unwrap();
    for out in [&merged, &full] {
        let e = sensitivity::merge::merge(&shards, out).unwrap_err().to_string();
        assert!(e.contains("run.json") && e.contains("a run already exists here"), "{e}");
    }
    assert_eq!(std::fs::read(full.join("points.jsonl")).unwrap(), before);
}

/// Resuming against other weights (or into a run folder without --resume) is refused with
/// a message naming the file and what differs; the stored points are untouched.
#[test]
fn resume_refuses_changed_weights() {
    let d = tempfile::tempdir().unwrap();
    let mut c = config(&d.path().join("run"));
    c.layers = vec!["conv_12".into()];
    run(&c).unwrap();
    let before = std::fs::read(c.out.join("points.jsonl")).unwrap();
    let e = run(&c).unwrap_err();
    assert!(e.contains("a run already exists here: resume it (--resume"), "{e}");
    // Same tensors, another file: a re-saved checkpoint with one weight changed.
    let cfg = Cfg::from_file(&c.cfg).unwrap();
    let layout = Layout::of(&cfg, &Graph::build(&cfg, 1, 160, 160).unwrap());
    let mut w = Weights::load(&c.weights, &layout).unwrap();
    w.get_mut("module_list.0.conv_0.weight").unwrap().data[0] += 0.5;
    let changed = d.path().join("changed.safetensors");
    w.save(&changed, &layout).unwrap();
    let mut r = c.clone();
    r.weights = changed;
    r.resume = true;
    let e = run(&r).unwrap_err();
    assert!(e.contains("run.json") && e.contains("cannot resume: mismatched weights"), "{e}");
    assert_eq!(std::fs::read(c.out.join("points.jsonl")).unwrap(), before);
    // The unchanged model resumes and has nothing left to do.
    let mut same = c.clone();
    same.resume = true;
    let (s, _) = run(&same).unwrap();
    assert_eq!((s.resumed_points, s.computed_points), (2, 0));
}

/// Warnings reach stderr when it is no terminal (a batch job's log), where the progress bar
/// draws nothing: a cap too small for any batch warns about the activation cache and the
/// decoded images.
#[test]
fn analyze_warnings_reach_a_piped_stderr() {
    let d = tempfile::tempdir().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_prunescope"));
    c.arg("analyze").arg("--cfg").arg(sample_cfg()).arg("--weights").arg(sample_weights());
    c.arg("--data").arg(sample_data()).arg("--out").arg(d.path().join("run"));
    c.args(["--limit", "8", "--sparsities", "50", "--layers", "conv_12", "--cache-mem", "1"]);
    let out = c.stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning: activation cache: 0 of 1 batches fit in --cache-mem"), "{stderr}");
    assert!(stderr.contains("warning: decoded images: 1 of 1 batches do not fit"), "{stderr}");
    assert!(stderr.contains("baseline: mAP@0.5"), "{stderr}");
    assert!(stderr.contains("analyze: 1/1 points"), "{stderr}");
}

/// `--resume` into a folder whose run.json is gone refuses, naming the file, and leaves the
/// points another run wrote as they were (it used to truncate them); so does a new run.
#[test]
fn resume_without_run_json_refuses_and_keeps_the_points() {
    let d = tempfile::tempdir().unwrap();
    let mut c = config(&d.path().join("run"));
    c.layers = vec!["conv_12".into()];
    run(&c).unwrap();
    std::fs::remove_file(c.out.join("run.json")).unwrap();
    let before = std::fs::read(c.out.join("points.jsonl")).unwrap();
    assert_eq!(String::from_utf8_lossy(&before).lines().count(), 3);
    for resume in [true, false] {
        let mut r = c.clone();
        r.resume = resume;
        let e = run(&r).unwrap_err();
        assert!(
            e.contains("points.jsonl") && e.contains("no run.json") && e.contains("choose another output folder"),
            "{e}"
        );
        assert_eq!(e.contains("cannot resume"), resume, "{e}");
        assert_eq!(std::fs::read(c.out.join("points.jsonl")).unwrap(), before);
    }
    // --resume into an empty folder starts the run: there is nothing to resume.
    let mut fresh = c.clone();
    fresh.out = d.path().join("fresh");
    fresh.resume = true;
    let (s, _) = run(&fresh).unwrap();
    assert_eq!((s.resumed_points, s.computed_points), (0, 2));
}

/// One writer per run folder: while a process holds the folder's lock, a second writer (the
/// engine, a resume, a merge) is refused and told which process holds it.
#[test]
fn a_second_writer_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let header = store::read(&sample().join("sensitivity-l1")).unwrap().header;
    let dir = d.path().join("run");
    let first = store::RunWriter::create(&dir, &header).unwrap();
    let holder = format!("pid {}", std::process::id());
    let e = store::RunWriter::resume(&dir, &header).err().unwrap().to_string();
    assert!(e.contains("another prunescope process is writing to this run folder") && e.contains(&holder), "{e}");
    let mut c = config(&dir);
    c.resume = true;
    let e = run(&c).unwrap_err();
    assert!(e.contains(&holder), "{e}");
    drop(first);
    // Released: the same folder can be resumed now (here: it is refused for its other
    // analysis, not for a lock).
    let e = run(&c).unwrap_err();
    assert!(!e.contains(&holder) && e.contains("cannot resume"), "{e}");
}

/// run.json stores the model and dataset relative to the run folder: a run moved with its
/// files (copied from a GPU server) still loads; a missing file is named with the flag that
/// points at it. The bundled runs (paths relative to the folder they were made from) load too.
#[test]
fn run_paths_are_relative_to_the_run_folder() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::copy(sample_cfg(), a.join("model.cfg")).unwrap();
    std::fs::copy(sample_weights(), a.join("model.safetensors")).unwrap();
    let mut c = config(&a.join("runs/r1"));
    c.cfg = a.join("model.cfg");
    c.weights = a.join("model.safetensors");
    c.layers = vec!["conv_12".into()];
    c.sparsities = vec![0.5];
    run(&c).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.out.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["model"]["cfg"]["path"], "../../model.cfg");
    assert_eq!(json["model"]["weights"]["path"], "../../model.safetensors");
    assert!(json["dataset"]["path"].as_str().unwrap().ends_with("sample_runs/shapes/data.yaml"));
    let b = d.path().join("b");
    std::fs::rename(&a, &b).unwrap();
    let moved = b.join("runs/r1");
    let r = store::read(&moved).unwrap();
    assert_eq!(r.header.model.cfg.path.canonicalize().unwrap(), b.join("model.cfg").canonicalize().unwrap());
    assert!(r.header.model.weights.path.is_file() && r.header.dataset.path.is_file());
    let (cfg, weights) = store::model_files(&r, &moved, None, None).unwrap();
    assert!(cfg.is_file() && weights.is_file());
    // `suggest --run` on the moved run, from another current folder, finds its model.
    let out = Command::new(env!("CARGO_BIN_EXE_prunescope"))
        .current_dir(d.path())
        .args(["suggest", "--run", "b/runs/r1", "--budget", "0.01", "--out", "plan.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(d.path().join("plan.json").is_file());
    std::fs::remove_file(b.join("model.safetensors")).unwrap();
    let e = store::model_files(&store::read(&moved).unwrap(), &moved, None, None).unwrap_err().to_string();
    assert!(e.contains("run.json") && e.contains("model.safetensors") && e.contains("--weights PATH"), "{e}");
    // Resuming the moved run works (and keeps its header).
    let mut again = c.clone();
    again.out = moved.clone();
    again.weights = sample_weights();
    again.cfg = b.join("model.cfg");
    again.resume = true;
    let (s, _) = run(&again).unwrap();
    assert_eq!((s.resumed_points, s.computed_points), (1, 0));
    for name in ["sensitivity-l1", "sensitivity-l2-filter"] {
        let r = store::read(&sample().join(name)).unwrap();
        let h = &r.header;
        for p in [&h.model.cfg.path, &h.model.weights.path, &h.dataset.path] {
            assert!(p.is_file(), "{name}: {}", p.display());
        }
        assert_eq!(r.points.len(), 100);
    }
}

/// A failure while points are computed is returned once, as the error of `run`: the events
/// carry progress and warnings only (the explorer and the CLI used to show it twice). The
/// failure here: an image decoded again past --cache-mem is deleted after the decoding pass
/// (the event channel is a rendezvous, so the engine waits while the test deletes it).
#[test]
fn a_failure_is_returned_not_streamed() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    for sub in ["images/val", "labels/val"] {
        std::fs::create_dir_all(data.join(sub)).unwrap();
    }
    std::fs::copy(sample_data(), data.join("data.yaml")).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(sample().join("images/val"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in &names[..8] {
        std::fs::copy(sample().join("images/val").join(n), data.join("images/val").join(n)).unwrap();
        let label = Path::new(n).with_extension("txt");
        std::fs::copy(sample().join("labels/val").join(&label), data.join("labels/val").join(&label)).unwrap();
    }
    let mut c = config(&d.path().join("run"));
    c.data = data.join("data.yaml");
    c.limit = None;
    c.layers = vec!["conv_12".into()];
    c.sparsities = vec![0.5];
    c.cache_mem = 1;
    run(&c).unwrap();
    // Keep the baseline only: the resumed run computes the point without a baseline pass.
    let points = c.out.join("points.jsonl");
    let first = std::fs::read_to_string(&points).unwrap().lines().next().unwrap().to_string();
    std::fs::write(&points, first + "\n").unwrap();
    c.resume = true;
    let victim = data.join("images/val").join(&names[0]);
    let (tx, rx) = crossbeam_channel::bounded(0);
    let cancel = AtomicBool::new(false);
    let (result, events) = std::thread::scope(|s| {
        let (c, cancel) = (&c, &cancel);
        let engine = s.spawn(move || sensitivity::run(c, &tx, cancel));
        let mut events = Vec::new();
        for e in rx.iter() {
            if matches!(&e, Event::Warning(w) if w.starts_with("decoded images")) {
                std::fs::remove_file(&victim).unwrap();
            }
            events.push(e);
        }
        (engine.join().unwrap(), events)
    });
    let e = result.expect_err("the run fails").to_string();
    assert!(e.contains("decoding again") && e.contains(&names[0]), "{e}");
    for ev in &events {
        let text = format!("{ev:?}");
        assert!(!text.contains("decoding again") && !text.contains(&names[0]), "an event carries the error: {text}");
    }
    assert!(!events.iter().any(|e| matches!(e, Event::Finished(_))));
}

/// The engine on an ONNX detector (yolo11pico-detect of tests/fixtures/onnx: random weights,
/// five classes at 160 like the sample's shapes): for two layers, unstructured and filter
/// pruning, every point equals the full evaluation of the pruned model, cached or not; the
/// run records the ONNX file and the layers by their node names.
#[test]
fn engine_points_on_an_onnx_detector_equal_full_evaluations() {
    use prunescope::data::{DetectionDataset, OnBad};
    use prunescope::eval::{self, EvalConfig};
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/yolo11pico-detect.onnx");
    let model = Model::open(&ModelFiles::Onnx { path: onnx.clone(), task: None }, None).unwrap();
    let names: Vec<String> = [0, model.layers.len() / 2].iter().map(|&k| model.layers[k].name.clone()).collect();
    let d = tempfile::tempdir().unwrap();
    for (method, cache_mem) in [(Method::L1, 2 << 30), (Method::L1Filter, 2 << 30), (Method::L1Filter, 1)] {
        let c = AnalysisConfig {
            model: Some(onnx.clone()),
            data: sample_data(),
            out: d.path().join(format!("{method}-{cache_mem}")),
            method,
            sparsities: vec![0.5],
            layers: names.clone(),
            limit: Some(16),
            cache_mem,
            ..Default::default()
        };
        let (summary, _) = run(&c).unwrap();
        assert_eq!(summary.computed_points, 2);
        let r = store::read(&c.out).unwrap();
        assert_eq!(r.header.layers, names);
        assert_eq!(r.header.model.cfg.path, onnx.canonicalize().unwrap());
        let mut ds = DetectionDataset::open(&c.data, None, OnBad::Error).unwrap();
        ds.limit(16);
        for p in &r.points {
            let layer = model.layer(&p.layer).unwrap();
            let mut w = model.weights.clone();
            prune::prune_layer(&mut w, &layer.keys, method, p.sparsity);
            let net = NetPredictor::new(&model, &w, Device::Cpu).unwrap();
            // An Ultralytics export: letterboxed as its validator does (the run records it).
            let prep = prunescope::data::preprocess::Preprocess::LetterboxUltralytics;
            assert_eq!(r.header.eval.preprocess, prep);
            // …and its NMS IoU is 0.7, as in `yolo val`.
            assert_eq!(r.header.eval.iou, 0.7);
            let nms = prunescope::metrics::NmsConfig { iou: 0.7, ..Default::default() };
            let ecfg = EvalConfig { img_size: 160, batch: c.batch, prep, nms, ..Default::default() };
            let n = eval::evaluate(&net, &ds, &ecfg, &mut |_, _| true).unwrap();
            assert_eq!(
                (p.metrics.map50, p.metrics.map, p.metrics.precision, p.metrics.recall),
                (n.map50, n.map, n.precision, n.recall),
                "{} {method} cache {cache_mem}",
                p.layer
            );
        }
    }
}
