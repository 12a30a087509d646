//! Pruning plans (`prunescope.plan/1`): a sparsity per layer with where it came from, the
//! model it was made for (content hashes), the run it was suggested from and what it is
//! predicted to cost and save. Plans are suggested from runs, edited by hand, applied to
//! checkpoints, and exported for Torch-Pruning, NNI or a spreadsheet.

pub mod suggest;

pub use suggest::{Budget, Curves, LayerCurve, Resource};

use crate::model::effective::{ConvCounts, EffectiveCost, ModelCounts};
use crate::model::{Model, Weights};
use crate::provenance::{DatasetRef, ModelRef};
use crate::prune::{prune_layer, Method, PruneCount};
use crate::sensitivity::store;
use crate::sensitivity::{Metric, StoredRun};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use suggest::Level;

pub const PLAN_FORMAT: &str = "prunescope.plan/1";

/// Where a layer's sparsity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Suggested,
    /// Set by hand.
    Manual,
    /// Held at 0 % by the user.
    Frozen,
}

/// One layer of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanLayer {
    /// `conv_{i}`.
    pub layer: String,
    pub block: usize,
    /// Fraction in [0, 1): of weights (unstructured) or of output filters (filter methods).
    pub sparsity: f64,
    pub origin: Origin,
    /// Metric drop read from the layer's curve at this sparsity (None: no curve, or past
    /// its largest measured sparsity).
    pub predicted_drop: Option<f64>,
}

/// The run a plan was suggested from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRef {
    pub path: PathBuf,
    pub created_at: String,
    pub dataset: DatasetRef,
}

/// What a plan is predicted to give. The metric is an estimate (baseline minus the sum of
/// the layers' drops); params and MACs are exact effective counts of the pruned model
/// (ptflops convention, batch 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Prediction {
    pub baseline: Option<f64>,
    pub metric: Option<f64>,
    pub drop: f64,
    pub params_before: u64,
    pub params_after: u64,
    pub macs_before: u64,
    pub macs_after: u64,
}

impl Prediction {
    pub fn params_reduction(&self) -> f64 {
        1.0 - self.params_after as f64 / self.params_before.max(1) as f64
    }
    pub fn macs_reduction(&self) -> f64 {
        1.0 - self.macs_after as f64 / self.macs_before.max(1) as f64
    }
}

/// A pruning plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    pub model: ModelRef,
    pub img_size: u32,
    /// How pictures became inputs where the plan was measured (absent in plans made before
    /// classifiers: letterbox).
    #[serde(default)]
    pub preprocess: crate::data::preprocess::Preprocess,
    pub method: Method,
    pub metric: Metric,
    pub run: Option<RunRef>,
    /// How the suggestion was made (e.g. `per-layer budget 0.01`), if it was.
    pub rule: Option<String>,
    pub layers: Vec<PlanLayer>,
    pub predicted: Prediction,
    pub created_at: String,
}

/// Why a plan could not be read, made, checked or applied. Each message names the file (or
/// the option) and what was expected; an underlying failure is spelled out in the message and
/// kept as the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Model(#[from] crate::model::ModelError),
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Write(#[from] crate::fsio::IoError),
    /// An output that names one of the inputs.
    #[error("{0}")]
    InputIsOutput(#[from] crate::fsio::InputIsOutput),
    /// An error about the contents of the file or folder `path` (a plan file, a run folder).
    #[error("{}: {source}", path.display())]
    In {
        path: PathBuf,
        #[source]
        source: Box<PlanError>,
    },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    NotUtf8 {
        path: PathBuf,
        #[source]
        source: crate::fsio::NotUtf8,
    },
    #[error("{}: line {}: not JSON: {source}", path.display(), source.line())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {}", path.display(), match found {
        Some(f) => format!("format `{f}` is not supported: expected `{PLAN_FORMAT}`"),
        None => format!("no `format` field: expected \"format\": \"{PLAN_FORMAT}\""),
    })]
    Format { path: PathBuf, found: Option<String> },
    #[error("{}: unexpected content: {source}", path.display())]
    Content {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `layers[index]` of a plan has a sparsity outside [0, 1).
    #[error("layers[{index}] ({layer}): sparsity {sparsity} is outside [0, 1)")]
    LayerSparsity { index: usize, layer: String, sparsity: f64 },
    /// `layers[index]` of a plan names a layer the model has under another index.
    #[error(
        "layers[{index}]: name `{layer}` does not match block {block}: the model calls block {block} `{expected}`"
    )]
    LayerName { index: usize, layer: String, block: usize, expected: String },
    /// `layers[index]` of a plan repeats an earlier layer.
    #[error("layers[{index}]: {layer} appears twice")]
    LayerTwice { index: usize, layer: String },
    /// The plan names a cfg or weights (`what`) of other content (hashes, shortened) than the
    /// model's.
    #[error(
        "the plan was made for {what} ({}, sha256 {plan_sha256}…), not {} (sha256 {model_sha256}…){}",
        plan.display(), model.display(),
        if what.ends_with("weights") { ": suggest a new plan for these weights" } else { "" }
    )]
    OtherModel { what: &'static str, plan: PathBuf, plan_sha256: String, model: PathBuf, model_sha256: String },
    /// A plan layer at a block that is no prunable layer of the model.
    #[error("unknown layer {layer}: {model} has no prunable layer at block {block} (it has {layers})")]
    UnknownLayer { layer: String, model: String, block: usize, layers: String },
    /// A sparsity set by hand outside [0, 1).
    #[error("sparsity {sparsity} is outside [0, 1)")]
    Sparsity { sparsity: f64 },
    /// A layer set by hand that the plan does not list.
    #[error("block {block} is not in the plan")]
    NotInPlan { block: usize },
    /// A run without a baseline has no curves.
    #[error("the run has no baseline yet: it has not started")]
    NoBaseline,
    /// A suggestion from part of the grid would give unmeasured layers 0 % as if suggested.
    #[error(
        "{}: the run is unfinished ({done} of {total} points measured, none for {missing}): finish it with `prunescope analyze … --resume` (or Resume in the explorer), or merge its shards, then suggest",
        path.display()
    )]
    Unfinished { path: PathBuf, done: usize, total: usize, missing: String },
    /// A run whose baseline is no measurement (COCOeval's −1 for "no ground truth").
    #[error(
        "the run's baseline {} is {value}: no valid measurement (no image or no labelled object was evaluated); run the analysis again on a labelled validation set",
        metric.label()
    )]
    InvalidBaseline { metric: Metric, value: f64 },
    /// A point of the run whose metric is no measurement.
    #[error(
        "the run's point {layer} at {:.0}% has {} = {value}: no valid measurement; run the analysis again",
        sparsity * 100.0, metric.label()
    )]
    InvalidPoint { layer: String, sparsity: f64, metric: Metric, value: f64 },
    /// The run was made on another model (content hashes) than the plan's.
    #[error(
        "{}: the run analysed {} + {}, whose content differs from {} + {}",
        run_file.display(), run_cfg.display(), run_weights.display(), cfg.display(), weights.display()
    )]
    RunMismatch { run_file: PathBuf, run_cfg: PathBuf, run_weights: PathBuf, cfg: PathBuf, weights: PathBuf },
    /// `--freeze` names a layer the run did not analyse.
    #[error("--freeze {layer}: not a layer of the run (it has {layers})")]
    FrozenUnknown { layer: String, layers: String },
    /// A global target outside (0, 100) %.
    #[error("target {percent}: expected a reduction between 0 and 100 %")]
    Target { percent: f64 },
    /// A layer of the run that is no convolution of the model.
    #[error("{layer}: no convolution in the model")]
    NotConv { layer: String },
    /// A global target larger than the analysed layers can remove.
    #[error(
        "a {percent:.1}% {resource} reduction cannot be reached by the analysed layers at their measured sparsities (at most {max_percent:.1}%); analyse more layers or higher sparsities"
    )]
    Unreachable { percent: f64, resource: &'static str, max_percent: f64 },
    /// A global target the search did not reach.
    #[error("could not reach a {percent:.1}% {resource} reduction")]
    NotReached { percent: f64, resource: &'static str },
}

impl PlanError {
    /// This error, about the contents of `path` (a plan file, a run folder).
    pub fn in_file(self, path: &Path) -> Self {
        PlanError::In { path: path.to_path_buf(), source: Box::new(self) }
    }
}

fn parent_dir(file: &Path) -> &Path {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Counts of `model`'s layer `id` pruned alone at `sparsity`.
fn pruned_counts(model: &Model, id: usize, method: Method, sparsity: f64) -> Option<ConvCounts> {
    let layer = model.layer_by_id(id)?;
    let mut w = model.weights.of_layer(&layer.keys).ok()?;
    prune_layer(&mut w, &layer.keys, method, sparsity);
    Some(ConvCounts::of(layer, &w))
}

impl Plan {
    /// An empty plan (every layer of `layers` at 0 %) for `model`.
    pub fn new(model: &Model, method: Method, metric: Metric, layers: &[usize]) -> Self {
        Plan {
            format: PLAN_FORMAT.into(),
            model: model.reference.clone(),
            img_size: model.img_size,
            preprocess: crate::data::preprocess::Preprocess::choose(model.is_classifier(), model.by_ultralytics, None),
            method,
            metric,
            run: None,
            rule: None,
            layers: layers
                .iter()
                .filter_map(|&b| model.layer_by_id(b))
                .map(|l| PlanLayer {
                    layer: l.name.clone(),
                    block: l.id,
                    sparsity: 0.0,
                    origin: Origin::Manual,
                    predicted_drop: Some(0.0),
                })
                .collect(),
            predicted: Prediction::default(),
            created_at: crate::provenance::now_rfc3339(),
        }
    }

    /// Reads and checks a plan file (format, values); the model is checked by [`Plan::check`].
    pub fn read(path: &Path) -> Result<Self, PlanError> {
        let p = || path.to_path_buf();
        let bytes = std::fs::read(path).map_err(|source| PlanError::Read { path: p(), source })?;
        let text = crate::fsio::utf8_text(&bytes).map_err(|source| PlanError::NotUtf8 { path: p(), source })?;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|source| PlanError::Json { path: p(), source })?;
        match value.get("format").and_then(|v| v.as_str()) {
            Some(PLAN_FORMAT) => {}
            found => return Err(PlanError::Format { path: p(), found: found.map(String::from) }),
        }
        let mut plan: Plan =
            serde_json::from_value(value).map_err(|source| PlanError::Content { path: p(), source })?;
        plan.check_values().map_err(|e| e.in_file(path))?;
        plan.map_paths(|p| crate::provenance::resolve(parent_dir(path), p));
        Ok(plan)
    }

    /// Writes the plan; the paths it names are stored relative to the plan's folder, so a
    /// plan moved together with its model and run still finds them.
    pub fn write(&self, path: &Path) -> Result<(), PlanError> {
        let mut stored = self.clone();
        stored.map_paths(|p| crate::provenance::relative_to(parent_dir(path), p));
        let text = serde_json::to_string_pretty(&stored)
            .map_err(|source| PlanError::Content { path: path.to_path_buf(), source })?;
        Ok(crate::fsio::write_atomic(path, text + "\n")?)
    }

    fn map_paths(&mut self, f: impl Fn(&Path) -> PathBuf) {
        self.model.cfg.path = f(&self.model.cfg.path);
        self.model.weights.path = f(&self.model.weights.path);
        if let Some(r) = &mut self.run {
            r.path = f(&r.path);
            r.dataset.path = f(&r.dataset.path);
        }
    }

    /// Sparsities in [0, 1), no layer twice.
    pub fn check_values(&self) -> Result<(), PlanError> {
        for (index, l) in self.layers.iter().enumerate() {
            let layer = || l.layer.clone();
            if !(l.sparsity >= 0.0 && l.sparsity < 1.0) {
                return Err(PlanError::LayerSparsity { index, layer: layer(), sparsity: l.sparsity });
            }
            if self.layers[..index].iter().any(|o| o.block == l.block) {
                return Err(PlanError::LayerTwice { index, layer: layer() });
            }
        }
        Ok(())
    }

    /// Refuses a plan made for another model (content hashes) or naming layers the model
    /// cannot prune (or under another index).
    /// The error names no file: callers say which plan it is ([`PlanError::in_file`]).
    pub fn check(&self, model: &Model) -> Result<(), PlanError> {
        self.check_values()?;
        let short = |h: &str| h[..12.min(h.len())].to_string();
        let (mine, theirs) = (&self.model, &model.reference);
        for (what, a, b) in [("another cfg", &mine.cfg, &theirs.cfg), ("other weights", &mine.weights, &theirs.weights)]
        {
            if a.sha256 != b.sha256 {
                return Err(PlanError::OtherModel {
                    what,
                    plan: a.path.clone(),
                    plan_sha256: short(&a.sha256),
                    model: b.path.clone(),
                    model_sha256: short(&b.sha256),
                });
            }
        }
        for (index, l) in self.layers.iter().enumerate() {
            match model.layer_by_id(l.block) {
                None => {
                    return Err(PlanError::UnknownLayer {
                        layer: l.layer.clone(),
                        model: model.path().display().to_string(),
                        block: l.block,
                        layers: model.layer_summary(),
                    })
                }
                Some(m) if m.name != l.layer => {
                    return Err(PlanError::LayerName {
                        index,
                        layer: l.layer.clone(),
                        block: l.block,
                        expected: m.name.clone(),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The sparsity of `block` (0 when the plan does not list it).
    pub fn sparsity_of(&self, block: usize) -> f64 {
        self.layers.iter().find(|l| l.block == block).map(|l| l.sparsity).unwrap_or(0.0)
    }

    /// Sets one layer by hand (0 ≤ s < 1), refreshing its predicted drop from `curves`.
    pub fn set(&mut self, block: usize, sparsity: f64, curves: Option<&Curves>) -> Result<(), PlanError> {
        if !(0.0..1.0).contains(&sparsity) {
            return Err(PlanError::Sparsity { sparsity });
        }
        let l = self.layers.iter_mut().find(|l| l.block == block).ok_or(PlanError::NotInPlan { block })?;
        l.sparsity = sparsity;
        l.origin = Origin::Manual;
        l.predicted_drop = drop_of(curves, &l.layer, sparsity);
        Ok(())
    }

    /// Recomputes the prediction (exact effective cost, estimated metric).
    pub fn refresh_prediction(&mut self, model: &Model, curves: Option<&Curves>) {
        for l in &mut self.layers {
            l.predicted_drop = drop_of(curves, &l.layer, l.sparsity);
        }
        let mut w = model.weights.clone();
        self.apply(&mut w, model);
        let before = ModelCounts::of(model, &model.weights).effective(model, &[]);
        let after = ModelCounts::of(model, &w).effective(model, &[]);
        let drop: f64 = self.layers.iter().filter_map(|l| l.predicted_drop).sum();
        let baseline = curves.map(|c| c.baseline);
        self.predicted = Prediction {
            baseline,
            metric: baseline.map(|b| b - drop),
            drop,
            params_before: before.total().params,
            params_after: after.total().params,
            macs_before: before.total().macs,
            macs_after: after.total().macs,
        };
    }

    /// Prunes `weights` (the model's, or a copy) in place, layer by layer in plan order.
    pub fn apply(&self, weights: &mut Weights, model: &Model) -> Vec<(String, PruneCount)> {
        let mut out = Vec::new();
        for l in &self.layers {
            if l.sparsity <= 0.0 {
                continue;
            }
            if let Some(layer) = model.layer_by_id(l.block) {
                out.push((l.layer.clone(), prune_layer(weights, &layer.keys, self.method, l.sparsity)));
            }
        }
        out
    }

    /// The plan in one of the export formats, as the file holds it.
    pub fn export(&self, format: ExportFormat) -> String {
        let json = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
        match format {
            ExportFormat::Csv => self.to_csv(),
            ExportFormat::TorchPruning => json(self.to_torch_pruning()),
            ExportFormat::Nni => json(self.to_nni()),
        }
    }

    /// Prunes a copy of `model`'s weights with the plan and saves the model to `out` (its
    /// format checked before any work); returns what each layer lost and the non-zero
    /// parameters left.
    pub fn prune_into(&self, model: &Model, out: &Path) -> Result<(Vec<(String, PruneCount)>, usize), PlanError> {
        model.check_output(out)?;
        crate::fsio::refuse_input_as_output(out, &model.inputs())?;
        let mut w = model.weights.clone();
        let counts = self.apply(&mut w, model);
        model.save(&w, out)?;
        Ok((counts, w.count_nonzero()))
    }

    /// The plan as CSV: `layer,module,sparsity,origin,predicted_drop`.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("layer,module,sparsity,origin,predicted_drop\n");
        for l in &self.layers {
            let origin =
                serde_json::to_value(l.origin).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            let drop = l.predicted_drop.map(|d| d.to_string()).unwrap_or_default();
            let _ = writeln!(s, "{},{},{},{origin},{drop}", l.layer, module_name(&l.layer), l.sparsity);
        }
        s
    }

    /// Torch-Pruning: `pruning_ratio_dict` keyed by PyTorch-YOLOv3 module names (look each
    /// up with `model.get_submodule(name)`), with the importance the plan was made with.
    pub fn to_torch_pruning(&self) -> serde_json::Value {
        let ratios: serde_json::Map<String, serde_json::Value> =
            self.pruned().map(|l| (module_name(&l.layer), l.sparsity.into())).collect();
        serde_json::json!({
            "pruning_ratio_dict": ratios,
            "importance": match self.method { Method::L1 | Method::L1Filter => "MagnitudeImportance(p=1)", Method::L2Filter => "MagnitudeImportance(p=2)" },
            "structured": self.method.is_structured(),
            "global_pruning": false,
            "source": format!("prunescope plan, {} pruning of {}", self.method, self.model.cfg.path.display()),
        })
    }

    /// NNI 3.x `config_list`: one entry per pruned layer (`op_names`, `sparse_ratio`;
    /// filter methods prune output channels, NNI's default granularity for norm pruners).
    pub fn to_nni(&self) -> serde_json::Value {
        let list: Vec<serde_json::Value> = self
            .pruned()
            .map(|l| {
                let mut e = serde_json::json!({
                    "op_names": [module_name(&l.layer)],
                    "op_types": ["Conv2d"],
                    "sparse_ratio": l.sparsity,
                });
                if self.method.is_structured() {
                    e["granularity"] = "out_channel".into();
                }
                e
            })
            .collect();
        serde_json::Value::Array(list)
    }

    fn pruned(&self) -> impl Iterator<Item = &PlanLayer> {
        self.layers.iter().filter(|l| l.sparsity > 0.0)
    }
}

/// The files a plan exports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A spreadsheet: layer, module, sparsity, origin, predicted drop.
    Csv,
    /// Torch-Pruning's `pruning_ratio_dict`.
    TorchPruning,
    /// NNI's `config_list`.
    Nni,
}

impl crate::quantity::Named for ExportFormat {
    const ALL: &'static [Self] = &[ExportFormat::Csv, ExportFormat::TorchPruning, ExportFormat::Nni];
    fn name(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::TorchPruning => "torch-pruning",
            ExportFormat::Nni => "nni",
        }
    }
}

/// The PyTorch module a layer came from: PyTorch-YOLOv3's `module_list.{i}.conv_{i}` for a
/// Darknet `conv_{i}`; for an ONNX node torch named by its scope
/// (`/model.22/cv2.0/cv2.0.0/conv/Conv`) the module path `model.22.cv2.0.0.conv` (a scope
/// that extends the one before it, `cv2.0` → `cv2.0.0`, replaces it); any other name as is.
pub fn module_name(layer: &str) -> String {
    if let Some(i) = suggest::block_of(layer) {
        return format!("module_list.{i}.conv_{i}");
    }
    let Some(scope) = layer.strip_prefix('/') else { return layer.to_string() };
    let mut parts: Vec<&str> = scope.split('/').collect();
    parts.pop(); // the operator ("Conv")
    let mut path: Vec<&str> = Vec::new();
    for p in parts {
        match path.last_mut() {
            Some(last) if p.starts_with(&format!("{last}.")) => *last = p,
            _ => path.push(p),
        }
    }
    if path.is_empty() {
        layer.to_string()
    } else {
        path.join(".")
    }
}

/// The drop `curves` predict for `layer` at `s` (0 for an unpruned layer they do not cover).
pub(crate) fn drop_of(curves: Option<&Curves>, layer: &str, s: f64) -> Option<f64> {
    let c = curves?;
    match c.index_of(layer) {
        Some(i) => c.drop_at(i, s),
        None if s == 0.0 => Some(0.0),
        None => None,
    }
}

/// How to suggest thresholds.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Each layer: the largest sparsity within the budget.
    PerLayer(Budget),
    /// The whole model: remove at least `fraction` of its MACs or parameters with the least
    /// predicted loss.
    Global { resource: Resource, fraction: f64 },
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::PerLayer(Budget::Absolute(a)) => write!(f, "per-layer budget: drop ≤ {a}"),
            Rule::PerLayer(Budget::Relative(r)) => write!(f, "per-layer budget: drop ≤ {}% of baseline", r * 100.0),
            Rule::Global { resource, fraction } => {
                write!(
                    f,
                    "global: −{}% {} with the least predicted loss (exact knapsack)",
                    fraction * 100.0,
                    resource.label()
                )
            }
        }
    }
}

/// Checks that `run` was made on `model` (same cfg and weights content).
pub fn check_run(run: &StoredRun, model: &Model, run_dir: &Path) -> Result<(), PlanError> {
    let h = &run.header.model;
    if h.cfg.sha256 != model.reference.cfg.sha256 || h.weights.sha256 != model.reference.weights.sha256 {
        return Err(PlanError::RunMismatch {
            run_file: run_dir.join(store::RUN_FILE),
            run_cfg: h.cfg.path.clone(),
            run_weights: h.weights.path.clone(),
            cfg: model.reference.cfg.path.clone(),
            weights: model.reference.weights.path.clone(),
        });
    }
    Ok(())
}

/// Refuses a run whose grid (layers × sparsities) is not fully measured.
fn check_finished(run: &StoredRun, run_dir: &Path) -> Result<(), PlanError> {
    let h = &run.header;
    let total = h.layers.len() * h.sparsities.len();
    let measured = |l: &String, s: f64| run.points.iter().any(|p| &p.layer == l && (p.sparsity - s).abs() < 1e-9);
    let done = h.layers.iter().map(|l| h.sparsities.iter().filter(|&&s| measured(l, s)).count()).sum::<usize>();
    if done == total {
        return Ok(());
    }
    let missing: Vec<&str> =
        h.layers.iter().filter(|l| !h.sparsities.iter().any(|&s| measured(l, s))).map(String::as_str).collect();
    let missing = match missing.len() {
        0 => "some sparsities of some layers".to_string(),
        n if n > 6 => format!("{} and {} more layers", missing[..6].join(", "), n - 6),
        _ => missing.join(", "),
    };
    Err(PlanError::Unfinished { path: run_dir.join(store::RUN_FILE), done, total, missing })
}

/// Suggests a plan from a finished run. Layers in `frozen` stay at 0 %.
pub fn suggest(
    run: &StoredRun,
    run_dir: &Path,
    model: &Model,
    rule: &Rule,
    metric: Metric,
    frozen: &[String],
) -> Result<Plan, PlanError> {
    check_run(run, model, run_dir)?;
    check_finished(run, run_dir)?;
    let curves = Curves::of(run, metric).map_err(|e| e.in_file(run_dir))?;
    for f in frozen {
        if curves.index_of(f).is_none() {
            return Err(PlanError::FrozenUnknown { layer: f.clone(), layers: run.header.layers.join(", ") });
        }
    }
    let is_frozen = |name: &str| frozen.iter().any(|f| f == name);
    let mut plan =
        Plan::new(model, run.header.method, metric, &curves.layers.iter().map(|l| l.block).collect::<Vec<_>>());
    plan.run = Some(RunRef {
        path: run_dir.to_path_buf(),
        created_at: run.header.created_at.clone(),
        dataset: run.header.dataset.clone(),
    });
    plan.rule = Some(rule.to_string());
    plan.img_size = run.header.eval.img_size;
    plan.preprocess = run.header.eval.preprocess;
    let sparsities: Vec<f64> =
        match rule {
            Rule::PerLayer(budget) => {
                let allowed = budget.allowed(curves.baseline);
                (0..curves.layers.len())
                    .map(|i| {
                        if is_frozen(&curves.layers[i].layer) {
                            0.0
                        } else {
                            suggest::within_budget(&curves, i, allowed)
                        }
                    })
                    .collect()
            }
            Rule::Global { resource, fraction } => {
                global(&curves, model, run.header.method, *resource, *fraction, &is_frozen)?
            }
        };
    for (l, s) in plan.layers.iter_mut().zip(sparsities) {
        l.sparsity = s;
        l.origin = if is_frozen(&l.layer) { Origin::Frozen } else { Origin::Suggested };
    }
    plan.refresh_prediction(model, Some(&curves));
    Ok(plan)
}

fn global(
    curves: &Curves,
    model: &Model,
    method: Method,
    resource: Resource,
    fraction: f64,
    is_frozen: &dyn Fn(&str) -> bool,
) -> Result<Vec<f64>, PlanError> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(PlanError::Target { percent: fraction * 100.0 });
    }
    let counts = ModelCounts::of(model, &model.weights);
    let pick = |c: crate::model::effective::Cost| match resource {
        Resource::Macs => c.macs,
        Resource::Params => c.params,
    };
    let base = pick(counts.effective(model, &[]).total());
    let mut items: Vec<Vec<Level>> = Vec::new();
    for (i, layer) in curves.layers.iter().enumerate() {
        let mut levels = vec![Level { sparsity: 0.0, removed: 0, loss: 0.0 }];
        if !is_frozen(&layer.layer) {
            for &(s, _) in layer.points.iter().skip(1) {
                let pruned = pruned_counts(model, layer.block, method, s)
                    .ok_or_else(|| PlanError::NotConv { layer: layer.layer.clone() })?;
                let after = pick(counts.effective(model, &[(layer.block, &pruned)]).total());
                let loss = curves.drop_at(i, s).unwrap_or(f64::INFINITY);
                levels.push(Level { sparsity: s, removed: base.saturating_sub(after), loss });
            }
        }
        items.push(levels);
    }
    let goal = (fraction * base as f64).ceil() as u64;
    // Pruning two connected layers removes some weights twice over (a filter of one and
    // the input channel of the next), so the sum over layers can overstate the total:
    // check the real total and ask for the shortfall again.
    let mut need = goal;
    for _ in 0..8 {
        let (choice, _) = suggest::knapsack(&items, need, 20_000).ok_or_else(|| {
            let max: u64 = items.iter().map(|l| l.iter().map(|x| x.removed).max().unwrap_or(0)).sum();
            PlanError::Unreachable {
                percent: fraction * 100.0,
                resource: resource.label(),
                max_percent: 100.0 * max as f64 / base.max(1) as f64,
            }
        })?;
        let sparsities: Vec<f64> = choice.iter().zip(&items).map(|(&k, l)| l[k].sparsity).collect();
        let mut w = model.weights.clone();
        for (layer, &s) in curves.layers.iter().zip(&sparsities) {
            if s > 0.0 {
                if let Some(l) = model.layer_by_id(layer.block) {
                    prune_layer(&mut w, &l.keys, method, s);
                }
            }
        }
        let after = pick(ModelCounts::of(model, &w).effective(model, &[]).total());
        let removed = base.saturating_sub(after);
        if removed >= goal {
            return Ok(sparsities);
        }
        need += goal - removed;
    }
    Err(PlanError::NotReached { percent: fraction * 100.0, resource: resource.label() })
}

/// Fast plan predictions for interactive editing: the counts of each (layer, sparsity) are
/// computed once and reused, so moving one threshold costs one effective-cost pass instead
/// of copying and pruning the whole checkpoint. Gives the same figures as
/// [`Plan::refresh_prediction`] (layers are pruned independently of each other).
#[derive(Debug, Clone)]
pub struct PlanCoster {
    method: Method,
    counts: ModelCounts,
    before: EffectiveCost,
    pruned: std::collections::HashMap<(usize, u64), ConvCounts>,
}

impl PlanCoster {
    pub fn new(model: &Model, method: Method) -> Self {
        let counts = ModelCounts::of(model, &model.weights);
        let before = counts.effective(model, &[]);
        PlanCoster { method, counts, before, pruned: Default::default() }
    }

    /// The prediction for `plan` and the effective cost per block after it.
    pub fn predict(&mut self, model: &Model, plan: &Plan, curves: Option<&Curves>) -> (Prediction, EffectiveCost) {
        for l in plan.layers.iter().filter(|l| l.sparsity > 0.0) {
            let key = (l.block, l.sparsity.to_bits());
            if !self.pruned.contains_key(&key) {
                if let Some(c) = pruned_counts(model, l.block, self.method, l.sparsity) {
                    self.pruned.insert(key, c);
                }
            }
        }
        let replace: Vec<(usize, &ConvCounts)> = plan
            .layers
            .iter()
            .filter(|l| l.sparsity > 0.0)
            .filter_map(|l| self.pruned.get(&(l.block, l.sparsity.to_bits())).map(|c| (l.block, c)))
            .collect();
        let after = self.counts.effective(model, &replace);
        let drop: f64 = plan.layers.iter().filter_map(|l| drop_of(curves, &l.layer, l.sparsity)).sum();
        let baseline = curves.map(|c| c.baseline);
        let (b, a) = (self.before.total(), after.total());
        let prediction = Prediction {
            baseline,
            metric: baseline.map(|b| b - drop),
            drop,
            params_before: b.params,
            params_after: a.params,
            macs_before: b.macs,
            macs_after: a.macs,
        };
        (prediction, after)
    }
}
