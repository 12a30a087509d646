//! Plans suggested from the bundled sensitivity run: budgets respected, targets reached,
//! JSON round trip, refusals with clear messages, and the effective cost of a single pruned
//! layer recounted by hand from the pruned tensors.

use prunescope::model::effective::{self, dense};
use prunescope::model::{Model, ModelFiles};
use prunescope::plan::{self, Plan, Rule};
use prunescope::plan::{Budget, Curves, Resource};
use prunescope::prune::Method;
use prunescope::sensitivity::{store, Metric};
use std::path::{Path, PathBuf};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes")
}

fn model() -> Model {
    // The run refers to the files by repository-relative paths; hashes are what must agree.
    let (cfg, weights) = (sample().join("yolov3-tiny-shapes.cfg"), sample().join("yolov3-tiny-shapes.safetensors"));
    Model::open(&ModelFiles::Darknet { cfg, weights }, None).unwrap()
}

fn run_dir() -> PathBuf {
    sample().join("sensitivity-l1")
}

#[test]
fn per_layer_budget_keeps_every_drop_within_it() {
    let m = model();
    let run = store::read(&run_dir()).unwrap();
    let p = plan::suggest(&run, &run_dir(), &m, &Rule::PerLayer(Budget::Absolute(0.01)), Metric::Map50, &[]).unwrap();
    let curves = Curves::of(&run, Metric::Map50).unwrap();
    assert_eq!(p.layers.len(), run.header.layers.len());
    for l in &p.layers {
        let d = l.predicted_drop.unwrap();
        assert!(d <= 0.01 + 1e-9, "{}: drop {d}", l.layer);
        assert!(l.sparsity <= 0.88 + 1e-12);
        // Maximal: a little more sparsity breaks the budget, unless capped at 88 %.
        let i = curves.index_of(&l.layer).unwrap();
        if l.sparsity < 0.88 - 1e-9 {
            let more = curves.drop_at(i, (l.sparsity + 0.01).min(0.88)).unwrap();
            assert!(more > 0.01 - 1e-9 || l.sparsity + 0.01 > 0.88, "{} could go further", l.layer);
        }
    }
    assert!(p.predicted.params_after < p.predicted.params_before);
    let frozen = plan::suggest(
        &run,
        &run_dir(),
        &m,
        &Rule::PerLayer(Budget::Absolute(0.01)),
        Metric::Map50,
        &["conv_10".to_string()],
    )
    .unwrap();
    let l10 = frozen.layers.iter().find(|l| l.layer == "conv_10").unwrap();
    assert_eq!((l10.sparsity, l10.origin), (0.0, plan::Origin::Frozen));
}

#[test]
fn global_parameter_target_is_reached_with_measured_levels() {
    let m = model();
    let run = store::read(&run_dir()).unwrap();
    let rule = Rule::Global { resource: Resource::Params, fraction: 0.5 };
    let p = plan::suggest(&run, &run_dir(), &m, &rule, Metric::Map50, &[]).unwrap();
    assert!(p.predicted.params_reduction() >= 0.5, "{:?}", p.predicted);
    for l in &p.layers {
        assert!(l.sparsity == 0.0 || run.header.sparsities.contains(&l.sparsity), "{} at {}", l.layer, l.sparsity);
    }
    // Recount: prune a copy by the plan and count non-zero parameters independently.
    let mut w = m.weights.clone();
    p.apply(&mut w, &m);
    let nonzero = w.count_nonzero() as u64;
    assert_eq!(nonzero, p.predicted.params_after);
    let impossible = Rule::Global { resource: Resource::Params, fraction: 0.99 };
    let e = plan::suggest(&run, &run_dir(), &m, &impossible, Metric::Map50, &[]).unwrap_err().to_string();
    assert!(e.contains("cannot be reached"), "{e}");
}

#[test]
fn plans_round_trip_and_bad_plans_are_refused() {
    let m = model();
    let run = store::read(&run_dir()).unwrap();
    let p = plan::suggest(&run, &run_dir(), &m, &Rule::PerLayer(Budget::Relative(0.02)), Metric::Map, &[]).unwrap();
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("plan.json");
    p.write(&path).unwrap();
    // Paths are stored relative to the plan's folder and read back naming the same files.
    let mut back = Plan::read(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&d.path().display().to_string()), "absolute paths stored: {text}");
    {
        let (a, b) = (back.run.as_mut().unwrap(), p.run.as_ref().unwrap());
        for (x, y) in [
            (&mut back.model.cfg.path, &p.model.cfg.path),
            (&mut back.model.weights.path, &p.model.weights.path),
            (&mut a.path, &b.path),
            (&mut a.dataset.path, &b.dataset.path),
        ] {
            assert!(prunescope::fsio::same_path(x, y), "{} is not {}", x.display(), y.display());
            *x = y.clone();
        }
    }
    assert_eq!(back, p);
    p.check(&m).unwrap();

    let edit = |f: &dyn Fn(&mut serde_json::Value)| -> String {
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        f(&mut v);
        let bad = d.path().join("bad.json");
        std::fs::write(&bad, v.to_string()).unwrap();
        match Plan::read(&bad) {
            Err(e) => e.to_string(),
            Ok(plan) => plan.check(&m).unwrap_err().in_file(&bad).to_string(),
        }
    };
    let e = edit(&|v| v["layers"][0]["sparsity"] = 1.0.into());
    assert!(e.contains("bad.json") && e.contains("sparsity 1 is outside [0, 1)"), "{e}");
    let e = edit(&|v| {
        v["layers"][0]["layer"] = "conv_14".into();
        v["layers"][0]["block"] = 14.into();
    });
    assert!(e.contains("unknown layer conv_14"), "{e}");
    let e = edit(&|v| v["model"]["weights"]["sha256"] = "00".repeat(32).into());
    assert!(e.contains("the plan was made for other weights"), "{e}");
    let e = edit(&|v| v["format"] = "prunescope.plan/9".into());
    assert!(e.contains("format `prunescope.plan/9` is not supported"), "{e}");

    // Exports keyed by PyTorch-YOLOv3 module names.
    let tp = p.to_torch_pruning();
    for l in p.layers.iter().filter(|l| l.sparsity > 0.0) {
        let key = format!("module_list.{}.conv_{}", l.block, l.block);
        assert_eq!(tp["pruning_ratio_dict"][&key].as_f64(), Some(l.sparsity));
    }
    let nni = p.to_nni();
    assert_eq!(nni.as_array().unwrap().len(), p.layers.iter().filter(|l| l.sparsity > 0.0).count());
    assert!(p.to_csv().starts_with("layer,module,sparsity,origin,predicted_drop\n"));
}

/// Filter pruning of conv_6 (128 filters, 3×3×64, BN) at 25 %: 32 filters go. By hand:
/// conv_6 keeps 96 × (576 + 2) params; maxpool_7 keeps 96/128 of its MACs; conv_8
/// (256 × 3×3×128) reads 96 live channels: 256 × 9 × 96 weights + 2 × 256 BN.
#[test]
fn effective_cost_of_a_filter_pruned_layer_by_hand() {
    let m = model();
    let mut w = m.weights.clone();
    let conv_6 = m.layers.iter().position(|l| l.name == "conv_6").unwrap();
    let count = prunescope::prune::prune_layer(&mut w, &m.layers[conv_6].keys, Method::L2Filter, 0.25);
    assert_eq!(count.filters_zeroed, 32);
    let e = effective::effective(&m, &w);
    let d = dense(&m);
    let dense_pool = effective::effective(&m, &m.weights).node(&m, "maxpool_7").unwrap();
    assert_eq!(e.layers[conv_6].params, 96 * (576 + 2));
    assert_eq!(e.layers[conv_6].macs, 400 * (96 * 576 + 96 * 3));
    assert_eq!(e.node(&m, "maxpool_7").unwrap().macs, dense_pool.macs * 96 / 128);
    assert_eq!(e.layers[conv_6 + 1].params, 256 * 9 * 96 + 2 * 256);
    assert_eq!(e.layers[conv_6 + 1].macs, 100 * (256 * 9 * 96 + 256 * 3));
    assert_eq!(m.layers[conv_6 + 2].name, "conv_10");
    assert_eq!(e.layers[conv_6 + 2], d[conv_6 + 2]);
    assert_eq!(e.live_channels[conv_6], 96);
}

/// The cached coster behind the GUI's live totals gives what copying the checkpoint,
/// pruning it and recounting gives, for each method and for plans edited one layer at a time.
#[test]
fn plan_coster_agrees_with_refresh_prediction() {
    use prunescope::plan::PlanCoster;
    let m = model();
    let run = store::read(&run_dir()).unwrap();
    let curves = Curves::of(&run, Metric::Map50).unwrap();
    let blocks: Vec<usize> = curves.layers.iter().map(|l| l.block).collect();
    for method in [Method::L1, Method::L1Filter, Method::L2Filter] {
        let mut coster = PlanCoster::new(&m, method);
        let mut p = Plan::new(&m, method, Metric::Map50, &blocks);
        // Edits as a user makes them: one layer after the other, some moved twice.
        let edits = [(0, 0.3), (2, 0.5), (5, 0.2), (0, 0.6), (9, 0.88), (3, 0.1), (2, 0.0), (7, 0.45)];
        for (i, s) in edits {
            p.set(blocks[i], s, Some(&curves)).unwrap();
            let (got, after) = coster.predict(&m, &p, Some(&curves));
            let mut reference = p.clone();
            reference.refresh_prediction(&m, Some(&curves));
            assert_eq!(got, reference.predicted, "{method:?} after setting conv_{} to {s}", blocks[i]);
            assert_eq!(after.total().params, got.params_after);
        }
    }
}

/// What the layer statistics say a sparsity removes is what pruning the layer removes:
/// the same count, and the cut is the largest removed |w| or filter norm.
#[test]
fn layer_stats_cut_what_pruning_removes() {
    use prunescope::prune::mask::filter_norms;
    use prunescope::prune::prune_layer;
    use prunescope::prune::stats::LayerStats;
    let m = model();
    for keys in m.layers.iter().map(|l| &l.keys).filter(|k| [0, 8, 19].contains(&k.block)) {
        let st = LayerStats::of(&m.weights, keys, 30).unwrap();
        let original = m.weights.get(&keys.weight).clone();
        assert_eq!(st.histogram.iter().sum::<u64>() as usize, original.data.len());
        for method in [Method::L1, Method::L1Filter, Method::L2Filter] {
            for s in [0.05, 0.3, 0.5, 0.88] {
                let cut = st.cut(method, s);
                let mut w = m.weights.of_layer(keys).unwrap();
                let count = prune_layer(&mut w, keys, method, s);
                let pruned = w.get(&keys.weight);
                if method == Method::L1 {
                    assert_eq!(cut.weights, count.weights_zeroed);
                    let removed = original.data.iter().zip(&pruned.data).filter(|(o, p)| **p == 0.0 && **o != 0.0);
                    let largest = removed.map(|(o, _)| o.abs() as f64).fold(0.0, f64::max);
                    assert_eq!(cut.threshold, largest, "conv_{} l1 {s}", keys.block);
                } else {
                    assert_eq!(cut.filters, count.filters_zeroed);
                    let norms = filter_norms(&original, method == Method::L2Filter);
                    let after = filter_norms(pruned, false);
                    let largest =
                        norms.iter().zip(&after).filter(|(_, a)| **a == 0.0).map(|(n, _)| *n).fold(0.0, f64::max);
                    assert_eq!(cut.threshold, largest, "conv_{} {method:?} {s}", keys.block);
                }
            }
        }
    }
}

/// A run missing points is refused: unmeasured layers would get 0 % as if suggested.
#[test]
fn an_unfinished_run_is_refused() {
    let m = model();
    let mut run = store::read(&run_dir()).unwrap();
    let total = run.header.layers.len() * run.header.sparsities.len();
    let last = run.header.layers.last().unwrap().clone();
    run.points.retain(|p| p.layer != last);
    let e = plan::suggest(&run, &run_dir(), &m, &Rule::PerLayer(Budget::Relative(0.02)), Metric::Map50, &[])
        .unwrap_err()
        .to_string();
    let done = total - run.header.sparsities.len();
    assert!(e.contains(&format!("the run is unfinished ({done} of {total} points measured, none for {last})")), "{e}");
    assert!(e.contains("--resume"), "{e}");
}
