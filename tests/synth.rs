//! The synthetic dataset generator: byte-identical output for a seed, valid YOLO labels
//! that our reader accepts, every class present, small objects included.

use prunescope::data::synth::{self, SynthConfig, CLASSES};
use prunescope::data::{DetectionDataset, OnBad, Split};
use std::collections::BTreeMap;
use std::path::Path;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_same_bytes_and_valid_labels() {
    let cfg = SynthConfig { train: 12, val: 40, seed: 5, ..Default::default() };
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    synth::generate(a.path(), &cfg, 2, &|_, _| {}).unwrap();
    synth::generate(b.path(), &cfg, 1, &|_, _| {}).unwrap();
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert_eq!(fa.len(), 2 * (12 + 40) + 1);
    assert!(fa == fb, "same seed, different thread counts: files differ");
    // Another seed changes the images; the validation split does not depend on --train.
    synth::generate(c.path(), &SynthConfig { train: 3, ..cfg }, 2, &|_, _| {}).unwrap();
    let fc = files(c.path());
    assert_eq!(fc["images/val/000007.jpg"], fa["images/val/000007.jpg"]);
    let d = tempfile::tempdir().unwrap();
    synth::generate(d.path(), &SynthConfig { seed: 6, ..cfg }, 2, &|_, _| {}).unwrap();
    assert_ne!(files(d.path())["images/val/000000.jpg"], fa["images/val/000000.jpg"]);

    // The labels load strictly with the dataset reader: 5 named classes, 1–8 boxes per image,
    // all inside the image, some as small as ~8 px.
    let ds = DetectionDataset::open(&a.path().join("data.yaml"), None, OnBad::Error).unwrap();
    assert_eq!(ds.names, CLASSES.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(ds.samples.len(), 40);
    let mut per_class = [0usize; 5];
    let mut smallest = f64::MAX;
    for s in &ds.samples {
        assert!((1..=8).contains(&s.boxes.len()));
        let (w, h) = image::image_dimensions(&s.image).unwrap();
        assert!((120..=160).contains(&w) && (120..=160).contains(&h));
        for b in &s.boxes {
            per_class[b.class] += 1;
            let [x, y, bw, bh] = b.pixels_xywh(w, h);
            assert!(x >= -1e-3 && y >= -1e-3 && x + bw <= w as f64 + 1e-3 && y + bh <= h as f64 + 1e-3);
            smallest = smallest.min(bw.max(bh));
        }
    }
    assert!(per_class.iter().all(|&n| n > 0), "{per_class:?}");
    let train = DetectionDataset::open_split(&a.path().join("data.yaml"), Split::Train, None, OnBad::Error).unwrap();
    assert_eq!(train.samples.len(), 12);
    assert!(train.samples[0].image.to_string_lossy().contains("images/train/"));
    assert!(smallest < 12.0, "smallest object {smallest} px");
}

#[test]
fn the_data_yaml_has_no_path_key_and_reads_relative_to_itself() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("shapes");
    synth::generate(&out, &SynthConfig { train: 1, val: 2, seed: 3, ..Default::default() }, 2, &|_, _| {}).unwrap();
    let yaml = std::fs::read_to_string(out.join("data.yaml")).unwrap();
    // Ultralytics resolves `path: .` against its own datasets folder: leave `path` out.
    assert!(!yaml.lines().any(|l| l.trim_start().starts_with("path:")), "{yaml}");
    let ds = DetectionDataset::open(&out.join("data.yaml"), None, OnBad::Error).unwrap();
    assert_eq!(ds.samples.len(), 2);
    assert!(ds.samples[0].image.starts_with(&out));
    // `path: .` is still read as the yaml's folder.
    std::fs::write(out.join("data.yaml"), format!("path: .\n{yaml}")).unwrap();
    assert_eq!(DetectionDataset::open(&out.join("data.yaml"), None, OnBad::Error).unwrap().samples.len(), 2);
    // The bundled sample says no `path` either.
    let sample = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes/data.yaml"));
    assert!(!sample.unwrap().lines().any(|l| l.starts_with("path:")));
}

#[test]
fn synth_refuses_a_non_empty_output_folder_and_writes_whole_or_nothing() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ds");
    let cfg = SynthConfig { train: 2, val: 2, seed: 1, ..Default::default() };
    // Onto an old dataset: refused, the old files untouched, nothing left beside it.
    std::fs::create_dir_all(out.join("images/val")).unwrap();
    std::fs::write(out.join("images/val/old.jpg"), b"old").unwrap();
    let e = synth::generate(&out, &cfg, 2, &|_, _| {}).unwrap_err().to_string();
    assert!(e.contains(&out.display().to_string()) && e.contains("not empty"), "{e}");
    assert_eq!(files(&out).len(), 1);
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    // A file in the way is refused too.
    let file = d.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(synth::generate(&file, &cfg, 2, &|_, _| {}).unwrap_err().to_string().contains("not a folder"));
    // A new folder (and an empty one) is written whole, with no temporary folder left.
    let fresh = d.path().join("fresh");
    synth::generate(&fresh, &cfg, 2, &|_, _| {}).unwrap();
    assert_eq!(files(&fresh).len(), 2 * 4 + 1);
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    synth::generate(&empty, &cfg, 2, &|_, _| {}).unwrap();
    assert!(files(&empty) == files(&fresh));
    let mut names: Vec<String> =
        std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["ds", "empty", "file", "fresh"]);
}
