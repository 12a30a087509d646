//! What the explorer holds about one open project, and the edits made to its plan. No egui
//! here: this is the logic the views draw and the tests drive.

use crate::model::effective::Cost;
use crate::model::{Model, ModelFiles};
use crate::plan::{drop_of, RunRef};
use crate::plan::{Curves, Origin, Plan, PlanLayer};
pub use crate::project::ProjectPaths;
use crate::sensitivity::{store, Metric, StoredRun};
use std::path::Path;
use std::sync::Arc;

/// One convolution of the model as the layer table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    pub name: String,
    pub block: usize,
    /// Its position in the model's layers (and in the per-layer costs).
    pub index: usize,
    /// Conv weight shape (out, in/groups, k, k).
    pub shape: Vec<usize>,
    pub params: u64,
    pub macs: u64,
    /// Share of the model's MACs, in percent.
    pub macs_percent: f64,
}

/// An open project: the model, its run and curves, and the plan being edited.
pub struct Project {
    pub paths: ProjectPaths,
    pub model: Arc<Model>,
    pub layers: Vec<LayerRow>,
    pub run: Option<StoredRun>,
    pub curves: Option<Curves>,
    pub plan: Plan,
    /// The effective cost per layer after the plan, as the cost worker last gave it (the
    /// totals are in `plan.predicted`, current when `costed_generation` is).
    pub costs_after: Option<Vec<Cost>>,
    /// Bumped on every plan change; a prediction for an older generation is stale.
    pub generation: u64,
    /// The generation `prediction` was computed for.
    pub costed_generation: u64,
    /// The layers as last loaded or saved: the plan is unsaved while it differs from them.
    saved: Vec<PlanLayer>,
    /// The run the loaded plan was made from, when it is not the open run: its thresholds
    /// are costed here with the open run's curves.
    pub plan_from_other_run: Option<RunRef>,
    /// The threshold a layer had when it was frozen, given back when it is unfrozen.
    thawed: std::collections::HashMap<usize, f64>,
    undo: Vec<Vec<PlanLayer>>,
    redo: Vec<Vec<PlanLayer>>,
}

impl Project {
    /// Loads the model (and the run and plan when given). Slow for big checkpoints: call it
    /// on a worker thread.
    pub fn load(paths: &ProjectPaths) -> Result<Self, String> {
        let run = match &paths.run {
            Some(dir) => Some(store::read(dir).map_err(|e| e.to_string())?),
            None => None,
        };
        let img_size = run.as_ref().map(|r| r.header.eval.img_size);
        let files = ModelFiles::of_paths(&paths.cfg, &paths.weights);
        let model = Model::open(&files, img_size).map_err(|e| e.to_string())?;
        if let (Some(r), Some(dir)) = (&run, &paths.run) {
            crate::plan::check_run(r, &model, dir).map_err(|e| e.to_string())?;
        }
        let mut project = Project::new(paths.clone(), Arc::new(model), run)?;
        if let Some(p) = &paths.plan {
            let plan = Plan::read(p).map_err(|e| e.to_string())?;
            project.replace_plan(plan, p)?;
            project.undo.clear();
        }
        Ok(project)
    }

    /// A project of a model already loaded and a run already read (not checked against
    /// each other: [`Project::load`] does that).
    pub fn new(paths: ProjectPaths, model: Arc<Model>, run: Option<StoredRun>) -> Result<Self, String> {
        let total = model.macs.max(1) as f64;
        let layers: Vec<LayerRow> = model
            .layers
            .iter()
            .enumerate()
            .map(|(index, l)| LayerRow {
                name: l.name.clone(),
                block: l.id,
                index,
                shape: l.weight_shape.clone(),
                params: l.params,
                macs: l.macs,
                macs_percent: 100.0 * l.macs as f64 / total,
            })
            .collect();
        let curves = match &run {
            Some(r) if r.baseline.is_some() => Some(Curves::of(r, r.header.metric).map_err(|e| e.to_string())?),
            _ => None,
        };
        let (method, metric) = run
            .as_ref()
            .map(|r| (r.header.method, r.header.metric))
            .unwrap_or((crate::prune::Method::L1, Metric::Map50));
        let blocks: Vec<usize> = match &run {
            Some(r) => r.header.layers.iter().filter_map(|n| model.layer(n).map(|l| l.id)).collect(),
            None => Vec::new(),
        };
        let mut plan = Plan::new(&model, method, metric, &blocks);
        if let (Some(r), Some(dir)) = (&run, &paths.run) {
            plan.run = Some(RunRef {
                path: dir.clone(),
                created_at: r.header.created_at.clone(),
                dataset: r.header.dataset.clone(),
            });
            plan.img_size = r.header.eval.img_size;
        }
        let saved = plan.layers.clone();
        Ok(Project {
            paths,
            model,
            layers,
            run,
            curves,
            plan,
            costs_after: None,
            generation: 1,
            costed_generation: 0,
            saved,
            plan_from_other_run: None,
            thawed: Default::default(),
            undo: Vec::new(),
            redo: Vec::new(),
        })
    }

    /// Whether the plan differs from what was last loaded or saved (undoing back to the
    /// saved thresholds makes it saved again).
    pub fn unsaved(&self) -> bool {
        let key = |l: &PlanLayer| (l.block, l.sparsity.to_bits(), l.origin);
        let nonzero = |v: &[PlanLayer]| -> Vec<_> {
            v.iter().filter(|l| l.sparsity > 0.0 || l.origin != Origin::Manual).map(key).collect()
        };
        nonzero(&self.plan.layers) != nonzero(&self.saved)
    }

    /// The run the open run's curves come from, as plans name it.
    pub fn run_ref(&self) -> Option<RunRef> {
        let (r, dir) = (self.run.as_ref()?, self.paths.run.as_ref()?);
        Some(RunRef { path: dir.clone(), created_at: r.header.created_at.clone(), dataset: r.header.dataset.clone() })
    }

    /// Whether `layer` has a measured curve in the open run.
    pub fn has_curve(&self, layer: &str) -> bool {
        self.curves.as_ref().is_some_and(|c| c.index_of(layer).is_some())
    }

    /// The pruned layers of the plan that the open run has no curve for: their drop is not
    /// in the estimate.
    pub fn pruned_without_curve(&self) -> Vec<&PlanLayer> {
        self.plan.layers.iter().filter(|l| l.sparsity > 0.0 && !self.has_curve(&l.layer)).collect()
    }

    pub fn row(&self, block: usize) -> Option<&LayerRow> {
        self.layers.iter().find(|l| l.block == block)
    }

    pub fn sparsity(&self, block: usize) -> f64 {
        self.plan.sparsity_of(block)
    }

    pub fn is_frozen(&self, block: usize) -> bool {
        self.plan.layers.iter().any(|l| l.block == block && l.origin == Origin::Frozen)
    }

    /// Names of the frozen layers.
    pub fn frozen(&self) -> Vec<String> {
        self.plan.layers.iter().filter(|l| l.origin == Origin::Frozen).map(|l| l.layer.clone()).collect()
    }

    /// The predicted drop of `block` at its planned sparsity.
    pub fn predicted_drop(&self, block: usize) -> Option<f64> {
        self.plan.layers.iter().find(|l| l.block == block).and_then(|l| l.predicted_drop)
    }

    /// The plan's layers, to hand to [`Project::commit`] after an edit (a whole drag is one edit).
    pub fn snapshot(&self) -> Vec<PlanLayer> {
        self.plan.layers.clone()
    }

    /// Records the edit that started at `before` as one undo step, if it changed anything.
    pub fn commit(&mut self, before: Vec<PlanLayer>) {
        if before != self.plan.layers {
            self.push_undo(before);
        }
    }

    /// Sets one layer's sparsity as one undo step.
    pub fn edit_sparsity(&mut self, block: usize, sparsity: f64) -> bool {
        let before = self.snapshot();
        let changed = self.set_sparsity(block, sparsity);
        self.commit(before);
        changed
    }

    /// One undo step back to `before`; a new edit forgets what was undone.
    fn push_undo(&mut self, before: Vec<PlanLayer>) {
        self.undo.push(before);
        if self.undo.len() > 200 {
            self.undo.remove(0);
        }
        self.redo.clear();
    }

    fn checkpoint(&mut self) {
        self.push_undo(self.plan.layers.clone());
    }

    /// Sets one layer's sparsity (clamped to [0, 0.99]) without an undo step; frozen layers
    /// are left alone. Returns whether anything changed.
    pub fn set_sparsity(&mut self, block: usize, sparsity: f64) -> bool {
        let s = (sparsity.clamp(0.0, 0.99) * 1000.0).round() / 1000.0;
        if self.is_frozen(block) || (self.sparsity(block) - s).abs() < 1e-12 {
            return false;
        }
        if !self.plan.layers.iter().any(|l| l.block == block) {
            let Some(layer) = self.model.layer_by_id(block) else { return false };
            self.plan.layers.push(PlanLayer {
                layer: layer.name.clone(),
                block,
                sparsity: 0.0,
                origin: Origin::Manual,
                predicted_drop: None,
            });
            self.plan.layers.sort_by_key(|l| l.block);
        }
        let ok = self.plan.set(block, s, self.curves.as_ref()).is_ok();
        if ok {
            self.changed();
        }
        ok
    }

    /// Freezes (0 %, kept by Suggest) or unfreezes a layer; one undo step.
    pub fn toggle_freeze(&mut self, block: usize) {
        if !self.plan.layers.iter().any(|l| l.block == block) {
            return;
        }
        self.checkpoint();
        if let Some(l) = self.plan.layers.iter_mut().find(|l| l.block == block) {
            if l.origin == Origin::Frozen {
                l.origin = Origin::Manual;
                l.sparsity = self.thawed.remove(&block).unwrap_or(0.0);
            } else {
                self.thawed.insert(block, l.sparsity);
                l.origin = Origin::Frozen;
                l.sparsity = 0.0;
            }
        }
        self.changed();
    }

    /// Puts back the thresholds and frozen layers of the last session: the starting point,
    /// so neither an undo step nor an unsaved change.
    pub fn restore(&mut self, thresholds: &[(String, f64)], frozen: &[String]) {
        for (name, s) in thresholds {
            if let Some(b) = self.model.layer(name).map(|l| l.id) {
                self.set_sparsity(b, *s);
            }
        }
        for l in self.plan.layers.iter_mut().filter(|l| frozen.contains(&l.layer)) {
            l.origin = Origin::Frozen;
            l.sparsity = 0.0;
        }
        self.changed();
        self.saved = self.plan.layers.clone();
    }

    /// Takes a suggested or loaded plan's layers; one undo step.
    pub fn take_layers(&mut self, plan: &Plan) {
        self.checkpoint();
        self.plan.layers = plan.layers.clone();
        self.plan.rule = plan.rule.clone();
        self.changed();
    }

    /// Replaces the plan by one read from `path` (checked against the model); one undo step.
    /// A plan made from another run is costed with the open run's curves (and saved as made
    /// from it); which run it came from is kept in `plan_from_other_run` to say so.
    pub fn replace_plan(&mut self, mut plan: Plan, path: &Path) -> Result<(), String> {
        plan.check(&self.model).map_err(|m| format!("{}: {m}", path.display()))?;
        self.checkpoint();
        let open = self.run_ref();
        self.plan_from_other_run = match (&plan.run, &open) {
            (Some(from), Some(open)) if same_run(from, open) => None,
            (Some(from), _) => Some(from.clone()),
            (None, _) => None,
        };
        if open.is_some() || plan.run.is_none() {
            plan.run = open.or(plan.run);
        }
        let metric_changed = self.plan.metric != plan.metric;
        self.plan = plan;
        self.paths.plan = Some(path.to_path_buf());
        self.thawed.clear();
        if metric_changed {
            // The curves in the plan's metric (a plan can be suggested from any metric of a run).
            self.refresh_curves();
        }
        self.changed();
        self.saved = self.plan.layers.clone();
        Ok(())
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    pub fn undo(&mut self) -> bool {
        let Some(prev) = self.undo.pop() else { return false };
        self.redo.push(std::mem::replace(&mut self.plan.layers, prev));
        self.changed();
        true
    }

    pub fn redo(&mut self) -> bool {
        let Some(next) = self.redo.pop() else { return false };
        self.undo.push(std::mem::replace(&mut self.plan.layers, next));
        self.changed();
        true
    }

    fn changed(&mut self) {
        let curves = self.curves.as_ref();
        for l in &mut self.plan.layers {
            l.predicted_drop = drop_of(curves, &l.layer, l.sparsity);
        }
        self.generation += 1;
    }

    /// Writes the plan with its prediction, which must be that of this generation (the
    /// caller waits for the cost worker: see `App::save_plan`).
    pub fn save_plan(&mut self, path: &Path) -> Result<(), String> {
        if self.costed_generation != self.generation {
            return Err("the plan's totals are still being computed".into());
        }
        let mut plan = self.plan.clone();
        plan.created_at = crate::provenance::now_rfc3339();
        plan.write(path).map_err(|e| e.to_string())?;
        self.paths.plan = Some(path.to_path_buf());
        self.saved = self.plan.layers.clone();
        Ok(())
    }

    /// Takes a point streamed by a running analysis of this project's run.
    pub fn add_point(&mut self, point: crate::sensitivity::PointRecord) {
        if let Some(run) = &mut self.run {
            run.points.retain(|p| !(p.layer == point.layer && p.sparsity == point.sparsity));
            run.points.push(point);
        }
        self.refresh_curves();
    }

    /// Sets the baseline streamed by a running analysis.
    pub fn set_baseline(&mut self, metrics: crate::sensitivity::Metrics, seconds: f64) {
        if let Some(run) = &mut self.run {
            run.baseline = Some((metrics, seconds));
        }
        self.refresh_curves();
    }

    fn refresh_curves(&mut self) {
        let Some(run) = &self.run else { return };
        if run.baseline.is_none() {
            return;
        }
        if let Ok(c) = Curves::of(run, self.plan.metric) {
            self.curves = Some(c);
            self.changed();
        }
    }
}

/// Whether two references name the same run: the same folder, or (a moved copy) the same
/// creation time and dataset.
fn same_run(a: &RunRef, b: &RunRef) -> bool {
    crate::fsio::same_path(&a.path, &b.path) || (a.created_at == b.created_at && a.dataset.sha256 == b.dataset.sha256)
}
