//! `compare` on the bundled model and a pruned copy: counts recounted independently from the
//! saved file, compressed size against a direct deflate, report files written.

use prunescope::eval::compare::{self, CompareConfig};
use prunescope::model::{Model, ModelFiles};
use prunescope::plan::Budget;
use prunescope::plan::{self, Rule};
use prunescope::sensitivity::{store, Metric};
use std::path::{Path, PathBuf};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes")
}

#[test]
fn compare_counts_what_the_pruned_file_holds() {
    let s = sample();
    let (cfg, weights) = (s.join("yolov3-tiny-shapes.cfg"), s.join("yolov3-tiny-shapes.safetensors"));
    let model = Model::open(&ModelFiles::Darknet { cfg: cfg.clone(), weights: weights.clone() }, None).unwrap();
    let run_dir = s.join("sensitivity-l1");
    let run = store::read(&run_dir).unwrap();
    let p = plan::suggest(&run, &run_dir, &model, &Rule::PerLayer(Budget::Absolute(0.01)), Metric::Map50, &[]).unwrap();
    let d = tempfile::tempdir().unwrap();
    let pruned_path = d.path().join("pruned.safetensors");
    let mut w = model.weights.clone();
    p.apply(&mut w, &model);
    model.save(&w, &pruned_path).unwrap();

    let c = CompareConfig {
        cfg: cfg.clone(),
        data: s.join("data.yaml"),
        img_size: None,
        device: "cpu".into(),
        limit: Some(24),
        latency_runs: 2,
        preprocess: None,
    };
    let models = vec![("origin".to_string(), weights.clone()), ("pruned".to_string(), pruned_path.clone())];
    let r = compare::compare(&c, &models, &mut |_, _, _| {}).unwrap();
    prunescope::report::compare::write_files(&r, d.path()).unwrap();

    // Independent recount: read the saved file with the safetensors crate and count the
    // non-zero parameter values (running statistics are buffers, not parameters).
    let bytes = std::fs::read(&pruned_path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut nonzero = 0u64;
    let mut per_layer = std::collections::BTreeMap::new();
    for (name, view) in st.tensors() {
        if name.ends_with("running_mean") || name.ends_with("running_var") || name.ends_with("num_batches_tracked") {
            continue;
        }
        if name.contains(".yolo_") {
            continue;
        }
        let n = view.data().chunks(4).filter(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) != 0.0).count() as u64;
        nonzero += n;
        let block: usize = name.split('.').nth(1).unwrap().parse().unwrap();
        *per_layer.entry(block).or_insert(0u64) += n;
    }
    let pr = &r.models[1];
    assert_eq!(pr.nonzero_params, nonzero);
    for row in &pr.layers {
        let block: usize = row.layer.trim_start_matches("conv_").parse().unwrap();
        assert_eq!(row.nonzero, per_layer[&block], "{}", row.layer);
    }
    assert_eq!(pr.effective_params, p.predicted.params_after);
    assert_eq!(r.models[0].nonzero_params, r.models[0].params);
    // Zeros compress: the pruned file deflates to less than the dense one.
    assert_eq!(pr.file_bytes, bytes.len() as u64);
    assert!(pr.compressed_bytes < r.models[0].compressed_bytes);
    assert!(pr.compression_ratio > 1.0 && pr.latency_ms.is_some_and(|v| v > 0.0));
    assert_eq!(r.images, 24);
    for f in ["report.md", "report.json", "confusion.png", "layers.png"] {
        assert!(d.path().join(f).exists(), "{f}");
    }
    let md = std::fs::read_to_string(d.path().join("report.md")).unwrap();
    assert!(md.contains("| conv_10 | 590336 |"), "{md}");
}
