//! Nothing the user gave is modified, and no output is ever left torn: outputs are written
//! aside and renamed into place, report folders are swapped in whole, outputs never replace
//! inputs.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes")
}

fn prunescope(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prunescope")).args(args).output().unwrap()
}

macro_rules! run_ok {
    ($($a:expr),* $(,)?) => {{
        let out = prunescope(&[$(std::ffi::OsStr::new($a)),*]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out
    }};
}

macro_rules! run_err {
    ($($a:expr),* $(,)?) => {{
        let out = prunescope(&[$(std::ffi::OsStr::new($a)),*]);
        assert!(!out.status.success(), "succeeded: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }};
}

/// Runs prunescope with `args` and kills it (SIGKILL) after `delay_ms`, or lets it finish.
fn kill_after(args: Vec<String>, delay_ms: u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prunescope"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    let _ = child.kill();
    let _ = child.wait();
}

/// SHA-256 of every file under `dir`, by path.
fn hashes(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let digest = Sha256::digest(std::fs::read(&p).unwrap());
                out.insert(p, digest.iter().map(|b| format!("{b:02x}")).collect());
            }
        }
    }
    out
}

/// A copy of the sample's model, data (the first 12 validation images) and finished run in a
/// temporary folder, so the test hashes a small tree it owns.
fn experiment(root: &Path) -> PathBuf {
    let s = sample();
    let e = root.join("experiment");
    for sub in ["images/val", "labels/val"] {
        std::fs::create_dir_all(e.join(sub)).unwrap();
    }
    let mut images: Vec<_> = std::fs::read_dir(s.join("images/val")).unwrap().map(|e| e.unwrap().path()).collect();
    images.sort();
    for img in images.iter().take(12) {
        let name = img.file_name().unwrap();
        std::fs::copy(img, e.join("images/val").join(name)).unwrap();
        let label = Path::new(name).with_extension("txt");
        std::fs::copy(s.join("labels/val").join(&label), e.join("labels/val").join(&label)).unwrap();
    }
    std::fs::copy(s.join("data.yaml"), e.join("data.yaml")).unwrap();
    for f in ["yolov3-tiny-shapes.cfg", "yolov3-tiny-shapes.safetensors"] {
        std::fs::copy(s.join(f), e.join(f)).unwrap();
    }
    e
}

/// analyze → suggest → prune → compare changes no byte of any input.
#[test]
fn the_pipeline_modifies_no_input() {
    let d = tempfile::tempdir().unwrap();
    let e = experiment(d.path());
    let before = hashes(&e);
    let (cfg, w, data) =
        (e.join("yolov3-tiny-shapes.cfg"), e.join("yolov3-tiny-shapes.safetensors"), e.join("data.yaml"));
    let out = d.path().join("out");
    let (run, plan, pruned, report) =
        (out.join("run"), out.join("plan.json"), out.join("pruned.pth"), out.join("report"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    run_ok!(
        "analyze",
        "--cfg",
        &s(&cfg),
        "--weights",
        &s(&w),
        "--data",
        &s(&data),
        "--out",
        &s(&run),
        "--sparsities",
        "30,60",
        "--layers",
        "conv_4,conv_6"
    );
    run_ok!("suggest", "--run", &s(&run), "--budget", "0.05", "--out", &s(&plan));
    run_ok!("prune", "--cfg", &s(&cfg), "--weights", &s(&w), "--plan", &s(&plan), "--out", &s(&pruned));
    run_ok!(
        "compare",
        &s(&w),
        &s(&pruned),
        "--cfg",
        &s(&cfg),
        "--data",
        &s(&data),
        "--out",
        &s(&report),
        "--latency-runs",
        "0",
        "--plan",
        &s(&plan)
    );
    assert_eq!(hashes(&e), before);
    let names: Vec<_> = std::fs::read_dir(&report).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    // `--latency-runs 0` measures no latency (it used to time one run anyway).
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("| not measured |"), "{md}");
    // No temporary file or folder is left next to the outputs.
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `prune --out` naming the input checkpoint is refused and the input is intact.
#[test]
fn outputs_never_replace_inputs() {
    let d = tempfile::tempdir().unwrap();
    let e = experiment(d.path());
    let before = hashes(&e);
    let (cfg, w) = (e.join("yolov3-tiny-shapes.cfg"), e.join("yolov3-tiny-shapes.safetensors"));
    let plan = sample().join("plans/l1-params50.json");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let err = run_err!("prune", "--cfg", &s(&cfg), "--weights", &s(&w), "--plan", &s(&plan), "--out", &s(&w));
    assert!(err.contains("input --weights") && err.contains("yolov3-tiny-shapes.safetensors"), "{err}");
    // The same file through another spelling of its path.
    let other = e.join("images/../yolov3-tiny-shapes.safetensors");
    let err = run_err!("prune", "--cfg", &s(&cfg), "--weights", &s(&w), "--plan", &s(&plan), "--out", &s(&other));
    assert!(err.contains("input --weights"), "{err}");
    let err = run_err!("export-plan", "--plan", &s(&plan), "--format", "csv", "--out", &s(&plan));
    assert!(err.contains("input --plan"), "{err}");
    // A report folder replaces only an earlier report, never an experiment folder.
    let err = run_err!(
        "compare",
        &s(&w),
        &s(&w),
        "--cfg",
        &s(&cfg),
        "--data",
        &s(&e.join("data.yaml")),
        "--out",
        &s(&e),
        "--latency-runs",
        "0"
    );
    assert!(err.contains("holds no earlier report"), "{err}");
    assert_eq!(hashes(&e), before);
}

/// Killing `prune` while it rewrites an existing checkpoint leaves the old checkpoint or the
/// complete new one, never a torn file (before atomic writes: 4 of 4 kills left it torn).
#[test]
fn a_killed_prune_leaves_the_old_or_the_new_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let e = experiment(d.path());
    let (cfg, w) = (e.join("yolov3-tiny-shapes.cfg"), e.join("yolov3-tiny-shapes.safetensors"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let plan = sample().join("plans/l1-params50.json");
    // The complete new checkpoint, for comparison; .weights is the format written slowest.
    let full = d.path().join("full.weights");
    run_ok!("prune", "--cfg", &s(&cfg), "--weights", &s(&w), "--plan", &s(&plan), "--out", &s(&full));
    let new = std::fs::read(&full).unwrap();
    let target = d.path().join("target.weights");
    let old = vec![7u8; 1000];
    let mut outcomes = BTreeMap::new();
    for delay_ms in [20u64, 60, 100, 140, 180, 220, 300, 400] {
        std::fs::write(&target, &old).unwrap();
        let prune = ["prune", "--cfg", &s(&cfg), "--weights", &s(&w), "--plan", &s(&plan), "--out", &s(&target)];
        kill_after(prune.iter().map(|a| a.to_string()).collect(), delay_ms);
        let now = std::fs::read(&target).unwrap();
        let kind = if now == old {
            "old"
        } else if now == new {
            "new"
        } else {
            panic!("killed after {delay_ms} ms: the checkpoint is torn ({} bytes)", now.len())
        };
        *outcomes.entry(kind).or_insert(0) += 1;
    }
    eprintln!("kills: {outcomes:?}");
    // Temporary files of killed writers are hidden (a leading dot) and never a checkpoint name.
    for entry in std::fs::read_dir(d.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.starts_with('.') || ["experiment", "full.weights", "target.weights"].contains(&name.as_str()),
            "{name}"
        );
    }
}

/// Killing `compare` while it replaces an earlier report leaves a complete report (the old one
/// or the new one), never a folder mixing two runs.
#[test]
fn a_killed_compare_leaves_a_complete_report() {
    let d = tempfile::tempdir().unwrap();
    let e = experiment(d.path());
    let (cfg, w, data) =
        (e.join("yolov3-tiny-shapes.cfg"), e.join("yolov3-tiny-shapes.safetensors"), e.join("data.yaml"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let report = d.path().join("report");
    let args = |labels: &str| {
        vec![
            "compare".to_string(),
            s(&w),
            s(&w),
            "--cfg".into(),
            s(&cfg),
            "--data".into(),
            s(&data),
            "--out".into(),
            s(&report),
            "--latency-runs".into(),
            "0".into(),
            "--labels".into(),
            labels.into(),
        ]
    };
    let out = Command::new(env!("CARGO_BIN_EXE_prunescope")).args(args("old-a,old-b")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = ["confusion.png", "layers.png", "report.json", "report.md"];
    for delay_ms in [50u64, 150, 300, 500, 800, 1200] {
        kill_after(args(&format!("new{delay_ms}-a,new{delay_ms}-b")), delay_ms);
        let mut names: Vec<String> = std::fs::read_dir(&report)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, files, "killed after {delay_ms} ms");
        // report.json and report.md come from the same run.
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
        let label = json["models"][0]["label"].as_str().unwrap().to_string();
        let md = std::fs::read_to_string(report.join("report.md")).unwrap();
        assert!(
            md.contains(&label),
            "killed after {delay_ms} ms: report.md is not from the run of report.json ({label})"
        );
    }
}

/// A report folder holding files a comparison did not write is not replaced (they would be
/// deleted with it).
#[test]
fn a_report_folder_with_foreign_files_is_not_replaced() {
    let d = tempfile::tempdir().unwrap();
    let report = d.path().join("report");
    std::fs::create_dir(&report).unwrap();
    std::fs::write(report.join("report.json"), "{}").unwrap();
    std::fs::write(report.join("notes.txt"), "mine").unwrap();
    let e = prunescope::report::compare::check_report_dir(&report, &[]).unwrap_err().to_string();
    assert!(e.contains("also holds notes.txt"), "{e}");
    std::fs::remove_file(report.join("notes.txt")).unwrap();
    prunescope::report::compare::check_report_dir(&report, &[]).unwrap();
}
