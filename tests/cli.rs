//! The `prunescope` binary as a user runs it.

mod common;

use std::process::Command;

fn prunescope(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prunescope")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_json_has_the_documented_fields() {
    let cfg = common::darknet("yolov3.cfg");
    let (ok, out, err) = prunescope(&["inspect", "--cfg", cfg.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total_params"], 61_949_149);
    // ptflops 0.7.5 on PyTorch-YOLOv3's model of yolov3.cfg: 33,048,327,715 MACs.
    assert_eq!(v["total_macs"], 33_048_327_715u64);
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 107);
    let l0 = &layers[0];
    assert_eq!(l0["name"], "conv_0");
    assert_eq!(l0["kind"], "convolutional");
    assert_eq!(l0["output_shape"], serde_json::json!([1, 32, 416, 416]));
    assert_eq!(l0["params"], 928);
    assert_eq!(l0["macs"], 166_133_760);
}

#[test]
fn inspect_table_with_weights_and_latency() {
    let cfg = common::darknet("parity.cfg");
    let w = common::darknet("parity.pth");
    let (ok, out, err) =
        prunescope(&["inspect", "--cfg", cfg.to_str().unwrap(), "--weights", w.to_str().unwrap(), "--latency", "3"]);
    assert!(ok, "{err}");
    assert!(out.contains("(MACs, ptflops convention)"), "{out}");
    assert!(out.contains("total params               107,836"), "{out}");
    assert!(out.contains("non-zero params            107,836  (sparsity 0.00%)"), "{out}");
    assert!(out.contains("median of 3 runs, batch 1 on cpu"), "{out}");
}

#[test]
fn bad_inputs_exit_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.cfg");
    std::fs::write(&bad, "[net]\nwidth=64\n[convolutional]\nfilters=4\nsize=3\nactivation=leakyy\n").unwrap();
    let (ok, _, err) = prunescope(&["inspect", "--cfg", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.cfg:6: `activation`: expected one of"), "{err}");

    let cfg = common::darknet("yolov3-tiny.cfg");
    let w = common::darknet("parity.weights");
    let (ok, _, err) = prunescope(&["inspect", "--cfg", cfg.to_str().unwrap(), "--weights", w.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("parity.weights: truncated"), "{err}");

    let (ok, _, err) = prunescope(&["inspect", "--cfg", cfg.to_str().unwrap(), "--img-size", "100"]);
    assert!(!ok);
    assert!(err.contains("image size 100: expected a multiple of the model stride 32"), "{err}");

    let (ok, _, err) = prunescope(&["inspect", "--cfg", cfg.to_str().unwrap(), "--latency", "2"]);
    assert!(!ok);
    assert!(err.contains("--latency needs --weights"), "{err}");

    let (ok, _, err) = prunescope(&["inspect", "--cfg", cfg.to_str().unwrap(), "--device", "tpu"]);
    assert!(!ok);
    assert!(err.contains("device `tpu`: expected cpu, cuda, cuda:N or auto"), "{err}");
}

/// Numeric options outside their range are refused by name before any work, by the same
/// parsers the explorer's forms use (prunescope::quantity).
#[test]
fn numeric_options_are_checked() {
    let s = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes");
    let (cfg, w, data) =
        (s.join("yolov3-tiny-shapes.cfg"), s.join("yolov3-tiny-shapes.safetensors"), s.join("data.yaml"));
    let (cfg, w, data) = (cfg.to_str().unwrap(), w.to_str().unwrap(), data.to_str().unwrap());
    let eval = ["eval", "--cfg", cfg, "--weights", w, "--data", data];
    let cases: &[(&[&str], &str)] = &[
        (&["--iou", "5"], "invalid value '5' for '--iou <IOU>': `5`: expected a value between 0 and 1"),
        (&["--conf", "2"], "'--conf <CONF>': `2`: expected a value between 0 and 1"),
        (&["--conf", "NaN"], "value `NaN`: expected a number"),
        (&["--max-det", "0"], "max-det `0`: expected a whole number from 1 to 100000"),
        (&["--batch", "1000000000"], "batch `1000000000`: expected a whole number from 1 to 1024"),
        (&["--img-size", "65536"], "image size 65536: expected a multiple of the model stride 32 from 32 to 4096"),
        (&["--limit", "0"], "limit `0`: expected a whole number from 1"),
    ];
    for (extra, expected) in cases {
        let args: Vec<&str> = eval.iter().chain(extra.iter()).copied().collect();
        let (ok, _, err) = prunescope(&args);
        assert!(!ok && err.contains(expected), "{extra:?}: {err}");
    }
    let (ok, _, err) = prunescope(&["inspect", "--cfg", cfg, "--weights", w, "--latency", "1000000000"]);
    assert!(!ok && err.contains("runs `1000000000`: expected a whole number from 0 to 100000"), "{err}");
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let (ok, _, err) = prunescope(&[
        "analyze",
        "--cfg",
        cfg,
        "--weights",
        w,
        "--data",
        data,
        "--out",
        out.to_str().unwrap(),
        "--sparsities",
        "5,0.5",
    ]);
    assert!(!ok && err.contains("ambiguous"), "{err}");
    assert!(!out.exists(), "a refused analysis created its folder");
    let run = s.join("sensitivity-l1");
    let plan = d.path().join("plan.json");
    for (budget, expected) in [("200%", "from 0% to 100%"), ("-1", "outside 0…1"), ("5", "outside 0…1")] {
        let (ok, _, err) = prunescope(&[
            "suggest",
            "--run",
            run.to_str().unwrap(),
            "--budget",
            budget,
            "--out",
            plan.to_str().unwrap(),
        ]);
        assert!(!ok && err.contains(&format!("budget `{budget}`")) && err.contains(expected), "{budget}: {err}");
    }
    let (ok, _, err) =
        prunescope(&["suggest", "--run", run.to_str().unwrap(), "--target", "0.3", "--out", plan.to_str().unwrap()]);
    assert!(!ok && err.contains("--target 0.3: ambiguous"), "{err}");
    assert!(!plan.exists());
}

/// `cocoeval --json` on the reference fixture: every stat and per-class AP50 within 1e-6 of
/// what pycocotools 2.0 gave (expected.json).
#[test]
fn cocoeval_json_matches_pycocotools() {
    let dir = common::fixtures().join("coco");
    let (ok, out, err) = prunescope(&[
        "cocoeval",
        "--gt",
        dir.join("gt.json").to_str().unwrap(),
        "--dets",
        dir.join("dets.json").to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    for i in 0..12 {
        let (a, b) = (v["bbox"][i].as_f64().unwrap(), e["bbox"][i].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-6, "stat {i}: {a} vs {b}");
    }
    for (k, b) in e["per_class_ap50"].as_object().unwrap() {
        let a = v["per_class_ap50"][k].as_f64().unwrap();
        assert!((a - b.as_f64().unwrap()).abs() <= 1e-6, "class {k}");
    }
    let (ok, _, err) = prunescope(&["cocoeval", "--gt", dir.join("dets.json").to_str().unwrap(), "--dets", "x.json"]);
    assert!(!ok);
    assert!(err.contains("dets.json: line 1 column 1: not a valid COCO ground-truth file"), "{err}");
}

/// The bundled model meets the targets of the sample experiment (mAP@0.5 ≥ 0.90,
/// mAP@0.5:0.95 ≥ 0.60) and `eval` prints the figures sample_runs/shapes/README.md states.
#[test]
fn eval_of_the_bundled_model_prints_the_stated_metrics() {
    let s = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes");
    let p = |f: &str| s.join(f).to_str().unwrap().to_string();
    let (ok, out, err) = prunescope(&[
        "eval",
        "--cfg",
        &p("yolov3-tiny-shapes.cfg"),
        "--weights",
        &p("yolov3-tiny-shapes.safetensors"),
        "--data",
        &p("data.yaml"),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (map50, map) = (v["map50"].as_f64().unwrap(), v["map"].as_f64().unwrap());
    assert!(map50 >= 0.90 && map >= 0.60, "{map50} {map}");
    let readme = std::fs::read_to_string(s.join("README.md")).unwrap();
    let stated = format!("mAP@0.5 {map50:.4}   mAP@0.5:0.95 {map:.4}");
    assert!(readme.contains(&stated), "README does not state `{stated}`");
    assert_eq!(v["images"], 300);
}

#[test]
fn inspect_layer_weights() {
    let cfg = "sample_runs/shapes/yolov3-tiny-shapes.cfg";
    let w = "sample_runs/shapes/yolov3-tiny-shapes.safetensors";
    let (ok, out, err) = prunescope(&["inspect", "--cfg", cfg, "--weights", w, "--layer", "conv_19", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let l = &v["layer_weights"][0];
    assert_eq!(l["layer"], "conv_19");
    // conv_19 of the sample: 128 filters of 192×3×3.
    assert_eq!(l["weights"], 128 * 192 * 9);
    let methods: Vec<&str> = l["cuts"].as_array().unwrap().iter().map(|c| c["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["l1", "l1-filter", "l2-filter"]);
    // 50 % of 221,184 weights; 64 of 128 filters.
    assert_eq!(l["cuts"][0]["cuts"][5]["weights"], 110_592);
    assert_eq!(l["cuts"][1]["cuts"][5]["filters"], 64);
    let (ok, out, err) = prunescope(&["inspect", "--cfg", cfg, "--weights", w, "--layer", "conv_19"]);
    assert!(ok, "{err}");
    assert!(out.contains("conv_19: 221,184 weights in 128 filters"), "{out}");
    let (ok, _, err) = prunescope(&["inspect", "--cfg", cfg, "--weights", w, "--layer", "conv_3"]);
    assert!(!ok);
    assert!(err.contains("--layer conv_3") && err.contains("yolov3-tiny-shapes.cfg"), "{err}");
}

/// Found by trying the CLI as a new user: outputs onto inputs, training into an earlier
/// training's folder, absurd counts and non-UTF-8 paths are refused or handled, never a
/// silent overwrite, an abort or a panic.
#[test]
fn outputs_counts_and_odd_paths() {
    use std::os::unix::ffi::OsStrExt;
    let s = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes");
    let (cfg, w, data) =
        (s.join("yolov3-tiny-shapes.cfg"), s.join("yolov3-tiny-shapes.safetensors"), s.join("data.yaml"));
    let d = tempfile::tempdir().unwrap();
    let copy = d.path().join("model.cfg");
    std::fs::copy(&cfg, &copy).unwrap();
    let eval_saving = |cfg: &std::path::Path, dets: &std::path::Path| {
        let (cfg, dets) = (cfg.to_str().unwrap(), dets.to_str().unwrap());
        let (w, data) = (w.to_str().unwrap(), data.to_str().unwrap());
        prunescope(&["eval", "--cfg", cfg, "--weights", w, "--data", data, "--save-dets", dets, "--limit", "2"])
    };
    let (ok, _, err) = eval_saving(&copy, &copy);
    assert!(!ok && err.contains("input --cfg"), "{err}");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&cfg).unwrap());
    let label = d.path().join("label.txt");
    std::fs::write(&label, "0 0.5 0.5 0.1 0.1\n").unwrap();
    let (ok, _, err) = eval_saving(&cfg, &label);
    assert!(!ok && err.contains("is not a .json results file"), "{err}");
    let earlier = d.path().join("earlier");
    std::fs::create_dir(&earlier).unwrap();
    std::fs::write(earlier.join("best.safetensors"), b"an earlier checkpoint").unwrap();
    let (ok, _, err) = prunescope(&[
        "train",
        "--cfg",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        earlier.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("the folder exists and is not empty"), "{err}");
    assert_eq!(std::fs::read(earlier.join("best.safetensors")).unwrap(), b"an earlier checkpoint");
    let (ok, _, err) = prunescope(&[
        "train",
        "--cfg",
        cfg.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        d.path().join("t").to_str().unwrap(),
        "--epochs",
        "0",
    ]);
    assert!(!ok && err.contains("epochs `0`"), "{err}");
    let (ok, _, err) =
        prunescope(&["synth", "--out", d.path().join("s").to_str().unwrap(), "--train", "99999999999999"]);
    assert!(!ok && err.contains("train `99999999999999`: expected a whole number from 0 to 1000000"), "{err}");
    // A run folder whose name is not UTF-8 (Latin-1 é).
    let odd = d.path().join(std::ffi::OsStr::from_bytes(b"r\xe9"));
    let out = Command::new(env!("CARGO_BIN_EXE_prunescope"))
        .args(["analyze", "--cfg", cfg.to_str().unwrap(), "--weights", w.to_str().unwrap()])
        .args(["--data", data.to_str().unwrap(), "--limit", "4", "--layers", "conv_4", "--sparsities", "50", "--out"])
        .arg(&odd)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(odd.join("run.json").is_file());
}
