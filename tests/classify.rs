//! Classifiers end to end on the bundled polygons sample (sample_runs/classify: a
//! MobileNetV3-Small trained by scripts/train_classifier.py and exported by torch.onnx):
//! our evaluation against PyTorch's, the CLI's JSON, dataset layouts, and the sensitivity
//! engine's points against full evaluations of the pruned classifier.

use prunescope::data::preprocess::ClassifyPreset;
use prunescope::data::ClassificationDataset;
use prunescope::eval::classify::{self, ClassifyEvalConfig};
use prunescope::eval::NetPredictor;
use prunescope::model::{Model, ModelFiles};
use prunescope::prune::{self, Method};
use prunescope::sensitivity::{self, store, AnalysisConfig, Metric};
use std::path::{Path, PathBuf};
use tch::Device;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/classify")
}

fn onnx() -> PathBuf {
    sample().join("polygons-mobilenetv3s.onnx")
}

fn data() -> PathBuf {
    sample().join("polygons")
}

fn open() -> Model {
    Model::open(&ModelFiles::Onnx { path: onnx(), task: Some("classify".into()) }, None).unwrap()
}

fn config(img_size: u32) -> ClassifyEvalConfig {
    ClassifyEvalConfig {
        img_size,
        // The engine's default batch: convolutions may round differently at other batch sizes.
        batch: 8,
        preset: ClassifyPreset::Torchvision,
        on_bad: prunescope::data::OnBad::Error,
        decode_threads: 2,
    }
}

/// The whole validation split (600 images) scored by us against what PyTorch scored in
/// scripts/train_classifier.py (train_report.json: PIL's bilinear resize, torchvision's crop
/// and normalisation, the same weights). The resize filters round differently by at most one
/// grey level, so an image near a decision boundary may flip: at most 3 of 600 may differ,
/// which moves at most 6 cells of the confusion matrix by one.
#[test]
fn evaluation_agrees_with_pytorch() {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sample().join("train_report.json")).unwrap()).unwrap();
    let model = open();
    assert_eq!(model.img_size, 96);
    assert!(model.layers.iter().any(|l| l.name.contains("Gemm") || l.weight_shape.len() == 2), "Gemm layers");
    let ds = ClassificationDataset::open(&data()).unwrap();
    assert_eq!(ds.samples.len(), 600);
    let names: Vec<String> = report["classes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
    assert_eq!(ds.names, names);
    let net = NetPredictor::new(&model, &model.weights, Device::Cpu).unwrap();
    let ours = classify::evaluate(&net, &ds, &config(96), &mut |_, _| true).unwrap().metrics;
    let theirs_top1 = report["val_top1"].as_f64().unwrap();
    let theirs_top5 = report["val_top5"].as_f64().unwrap();
    assert!((ours.top1 - theirs_top1).abs() <= 3.0 / 600.0 + 1e-12, "top-1 {} vs PyTorch {theirs_top1}", ours.top1);
    assert!((ours.top5 - theirs_top5).abs() <= 3.0 / 600.0 + 1e-12, "top-5 {} vs PyTorch {theirs_top5}", ours.top5);
    let theirs: Vec<Vec<u64>> = serde_json::from_value(report["val_confusion_pred_true"].clone()).unwrap();
    let moved: u64 =
        ours.confusion.counts.iter().flatten().zip(theirs.iter().flatten()).map(|(a, b)| a.abs_diff(*b)).sum();
    assert!(moved <= 6, "confusion matrices differ in {moved} counts");
    assert_eq!(ours.confusion.total(), 600);
    assert!(ours.top1 >= 0.8, "the sample classifier reaches 80 % top-1: {}", ours.top1);
}

/// `eval --json` of a classifier carries top1, top5, the named confusion matrix and the
/// transform; the text names them too. A detection metric is refused for a classifier.
#[test]
fn cli_eval_and_analyze_of_a_classifier() {
    let exe = env!("CARGO_BIN_EXE_prunescope");
    // No --task: an output [B, nc] is a classifier's.
    let (model, dataset) = (onnx(), data());
    let base = ["eval", "--model", model.to_str().unwrap(), "--data", dataset.to_str().unwrap()];
    let out = std::process::Command::new(exe).args(base).args(["--limit", "40", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["images"], 40);
    assert_eq!(j["preprocess"], "torchvision");
    let (top1, top5) = (j["top1"].as_f64().unwrap(), j["top5"].as_f64().unwrap());
    assert!((0.0..=1.0).contains(&top1) && top5 >= top1);
    let counts = j["confusion"]["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 20);
    let total: u64 = counts.iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 40, "every image counted once");
    // The limit takes the classes round-robin: two images of each of the 20 classes.
    assert!(j["classes"].as_array().unwrap().iter().all(|c| c["images"] == 2));
    let hits: u64 = (0..20).map(|i| counts[i][i].as_u64().unwrap()).sum();
    assert_eq!(hits as f64 / 40.0, top1);
    let text = std::process::Command::new(exe).args(base).args(["--limit", "20"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("top-1") && text.contains("blunt-star4") && text.contains("torchvision"), "{text}");

    let d = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(exe)
        .args(["analyze", "--model", model.to_str().unwrap()])
        .args(["--data", dataset.to_str().unwrap(), "--out", d.path().join("run").to_str().unwrap()])
        .args(["--limit", "8", "--metric", "map50"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--metric map50") && err.contains("top1"), "{err}");
}

/// A classification dataset is a folder of class folders, a folder holding val/ (or test/),
/// or a data.yaml naming the split and, optionally, the classes (which must name every
/// folder).
#[test]
fn classification_dataset_layouts() {
    let d = tempfile::tempdir().unwrap();
    for split in ["train", "val"] {
        for (class, n) in [("cat", 3), ("dog", 2)] {
            let dir = d.path().join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                image::RgbImage::new(4, 4).save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let root = ClassificationDataset::open(d.path()).unwrap();
    assert_eq!(root.root, d.path().join("val"));
    assert_eq!(root.samples.len(), 5);
    let folder = ClassificationDataset::open(&d.path().join("val")).unwrap();
    assert_eq!(folder.names, vec!["cat", "dog"]);
    let yaml = d.path().join("data.yaml");
    std::fs::write(&yaml, "train: train\nval: val\nnames: [cat, dog]\n").unwrap();
    let y = ClassificationDataset::open(&yaml).unwrap();
    assert_eq!((y.names.len(), y.samples.len()), (2, 5));
    std::fs::write(&yaml, "val: val\nnames: [cat]\n").unwrap();
    let e = ClassificationDataset::open(&yaml).unwrap_err().to_string();
    assert!(e.contains("data.yaml") && e.contains("'dog'"), "{e}");
    let mut limited = folder.clone();
    limited.limit(3);
    assert_eq!(limited.samples.iter().map(|s| s.1).collect::<Vec<_>>(), vec![0, 0, 1]);
    let e = ClassificationDataset::open(&d.path().join("missing")).unwrap_err().to_string();
    assert!(e.contains("not found"), "{e}");
}

/// The engine on the classifier: for a convolution, a squeeze-excitation convolution (its
/// output gates through a HardSigmoid, so a zeroed filter is 0.5, not 0) and the first
/// fully connected layer, unstructured and filter pruning, cached or recomputed, every
/// point's metrics equal the full evaluation of the pruned model; the run records top-1 and
/// the transform.
#[test]
fn engine_points_on_a_classifier_equal_full_evaluations() {
    let model = open();
    let gate = model.layers.iter().find(|l| !l.zero_preserving).expect("an SE convolution");
    let gemm = model.layers.iter().find(|l| l.weight_shape.len() == 2).expect("a Gemm layer");
    let names = vec![model.layers[1].name.clone(), gate.name.clone(), gemm.name.clone()];
    let mut ds = ClassificationDataset::open(&data()).unwrap();
    ds.limit(40);
    let d = tempfile::tempdir().unwrap();
    for (method, cache_mem) in [(Method::L1, 2 << 30), (Method::L1Filter, 2 << 30), (Method::L2Filter, 1)] {
        let c = AnalysisConfig {
            model: Some(onnx()),
            task: Some("classify".into()),
            data: data(),
            out: d.path().join(format!("{method}-{cache_mem}")),
            method,
            metric: Metric::Top1,
            sparsities: vec![0.3, 0.7],
            layers: names.clone(),
            limit: Some(40),
            cache_mem,
            ..Default::default()
        };
        let (tx, _rx) = crossbeam_channel::unbounded();
        let summary = sensitivity::run(&c, &tx, &std::sync::atomic::AtomicBool::new(false)).unwrap();
        assert_eq!(summary.computed_points, 6);
        assert!(summary.baseline.top1.is_some());
        let r = store::read(&c.out).unwrap();
        assert_eq!(r.header.eval.preprocess.name(), "torchvision");
        for p in &r.points {
            let layer = model.layer(&p.layer).unwrap();
            let mut w = model.weights.clone();
            prune::prune_layer(&mut w, &layer.keys, method, p.sparsity);
            let net = NetPredictor::new(&model, &w, Device::Cpu).unwrap();
            let full = classify::evaluate(&net, &ds, &config(96), &mut |_, _| true).unwrap().metrics;
            assert_eq!(
                (p.metrics.top1, p.metrics.top5, p.metrics.precision, p.metrics.recall),
                (Some(full.top1), Some(full.top5), full.precision, full.recall),
                "{} {method} at {} (cache {cache_mem})",
                p.layer,
                p.sparsity
            );
        }
    }
}

/// An Ultralytics classifier (yolov8pico-cls of tests/fixtures/onnx: random weights, 20
/// classes, 96 px, metadata with task and names, output softmax probabilities) is a classifier
/// by its metadata and gets Ultralytics' transform by default; the sample, without metadata,
/// torchvision's. `--preprocess` overrides either.
#[test]
fn an_ultralytics_classifier_gets_its_own_transform() {
    use prunescope::data::preprocess::Preprocess;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/yolov8pico-cls.onnx");
    let m = Model::open(&ModelFiles::Onnx { path: fixture.clone(), task: None }, None).unwrap();
    assert!(m.is_classifier() && m.by_ultralytics);
    assert_eq!(Preprocess::choose(true, m.by_ultralytics, None), Preprocess::Classify(ClassifyPreset::Ultralytics));
    let sample = open();
    assert!(sample.is_classifier() && !sample.by_ultralytics);
    let exe = env!("CARGO_BIN_EXE_prunescope");
    let run = |extra: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(exe)
            .args(["eval", "--model", fixture.to_str().unwrap(), "--data", data().to_str().unwrap()])
            .args(["--limit", "20", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(run(&[])["preprocess"], "ultralytics");
    let j = run(&["--preprocess", "torchvision"]);
    assert_eq!((j["preprocess"].as_str(), j["images"].as_u64()), (Some("torchvision"), Some(20)));
}
