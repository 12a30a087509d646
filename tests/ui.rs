//! The explorer driven like a user drives it (egui_kittest): the sample opens, the grid has
//! one plot per analysed layer, a threshold drag moves the totals, Suggest fills the plan,
//! prune + compare finishes, a bad file shows an error. Figures are checked against the
//! engine's own reference functions (`Plan::refresh_prediction`, `plan::suggest`), and the
//! main views are compared with snapshot images rendered by wgpu on a software adapter.

mod common;

use common::ui::{drag_threshold, harness_of, opened, wait, SIZE};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use prunescope::gui::{App, ProjectPaths};
use prunescope::plan::{self, Rule};
use prunescope::plan::{Curves, Plan, Resource};
use prunescope::sensitivity::store;
use std::path::Path;

const SAMPLE: &str = "sample_runs/shapes";

fn harness(paths: ProjectPaths) -> Harness<'static, App> {
    harness_of(App::new(None, None, Some(paths)))
}

/// Fills the analysis form as a user types it and presses Start.
fn start_analysis(h: &mut Harness<'static, App>, out: &Path, layers: &str, sparsities: &str, images: usize) {
    {
        let app = h.state_mut();
        app.analysis_form.out = out.display().to_string();
        app.analysis_form.layers = layers.into();
        app.analysis_form.sparsities = sparsities.into();
        app.analysis_form.limit = images;
        app.analysis_form.batch = 4;
    }
    h.get_by_label("Analysis").click();
    h.step();
    h.get_by_label("▶ Start").click();
    h.step();
}

/// The sample opened with an empty plan (every layer at 0 %).
fn sample_without_plan() -> Harness<'static, App> {
    let mut paths = sample();
    paths.plan = None;
    opened_harness(paths)
}

/// A harness on `paths`, after the project, its totals and the layer statistics arrived.
fn opened_harness(paths: ProjectPaths) -> Harness<'static, App> {
    let mut h = harness(paths);
    opened(&mut h);
    h
}

fn sample() -> ProjectPaths {
    ProjectPaths::discover(Path::new(SAMPLE)).unwrap()
}

#[test]
fn sample_opens_with_one_plot_per_analysed_layer() {
    let paths = sample();
    let run = store::read(paths.run.as_ref().unwrap()).unwrap();
    let mut h = opened_harness(paths);
    h.snapshot("sensitivity");
    // Only the rows in view are drawn; selecting a layer scrolls its plot into view.
    let cells = h.query_all_by_label_contains("sensitivity plot ").count();
    assert!(cells > 0 && cells <= run.header.layers.len());
    for (i, name) in run.header.layers.iter().enumerate() {
        h.state_mut().act(prunescope::gui::app::Action::Select(i));
        h.run_steps(2);
        let r = h.get_by_label(&format!("sensitivity plot {name}")).rect();
        assert!(r.top() >= 0.0 && r.bottom() <= SIZE.y, "{name} at {r:?}");
    }
    assert_eq!(h.state().selected, run.header.layers.len() - 1);
}

#[test]
fn dragging_a_threshold_changes_the_totals() {
    let mut h = sample_without_plan();
    let before = h.state().project.as_ref().unwrap().plan.predicted;
    assert_eq!(before.params_after, before.params_before, "an empty plan prunes nothing");
    // Select conv_19 (the largest layer) and drag its threshold to the right.
    h.get_by_label("sensitivity plot conv_2").click();
    h.run_steps(2);
    assert_eq!(h.state().selected_block(), Some(2), "a click on a plot selects its layer");
    let i = h.state().project.as_ref().unwrap().curves.as_ref().unwrap().index_of("conv_19").unwrap();
    h.state_mut().act(prunescope::gui::app::Action::Select(i));
    h.run_steps(2);
    h.get_by_label("sensitivity plot conv_19").click();
    h.run_steps(2);
    drag_threshold(&mut h, 0.2, 0.6);
    let generation = h.state().project.as_ref().unwrap().generation;
    wait(&mut h, "the new totals", |a| a.totals_current());
    let app = h.state();
    let p = app.project.as_ref().unwrap();
    let s = p.plan.sparsity_of(19);
    assert!(s > 0.3 && s < 0.9, "sparsity after the drag: {s}");
    assert!(p.generation >= generation);
    let after = p.plan.predicted;
    assert!(after.params_after < before.params_after && after.macs_after < before.macs_after);
    // The reference: copy the checkpoint, prune it with the plan and recount.
    let mut reference = p.plan.clone();
    reference.refresh_prediction(&p.model, p.curves.as_ref());
    assert_eq!(after, reference.predicted);
    // One undo step for the whole drag.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.step();
    assert_eq!(h.state().project.as_ref().unwrap().plan.sparsity_of(19), 0.0);
    wait(&mut h, "the totals after undo", |a| a.totals_current());
    assert_eq!(h.state().project.as_ref().unwrap().plan.predicted.params_after, before.params_after);
}

#[test]
fn keyboard_moves_selection_and_threshold() {
    let mut h = sample_without_plan();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Num2);
    h.step();
    assert_eq!(h.state().tab, prunescope::gui::app::Tab::Layers);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Num1);
    h.step();
    assert_eq!(h.state().tab, prunescope::gui::app::Tab::Sensitivity);
    h.key_press(egui::Key::ArrowRight);
    h.step();
    assert_eq!(h.state().selected, 1);
    let block = h.state().selected_block().unwrap();
    for _ in 0..3 {
        h.key_press(egui::Key::Plus);
        h.step();
    }
    assert!((h.state().project.as_ref().unwrap().plan.sparsity_of(block) - 0.03).abs() < 1e-9);
    h.key_press(egui::Key::Minus);
    h.step();
    assert!((h.state().project.as_ref().unwrap().plan.sparsity_of(block) - 0.02).abs() < 1e-9);
    h.key_press(egui::Key::F);
    h.step();
    assert!(h.state().project.as_ref().unwrap().is_frozen(block));
    // The frozen layer's ✕ in the plan panel, the panel's button and the key are one action.
    h.get_by_label(&format!("conv_{block} ✕")).click();
    h.step();
    assert!(!h.state().project.as_ref().unwrap().is_frozen(block));
    h.get_by_label("freeze selected (F)").click();
    h.step();
    assert!(h.state().project.as_ref().unwrap().is_frozen(block));
    h.key_press(egui::Key::F);
    h.step();
    assert!(!h.state().project.as_ref().unwrap().is_frozen(block));
    h.key_press(egui::Key::F);
    h.step();
    assert!(h.state().project.as_ref().unwrap().is_frozen(block));
    // Clear: every layer at 0 % in one undo step.
    h.state_mut().project.as_mut().unwrap().edit_sparsity(19, 0.5);
    wait(&mut h, "the totals", |a| a.totals_current());
    h.get_by_label("Clear").click();
    h.step();
    let left: Vec<(String, f64)> =
        h.state().project.as_ref().unwrap().plan.layers.iter().map(|l| (l.layer.clone(), l.sparsity)).collect();
    assert!(left.iter().all(|l| l.1 == 0.0), "{left:?}");
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.step();
    assert_eq!(h.state().project.as_ref().unwrap().plan.sparsity_of(19), 0.5);
    h.key_press_modifiers(egui::Modifiers::COMMAND | egui::Modifiers::SHIFT, egui::Key::Z);
    h.step();
    assert_eq!(h.state().project.as_ref().unwrap().plan.sparsity_of(19), 0.0, "Ctrl+Shift+Z redoes the Clear");
}

#[test]
fn suggest_fills_the_thresholds() {
    let paths = sample();
    let loaded_plan = paths.plan.clone().unwrap();
    let run_dir = paths.run.clone().unwrap();
    let mut h = opened_harness(paths);
    {
        let app = h.state_mut();
        app.suggest.global = true;
        app.suggest.target = 30.0;
        app.suggest.resource = Resource::Macs;
    }
    h.step();
    h.get_by_label("Suggest").click();
    h.step();
    wait(&mut h, "the suggestion", |a| !a.suggesting);
    wait(&mut h, "the totals", |a| a.totals_current());
    let app = h.state();
    assert!(app.errors.is_empty(), "{:?}", app.errors);
    let p = app.project.as_ref().unwrap();
    // The reference: the engine's suggestion (what `prunescope suggest --target 30%` writes).
    let run = store::read(&run_dir).unwrap();
    let expected: Plan = plan::suggest(
        &run,
        &run_dir,
        &p.model,
        &Rule::Global { resource: Resource::Macs, fraction: 0.3 },
        run.header.metric,
        &[],
    )
    .unwrap();
    let got: Vec<(String, f64)> = p.plan.layers.iter().map(|l| (l.layer.clone(), l.sparsity)).collect();
    let want: Vec<(String, f64)> = expected.layers.iter().map(|l| (l.layer.clone(), l.sparsity)).collect();
    assert_eq!(got, want);
    assert!(got.iter().any(|(_, s)| *s > 0.0));
    assert!(p.plan.predicted.macs_reduction() >= 0.3);
    assert_eq!(p.plan.predicted, expected.predicted);
    // Another rule is another plan: Save (Ctrl+S) writes a new file, not over the one loaded.
    let file = Path::new(app.plan_file.trim());
    assert_eq!(file.file_name().unwrap(), "macs30.json");
    assert!(!file.exists() && !prunescope::fsio::same_path(file, &loaded_plan));
    h.get_by_label("Layers").click();
    h.run_steps(3);
    h.snapshot("layers");
}

#[test]
fn prune_and_compare_shows_the_table() {
    let out = tempfile::tempdir().unwrap();
    let mut h = opened_harness(sample());
    {
        let app = h.state_mut();
        app.compare.limit = 60;
        app.compare.latency_runs = 2;
        app.compare.out = out.path().display().to_string();
    }
    h.get_by_label("Prune & compare").click();
    h.step();
    h.get_by_label("▶ Prune & compare").click();
    h.step();
    wait(&mut h, "the comparison", |a| !a.compare.running);
    let app = h.state();
    assert!(app.errors.is_empty(), "{:?}", app.errors);
    let o = app.compare.outcome.as_ref().unwrap();
    assert_eq!(o.comparison.models.len(), 2);
    assert_eq!(o.comparison.images, 60);
    // The pruned checkpoint holds what the plan predicts (effective parameters).
    let p = app.project.as_ref().unwrap();
    assert_eq!(o.comparison.models[1].effective_params, p.plan.predicted.params_after);
    assert!(out.path().join("report.md").is_file() && out.path().join("confusion.png").is_file());
    for label in ["non-zero parameters", "effective parameters", "mAP@0.5:0.95", "compressed size (bytes)"] {
        h.get_by_label(label);
    }
    // The plan's estimate beside what was measured: the effective counts are exact, the
    // metric is the additive estimate.
    h.get_by_label("plan's estimate");
    let pr = p.plan.predicted;
    h.get_by_label(&format!("{:.4} (additive)", pr.metric.unwrap()));
    let shown = h.query_all_by_label(&prunescope::gui::views::count(pr.params_after)).count();
    assert!(shown >= 2, "measured and estimated: {shown}");
    // Masked checkpoints are dense on disk and at run time: said where those numbers are.
    h.get_by_label("file size (bytes) †");
    h.get_by_label("latency (ms, batch 1) †");
    h.get_by_label_contains("Pruned weights are masked");
    // Column heads and confusion matrix titles.
    assert_eq!(h.query_all_by_label("origin").count(), 2);
    assert_eq!(h.query_all_by_label("pruned").count(), 2);
    h.get_by_label("pruned − origin");
    // Latency and the (temporary) report folder differ from run to run: leave them out.
    let rows = [
        h.get_by_label("latency (ms, batch 1) †").rect(),
        h.get_by_label("report folder").rect(),
        h.get_by_label_contains("report in ").rect(),
        h.get_by_label_contains("pruned and compared into").rect(),
    ];
    for r in rows {
        h.mask(egui::Rect::from_min_max(egui::pos2(0.0, r.top()), egui::pos2(SIZE.x, r.bottom())));
    }
    h.snapshot("compare");
}

#[test]
fn a_bad_file_shows_an_error_and_the_app_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("broken.cfg");
    std::fs::write(&cfg, "[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nfilters=eight\nsize=3\n").unwrap();
    let paths = ProjectPaths {
        cfg: cfg.clone(),
        weights: Path::new(SAMPLE).join("yolov3-tiny-shapes.safetensors"),
        ..Default::default()
    };
    let mut h = harness(paths);
    wait(&mut h, "the error", |a| !a.errors.is_empty());
    let err = h.state().errors[0].clone();
    assert!(err.contains("broken.cfg"), "{err}");
    assert!(err.contains("filters"), "{err}");
    h.get_by_label_contains("broken.cfg");
    // The app goes on: the paths wait in the Open window, the user corrects the cfg, the
    // error is dismissed and the project opens.
    assert!(h.state().open.visible);
    assert_eq!(Path::new(&h.state().open.cfg), cfg.as_path());
    h.get_by_label("✕").click();
    h.step();
    assert!(h.state().errors.is_empty());
    h.state_mut().open.cfg = Path::new(SAMPLE).join("yolov3-tiny-shapes.cfg").display().to_string();
    h.step();
    h.get_by_label("Open").click();
    h.step();
    opened(&mut h);
    assert!(!h.state().open.visible);
    assert!(h.state().project.is_some());
    // A plan for other weights is refused with the file named, and the plan is kept.
    let before = h.state().project.as_ref().unwrap().plan.layers.clone();
    let plan_path = dir.path().join("other.json");
    let mut other = h.state().project.as_ref().unwrap().plan.clone();
    other.model.weights.sha256 = "0".repeat(64);
    other.write(&plan_path).unwrap();
    h.state_mut().load_plan(&plan_path);
    h.step();
    assert!(h.state().errors.last().unwrap().contains("other.json"));
    assert_eq!(h.state().project.as_ref().unwrap().plan.layers, before);
}

#[test]
fn analysis_streams_points_into_the_grid() {
    let out = tempfile::tempdir().unwrap();
    let mut h = opened_harness(sample());
    start_analysis(&mut h, &out.path().join("run"), "conv_0, conv_2", "20, 50", 16);
    // Opened while it is written: what finished is shown, the rest streams in.
    wait(&mut h, "the run's first point", |a| !a.analysis.points.is_empty() || !a.analysis.running);
    h.get_by_label("Open this run").click();
    h.step();
    wait(&mut h, "the analysis", |a| !a.analysis.running && a.loading.is_none());
    h.step();
    let app = h.state();
    assert!(app.errors.is_empty(), "{:?}", app.errors);
    let p = app.project.as_ref().unwrap();
    let curves = p.curves.as_ref().unwrap();
    // What streamed in equals what the run store holds.
    let stored = Curves::of(&store::read(&out.path().join("run")).unwrap(), curves.metric).unwrap();
    assert_eq!(curves.layers.len(), 2);
    assert_eq!(curves.layers, stored.layers);
    assert_eq!(curves.baseline, stored.baseline);
    h.get_by_label("Sensitivity").click();
    h.run_steps(3);
    assert_eq!(h.query_all_by_label_contains("sensitivity plot ").count(), 2);
}

#[test]
fn thresholds_and_paths_persist_between_starts() {
    let mut paths = sample();
    paths.plan = None;
    let mut h = opened_harness(paths.clone());
    {
        let p = h.state_mut().project.as_mut().unwrap();
        p.edit_sparsity(10, 0.4);
        p.edit_sparsity(19, 0.25);
        p.toggle_freeze(2);
    }
    h.state_mut().select(3);
    h.step();
    // What eframe stores at exit, through serde as eframe's storage does.
    let text = serde_json::to_string(&h.state().persisted()).unwrap();
    let persisted: prunescope::gui::Persisted = serde_json::from_str(&text).unwrap();
    // Stored absolute, so that a start from another folder finds the files.
    assert_eq!(persisted.project.as_ref(), Some(&paths.absolute()));
    assert!(persisted.project.as_ref().unwrap().cfg.is_absolute());
    // A plain restart, and `make run`'s start on the sample folder (relative paths).
    for start in [None, Some(paths.clone())] {
        let mut h2 = harness_of(App::new(None, Some(persisted.clone()), start));
        opened(&mut h2);
        let a = h2.state();
        let p = a.project.as_ref().unwrap();
        assert!(p.paths.same_files(&paths));
        assert_eq!(p.plan.sparsity_of(10), 0.4);
        assert_eq!(p.plan.sparsity_of(19), 0.25);
        assert!(p.is_frozen(2));
        assert_eq!(a.selected, 3);
        assert!(!p.unsaved(), "restored thresholds are the starting point, not an edit");
        assert!(!p.can_undo(), "nor an undo step");
    }
}

#[test]
fn plan_saves_loads_and_exports_from_the_plan_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = opened_harness(sample());
    let file = dir.path().join("plans/mine.json");
    h.state_mut().plan_file = file.display().to_string();
    // Saved right after the edit: the save waits for the totals of the edited plan.
    h.state_mut().project.as_mut().unwrap().edit_sparsity(19, 0.3);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::S);
    h.step();
    wait(&mut h, "the save", |a| a.project.as_ref().is_some_and(|p| !p.unsaved()));
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    let saved = Plan::read(&file).unwrap();
    let app_plan = h.state().project.as_ref().unwrap().plan.clone();
    assert_eq!(saved.layers, app_plan.layers);
    assert_eq!(saved.predicted, app_plan.predicted);
    let mut reference = saved.clone();
    reference.refresh_prediction(
        &h.state().project.as_ref().unwrap().model,
        h.state().project.as_ref().unwrap().curves.as_ref(),
    );
    assert_eq!(saved.predicted, reference.predicted);
    assert!(!h.state().project.as_ref().unwrap().unsaved());
    for kind in [
        prunescope::plan::ExportFormat::Csv,
        prunescope::plan::ExportFormat::TorchPruning,
        prunescope::plan::ExportFormat::Nni,
    ] {
        h.state_mut().export_beside_plan(kind);
    }
    // The exports are the engine's exports of the saved plan (what `export-plan` writes).
    assert_eq!(std::fs::read_to_string(dir.path().join("plans/mine.csv")).unwrap(), saved.to_csv());
    let tp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("plans/mine.torch_pruning.json")).unwrap())
            .unwrap();
    assert_eq!(tp, saved.to_torch_pruning());
    let nni: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("plans/mine.nni.json")).unwrap()).unwrap();
    assert_eq!(nni, saved.to_nni());
    // Edit, then load the saved file back: one undo step returns to the edit.
    h.state_mut().project.as_mut().unwrap().edit_sparsity(19, 0.7);
    h.state_mut().load_plan(&file);
    assert_eq!(h.state().project.as_ref().unwrap().plan.sparsity_of(19), 0.3);
    h.state_mut().undo();
    assert_eq!(h.state().project.as_ref().unwrap().plan.sparsity_of(19), 0.7);
}

/// A file dropped on the window, as the windowing layer hands it to egui.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn dropped_files_open_a_project_and_load_a_plan() {
    let mut h = opened_harness(ProjectPaths {
        cfg: Path::new(SAMPLE).join("yolov3-tiny-shapes.cfg"),
        weights: Path::new(SAMPLE).join("yolov3-tiny-shapes.safetensors"),
        ..Default::default()
    });
    assert!(h.state().project.as_ref().unwrap().curves.is_none());
    h.state_mut().dropped(vec![Path::new(SAMPLE).to_path_buf()]);
    opened(&mut h);
    assert!(h.state().project.as_ref().unwrap().curves.is_some());
    let plan = Path::new(SAMPLE).join("plans/l1-params50.json");
    h.input_mut().dropped_files.push(std::sync::Arc::new(Dropped(plan.clone())));
    h.step();
    let expected = Plan::read(&plan).unwrap();
    assert_eq!(h.state().project.as_ref().unwrap().plan.layers, expected.layers);
    // Something prunescope does not open is named in an error.
    h.input_mut().dropped_files.push(std::sync::Arc::new(Dropped("notes.txt".into())));
    h.step();
    assert!(h.state().errors.last().unwrap().contains("notes.txt"));
}

#[test]
fn analysis_cancels_and_resumes() {
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let mut h = opened_harness(sample());
    start_analysis(&mut h, &run, "conv_8, conv_12, conv_19", "30, 60", 24);
    wait(&mut h, "the first point", |a| !a.analysis.points.is_empty() || !a.analysis.running);
    h.get_by_label("■ Cancel").click();
    wait(&mut h, "the cancellation", |a| !a.analysis.running);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    let kept = store::read(&run).unwrap().points.len();
    assert!(kept < 6, "cancelled before the end: {kept} of 6 points");
    h.get_by_label("↻ Resume").click();
    h.step();
    wait(&mut h, "the resumed analysis", |a| !a.analysis.running);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    let stored = store::read(&run).unwrap();
    assert_eq!(stored.points.len(), 6);
    h.get_by_label("Open this run").click();
    h.step();
    opened(&mut h);
    let p = h.state().project.as_ref().unwrap();
    let curves = p.curves.as_ref().unwrap();
    assert_eq!(curves.layers, Curves::of(&stored, curves.metric).unwrap().layers);
}

#[test]
fn compare_takes_a_third_checkpoint() {
    let paths = sample();
    let out = tempfile::tempdir().unwrap();
    let mut h = opened_harness(paths.clone());
    {
        let app = h.state_mut();
        app.compare.limit = 20;
        app.compare.latency_runs = 1;
        app.compare.out = out.path().display().to_string();
        // The original once more: its row must equal the origin's.
        app.compare.also = paths.weights.display().to_string();
        app.tab = prunescope::gui::app::Tab::Compare;
    }
    h.step();
    h.get_by_label("▶ Prune & compare").click();
    h.step();
    wait(&mut h, "the comparison", |a| !a.compare.running);
    let app = h.state();
    assert!(app.errors.is_empty(), "{:?}", app.errors);
    let m = &app.compare.outcome.as_ref().unwrap().comparison.models;
    assert_eq!(m.len(), 3);
    assert_eq!(m[2].label, "yolov3-tiny-shapes");
    assert_eq!((m[2].map50, m[2].map, m[2].nonzero_params), (m[0].map50, m[0].map, m[0].nonzero_params));
    assert_eq!(m[2].confusion.counts, m[0].confusion.counts);
    assert_eq!(h.query_all_by_label("yolov3-tiny-shapes").count(), 2, "its column and its confusion matrix");
}

/// A failed job ends only that job: a failed export while an analysis runs leaves the
/// analysis running (its Start stays disabled) instead of resetting every job's state.
#[test]
fn a_failure_ends_only_its_own_job() {
    use prunescope::gui::worker::{Job, Msg};
    let out = tempfile::tempdir().unwrap();
    let mut h = opened_harness(sample());
    start_analysis(&mut h, &out.path().join("run"), "conv_0, conv_2, conv_4", "10, 20, 30, 40, 50", 64);
    assert!(h.state().analysis.running);
    h.state().bridge.spawn(Job::Export, |n| n.send(Msg::Failed(Job::Export, "export: disk full".into())));
    wait(&mut h, "the export failure", |a| !a.errors.is_empty());
    assert_eq!(h.state().errors, vec!["export: disk full".to_string()]);
    assert!(h.state().analysis.running, "the analysis was marked as ended by another job's failure");
    h.state_mut().cancel_analysis();
    wait(&mut h, "the cancelled analysis", |a| !a.analysis.running);
}

/// Starting an analysis does not take over the workspace: the open run and the edited plan
/// stay (unsaved) until the user opens the new run, and opening it asks before the edits go.
#[test]
fn start_keeps_the_open_run_and_plan() {
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let paths = sample();
    let sample_run = paths.run.clone().unwrap();
    let mut h = opened_harness(paths);
    h.state_mut().project.as_mut().unwrap().edit_sparsity(19, 0.45);
    let edited = h.state().project.as_ref().unwrap().plan.layers.clone();
    let plan_file = h.state().plan_file.clone();
    start_analysis(&mut h, &run, "conv_0", "50", 8);
    wait(&mut h, "the analysis", |a| !a.analysis.running);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    {
        let p = h.state().project.as_ref().unwrap();
        assert_eq!(p.paths.run.as_deref(), Some(sample_run.as_path()), "the open run was replaced");
        assert_eq!(p.plan.layers, edited, "the edited plan was replaced");
        assert!(p.unsaved());
        assert_eq!(h.state().plan_file, plan_file);
    }
    // The new run is in the run menu and one click away; opening it asks first.
    assert!(h.state().runs.iter().any(|r| r == &run));
    h.get_by_label("Open this run").click();
    h.run_steps(3);
    h.get_by_label("The plan has unsaved edits");
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert!(h.state().confirm.is_none() && h.state().loading.is_none());
    assert_eq!(h.state().project.as_ref().unwrap().plan.layers, edited);
    // Save, then open: the edits land in a file of the user's choice, then the run opens.
    let saved = out.path().join("edited.json");
    h.state_mut().plan_file = saved.display().to_string();
    h.get_by_label("Open this run").click();
    h.run_steps(3);
    h.get_by_label("Save, then open").click();
    h.step();
    wait(&mut h, "the new run", |a| {
        a.loading.is_none() && a.project.as_ref().is_some_and(|p| p.paths.run.as_deref() == Some(run.as_path()))
    });
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    assert_eq!(Plan::read(&saved).unwrap().sparsity_of(19), 0.45);
    let p = h.state().project.as_ref().unwrap();
    assert!(p.plan.layers.iter().all(|l| l.sparsity == 0.0), "a new run starts a new plan");
    assert!(!p.unsaved());
    // Discard: back to the sample run with an edit, and its edits dropped on request.
    h.state_mut().project.as_mut().unwrap().edit_sparsity(0, 0.5);
    h.state_mut().act(prunescope::gui::app::Action::OpenRun(sample_run.clone()));
    h.run_steps(3);
    h.get_by_label("Discard edits").click();
    h.step();
    wait(&mut h, "the sample run", |a| {
        a.loading.is_none() && a.project.as_ref().is_some_and(|p| p.paths.run.as_deref() == Some(sample_run.as_path()))
    });
}

/// A copy of the sample run that holds only `layers` (a run of another analysis).
fn partial_run(dir: &Path, layers: &[&str]) -> std::path::PathBuf {
    let from = sample().run.unwrap();
    let run = dir.join("partial-run");
    std::fs::create_dir_all(&run).unwrap();
    let mut header: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from.join("run.json")).unwrap()).unwrap();
    header["layers"] = serde_json::json!(layers);
    // The copy names the sample's files by absolute paths (it lives elsewhere).
    for ptr in ["/model/cfg/path", "/model/weights/path", "/dataset/path"] {
        let rel = header.pointer(ptr).unwrap().as_str().unwrap().to_string();
        *header.pointer_mut(ptr).unwrap() = from.join(rel).canonicalize().unwrap().display().to_string().into();
    }
    header["created_at"] = "2026-12-01T00:00:00Z".into();
    std::fs::write(run.join("run.json"), serde_json::to_string_pretty(&header).unwrap()).unwrap();
    let points: String = std::fs::read_to_string(from.join("points.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["kind"] == "baseline" || layers.contains(&v["layer"].as_str().unwrap_or(""))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(run.join("points.jsonl"), points).unwrap();
    run
}

/// A plan made from another run says so, names that run, offers to open it, and marks the
/// pruned layers the open run has no curve for.
#[test]
fn a_plan_from_another_run_is_named_and_its_blind_layers_marked() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = sample();
    let plan_file = paths.plan.take().unwrap();
    let sample_run = paths.run.replace(partial_run(dir.path(), &["conv_0", "conv_19"])).unwrap();
    let mut h = opened_harness(paths);
    assert!(h.query_by_label("⚠ plan made from another run").is_none());
    h.state_mut().act(prunescope::gui::app::Action::LoadPlan(plan_file.clone()));
    h.step();
    wait(&mut h, "the totals", |a| a.totals_current());
    let plan = Plan::read(&plan_file).unwrap();
    let p = h.state().project.as_ref().unwrap();
    assert_eq!(
        p.plan.layers.iter().map(|l| l.sparsity).collect::<Vec<_>>(),
        plan.layers.iter().map(|l| l.sparsity).collect::<Vec<_>>()
    );
    let from = p.plan_from_other_run.as_ref().expect("the plan's run is named");
    assert!(prunescope::fsio::same_path(&from.path, &sample_run));
    let blind: Vec<String> = plan
        .layers
        .iter()
        .filter(|l| l.sparsity > 0.0 && l.layer != "conv_0" && l.layer != "conv_19")
        .map(|l| l.layer.clone())
        .collect();
    assert!(!blind.is_empty());
    assert_eq!(p.pruned_without_curve().len(), blind.len());
    assert!(!p.unsaved(), "a plan just loaded is saved");
    h.get_by_label("⚠ plan made from another run");
    h.get_by_label_contains("sensitivity-l1");
    h.get_by_label(&format!("· {} without a curve in this run: not in the estimate", blind.len()));
    h.get_by_label("Layers").click();
    h.run_steps(2);
    assert_eq!(h.query_all_by_label("⚠ no curve").count(), blind.len());
    // Open that run: the plan on its own run, no warning, every layer with a curve.
    h.get_by_label("Open that run").click();
    h.step();
    opened(&mut h);
    let p = h.state().project.as_ref().unwrap();
    assert!(p.paths.run.as_ref().is_some_and(|r| prunescope::fsio::same_path(r, &sample_run)));
    assert!(p.plan_from_other_run.is_none());
    assert!(p.pruned_without_curve().is_empty());
    assert_eq!(p.plan.layers, {
        let mut q = plan.clone();
        q.refresh_prediction(&p.model, p.curves.as_ref());
        q.layers
    });
    assert!(h.query_by_label("⚠ plan made from another run").is_none());
}

/// The detail column of the Sensitivity view scrolls: the last row of "what each measured
/// sparsity removes" can be reached at 1280×800.
#[test]
fn the_sensitivity_column_scrolls_to_its_last_row() {
    let mut h = opened_harness(sample());
    h.get_by_label("what each measured sparsity removes").scroll_to_me();
    h.run_steps(2);
    h.get_by_label("what each measured sparsity removes").click_accesskit();
    h.run_steps(3);
    let last = h.get_by_label("88 %");
    last.scroll_to_me();
    h.run_steps(3);
    let r = h.get_by_label("88 %").rect();
    assert!(r.bottom() <= SIZE.y && r.top() >= 0.0, "the last row is at {r:?}, outside the window");
}

/// Unfreezing gives the layer its threshold back; the unsaved badge follows undo and load.
#[test]
fn unfreeze_restores_the_threshold_and_unsaved_follows_the_plan() {
    let paths = sample();
    let plan_file = paths.plan.clone().unwrap();
    let mut h = opened_harness(paths);
    assert!(h.query_by_label("unsaved").is_none(), "the badge right after loading");
    let i = h.state().project.as_ref().unwrap().curves.as_ref().unwrap().index_of("conv_19").unwrap();
    h.state_mut().select(i);
    let before = h.state().project.as_ref().unwrap().plan.sparsity_of(19);
    h.key_press(egui::Key::Plus);
    h.step();
    let edited = h.state().project.as_ref().unwrap().plan.sparsity_of(19);
    assert!((edited - before - 0.01).abs() < 1e-9);
    h.step();
    h.get_by_label("unsaved");
    h.key_press(egui::Key::F);
    h.step();
    assert_eq!(h.state().project.as_ref().unwrap().plan.sparsity_of(19), 0.0);
    h.key_press(egui::Key::F);
    h.step();
    assert_eq!(h.state().project.as_ref().unwrap().plan.sparsity_of(19), edited, "unfreeze restores");
    // Undo to the loaded thresholds: saved again.
    for _ in 0..3 {
        h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
        h.step();
    }
    h.step();
    assert_eq!(h.state().project.as_ref().unwrap().plan.sparsity_of(19), before);
    assert!(h.query_by_label("unsaved").is_none(), "the badge after undoing to the saved plan");
    // Loading a plan file: saved.
    h.state_mut().project.as_mut().unwrap().edit_sparsity(19, 0.05);
    h.state_mut().act(prunescope::gui::app::Action::LoadPlan(plan_file));
    h.run_steps(2);
    assert!(h.query_by_label("unsaved").is_none(), "the badge after loading a plan");
}
