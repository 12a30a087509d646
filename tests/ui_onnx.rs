//! The explorer on an ONNX detector (yolo11pico-detect of tests/fixtures/onnx, on the sample's
//! five-class shapes at 160): a run made by the engine opens with one plot per analysed layer
//! under its ONNX node name, a threshold drag moves the totals to what pruning the weights and
//! recounting gives, and prune & compare writes a pruned ONNX file whose effective parameters
//! are the plan's, with the class confusion matrices.

mod common;

use common::ui::{drag_threshold, harness_of, opened, wait};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use prunescope::gui::{App, ProjectPaths};
use prunescope::plan::Plan;
use prunescope::sensitivity::{self, store, AnalysisConfig};
use std::path::{Path, PathBuf};

fn onnx() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/yolo11pico-detect.onnx")
}

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes/data.yaml")
}

/// Drags layer `name`'s threshold to the right: its sparsity rises past 20 % and the totals
/// are what pruning the weights and recounting gives.
fn drag_first_threshold(h: &mut Harness<'static, App>, name: &str) {
    h.get_by_label(&format!("sensitivity plot {name}")).click();
    h.run_steps(2);
    drag_threshold(h, 0.2, 0.6);
    wait(h, "the new totals", |a| a.totals_current());
    let p = h.state().project.as_ref().unwrap();
    let block = p.model.layer(name).unwrap().id;
    assert!(p.plan.sparsity_of(block) > 0.2, "sparsity after the drag: {}", p.plan.sparsity_of(block));
    let mut reference = p.plan.clone();
    reference.refresh_prediction(&p.model, p.curves.as_ref());
    assert_eq!(p.plan.predicted, reference.predicted);
    assert!(p.plan.predicted.params_after < p.plan.predicted.params_before);
}

/// Clicks Suggest with the form as it is: the plan is the engine's for `rule` on the run in
/// `run_dir` (what `prunescope suggest` writes), thresholds and totals alike.
fn suggest_is_the_engines(h: &mut Harness<'static, App>, run_dir: &Path, rule: &prunescope::plan::Rule) -> Plan {
    h.step();
    h.get_by_label("Suggest").click();
    h.step();
    wait(h, "the suggestion", |a| !a.suggesting);
    wait(h, "the totals", |a| a.totals_current());
    let app = h.state();
    assert!(app.errors.is_empty(), "{:?}", app.errors);
    let p = app.project.as_ref().unwrap();
    let run = store::read(run_dir).unwrap();
    let expected = prunescope::plan::suggest(&run, run_dir, &p.model, rule, run.header.metric, &[]).unwrap();
    let got: Vec<(String, f64)> = p.plan.layers.iter().map(|l| (l.layer.clone(), l.sparsity)).collect();
    let want: Vec<(String, f64)> = expected.layers.iter().map(|l| (l.layer.clone(), l.sparsity)).collect();
    assert_eq!(got, want);
    assert_eq!(p.plan.predicted, expected.predicted);
    p.plan.clone()
}

/// Prune & compare on the first `limit` images into `out`, with no error.
fn prune_and_compare(h: &mut Harness<'static, App>, out: &Path, limit: usize) {
    {
        let app = h.state_mut();
        app.compare.limit = limit;
        app.compare.latency_runs = 1;
        app.compare.out = out.display().to_string();
    }
    h.get_by_label("Prune & compare").click();
    h.step();
    h.get_by_label("▶ Prune & compare").click();
    h.step();
    wait(h, "the comparison", |a| !a.compare.running);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
}

#[test]
fn an_onnx_detector_goes_through_the_explorer() {
    let dir = tempfile::tempdir().unwrap();
    let model = prunescope::model::Model::open(&prunescope::model::ModelFiles::Onnx { path: onnx(), task: None }, None)
        .unwrap();
    let names: Vec<String> = model.layers.iter().take(3).map(|l| l.name.clone()).collect();
    let run_dir = dir.path().join("sens");
    let config = AnalysisConfig {
        model: Some(onnx()),
        data: data(),
        out: run_dir.clone(),
        sparsities: vec![0.3, 0.6],
        layers: names.clone(),
        limit: Some(16),
        ..Default::default()
    };
    let (tx, _rx) = crossbeam_channel::unbounded();
    sensitivity::run(&config, &tx, &std::sync::atomic::AtomicBool::new(false)).unwrap();
    let paths =
        ProjectPaths { cfg: onnx(), weights: onnx(), data: Some(data()), run: Some(run_dir.clone()), plan: None };
    let mut h = harness_of(App::new(None, None, Some(paths)));
    opened(&mut h);
    for name in &names {
        h.get_by_label(&format!("sensitivity plot {name}"));
    }
    assert_eq!(store::read(&run_dir).unwrap().header.layers, names);

    drag_first_threshold(&mut h, &names[0]);
    // Suggest with the form's default (a per-layer budget of 1 point).
    let rule = prunescope::plan::Rule::PerLayer(prunescope::plan::Budget::Absolute(0.01));
    let plan = suggest_is_the_engines(&mut h, &run_dir, &rule);
    let predicted = plan.predicted;

    // Prune & compare: a pruned ONNX file and the comparison with its confusion matrices.
    prune_and_compare(&mut h, &dir.path().join("compare"), 16);
    let app = h.state();
    let o = app.compare.outcome.as_ref().unwrap();
    assert_eq!(o.pruned.extension().unwrap(), "onnx");
    assert_eq!(o.comparison.models[1].effective_params, predicted.params_after);
    assert_eq!(o.plan.as_ref().unwrap().layers, plan.layers);
    assert!(prunescope::model::onnx::read(&o.pruned).is_ok());
    h.get_by_label("pruned − origin");
    for class in ["circle", "star"] {
        assert!(h.query_all_by_label(class).count() >= 2, "{class} on the matrices");
    }
}

/// The explorer on the bundled ONNX classifier (sample_runs/classify): a run made by the
/// engine opens with its top-1 curves under the ONNX node names, the analysis form offers the
/// classifier's metrics, a drag and a Suggest set thresholds whose totals are the plan's, and
/// prune & compare shows top-1 and the 20 × 20 confusion matrices (no background class).
#[test]
fn an_onnx_classifier_goes_through_the_explorer() {
    use prunescope::plan::{Resource, Rule};
    use prunescope::sensitivity::Metric;
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/classify");
    let onnx = sample.join("polygons-mobilenetv3s.onnx");
    let data = sample.join("data.yaml");
    let dir = tempfile::tempdir().unwrap();
    let model =
        prunescope::model::Model::open(&prunescope::model::ModelFiles::Onnx { path: onnx.clone(), task: None }, None)
            .unwrap();
    // Two convolutions and the first fully connected layer (a third of the parameters).
    let gemm = model.layers.iter().find(|l| l.weight_shape.len() == 2 && !l.head).unwrap();
    let names: Vec<String> = [&model.layers[2], &model.layers[20], gemm].iter().map(|l| l.name.clone()).collect();
    let run_dir = dir.path().join("sens");
    let config = AnalysisConfig {
        model: Some(onnx.clone()),
        data: data.clone(),
        out: run_dir.clone(),
        metric: Metric::Top1,
        sparsities: vec![0.3, 0.6, 0.9],
        layers: names.clone(),
        limit: Some(40),
        ..Default::default()
    };
    let (tx, _rx) = crossbeam_channel::unbounded();
    sensitivity::run(&config, &tx, &std::sync::atomic::AtomicBool::new(false)).unwrap();
    let paths =
        ProjectPaths { cfg: onnx.clone(), weights: onnx, data: Some(data), run: Some(run_dir.clone()), plan: None };
    let mut h = harness_of(App::new(None, None, Some(paths)));
    opened(&mut h);
    for name in &names {
        h.get_by_label(&format!("sensitivity plot {name}"));
    }
    assert_eq!(h.state().analysis_form.metric, Metric::Top1);
    h.get_by_label("Analysis").click();
    h.run_steps(2);
    assert!(h.query_all_by_label("top-1").count() >= 1 && h.query_all_by_label("mAP@0.5").count() == 0);
    h.get_by_label("Sensitivity").click();
    h.run_steps(2);

    drag_first_threshold(&mut h, &names[0]);
    // Suggest: what `prunescope suggest --target 10% --resource params` gives.
    {
        let app = h.state_mut();
        app.suggest.global = true;
        app.suggest.target = 10.0;
        app.suggest.resource = Resource::Params;
    }
    h.step();
    let plan = suggest_is_the_engines(&mut h, &run_dir, &Rule::Global { resource: Resource::Params, fraction: 0.1 });
    assert_eq!(plan.preprocess.name(), "torchvision");

    prune_and_compare(&mut h, &dir.path().join("compare"), 40);
    let app = h.state();
    let o = app.compare.outcome.as_ref().unwrap();
    assert_eq!(o.pruned.extension().unwrap(), "onnx");
    assert_eq!(o.comparison.task, "classify");
    assert_eq!(o.comparison.models[1].effective_params, plan.predicted.params_after);
    for m in &o.comparison.models {
        assert_eq!(m.confusion.size, 20);
        assert_eq!(m.confusion.total(), 40);
        assert!(m.top1.is_some());
    }
    assert!(h.query_all_by_label("top-1").count() >= 1, "the top-1 row");
    h.get_by_label("pruned − origin");
    assert!(h.query_all_by_label("background").next().is_none());
    for class in ["blunt-star4", "square"] {
        assert!(h.query_all_by_label(class).count() >= 2, "{class} on the matrices");
    }
}
