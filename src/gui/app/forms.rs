//! What the forms and tables of the explorer hold between frames, and the file dialogs
//! they open.

use crate::gui::state::{Project, ProjectPaths};
use crate::gui::worker::CompareOutcome;
use crate::plan::ExportFormat;
use crate::plan::{Budget, Resource, Rule};
use crate::sensitivity::{AnalysisConfig, Metric};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// The views of the central area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Tab {
    #[default]
    Sensitivity,
    Layers,
    Analysis,
    Compare,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Sensitivity, Tab::Layers, Tab::Analysis, Tab::Compare];
    pub fn label(self) -> &'static str {
        match self {
            Tab::Sensitivity => "Sensitivity",
            Tab::Layers => "Layers",
            Tab::Analysis => "Analysis",
            Tab::Compare => "Prune & compare",
        }
    }
}

/// The settings of `prunescope analyze`, as the form edits them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnalysisForm {
    pub data: String,
    pub out: String,
    pub method: crate::prune::Method,
    /// Percentages, comma-separated.
    pub sparsities: String,
    /// Layer names or patterns, comma-separated; empty: every prunable layer.
    pub layers: String,
    pub include_heads: bool,
    pub metric: Metric,
    pub workers: usize,
    pub device: String,
    pub limit: usize,
    pub batch: usize,
}

impl Default for AnalysisForm {
    /// The engine's defaults (`AnalysisConfig::default()`, which `prunescope analyze` uses too).
    fn default() -> Self {
        let d = AnalysisConfig::default();
        AnalysisForm {
            data: String::new(),
            out: String::new(),
            method: d.method,
            sparsities: d.sparsities.iter().map(|s| format!("{}", (s * 100.0).round())).collect::<Vec<_>>().join(", "),
            layers: d.layers.join(", "),
            include_heads: d.include_heads,
            metric: d.metric,
            workers: d.workers,
            device: d.device,
            limit: d.limit.unwrap_or(0),
            batch: d.batch,
        }
    }
}

impl AnalysisForm {
    /// The engine's configuration, or what is wrong with a field.
    pub fn config(&self, project: &Project, resume: bool) -> Result<AnalysisConfig, String> {
        self.config_for(&project.paths.cfg, &project.paths.weights, resume)
    }

    /// The engine's configuration for a model; what the form does not set is the engine's default.
    pub fn config_for(&self, cfg: &Path, weights: &Path, resume: bool) -> Result<AnalysisConfig, String> {
        let sparsities = crate::quantity::percent_list(&self.sparsities).map_err(|e| format!("Sparsities: {e}"))?;
        if self.data.trim().is_empty() {
            return Err("Dataset: choose a data.yaml or an image folder".into());
        }
        if self.out.trim().is_empty() {
            return Err("Run folder: choose where the run is written".into());
        }
        let model = match crate::model::ModelFiles::of_paths(cfg, weights) {
            crate::model::ModelFiles::Onnx { path, .. } => Some(path),
            crate::model::ModelFiles::Darknet { .. } => None,
        };
        Ok(AnalysisConfig {
            cfg: cfg.to_path_buf(),
            weights: weights.to_path_buf(),
            model,
            data: PathBuf::from(self.data.trim()),
            out: PathBuf::from(self.out.trim()),
            method: self.method,
            sparsities,
            layers: self.layers.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            include_heads: self.include_heads,
            metric: self.metric,
            // 0: the engine decides (one per GPU, else one), as in `prunescope analyze`.
            workers: self.workers,
            device: self.device.clone(),
            limit: (self.limit > 0).then_some(self.limit),
            batch: self.batch.max(1),
            resume,
            ..Default::default()
        })
    }
}

/// Progress of a running (or the last) analysis.
#[derive(Debug, Default)]
pub struct AnalysisStatus {
    pub running: bool,
    pub cancel: Arc<AtomicBool>,
    pub done: usize,
    pub total: usize,
    pub images_per_s: f64,
    pub eta_s: Option<f64>,
    pub log: Vec<String>,
    pub started: Option<Instant>,
    /// The checkpoint analysed and the run folder it writes: events apply to the open
    /// project only while it is that project.
    pub weights: PathBuf,
    pub run_dir: Option<PathBuf>,
    /// What the run streamed so far, replayed into the project when the run is opened while
    /// it is being written.
    pub baseline: Option<(crate::sensitivity::Metrics, f64)>,
    pub points: Vec<crate::sensitivity::PointRecord>,
}

/// Suggest settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SuggestForm {
    pub global: bool,
    /// Per-layer budget, in metric points (absolute) or percent of the baseline.
    pub budget: f64,
    pub budget_relative: bool,
    /// Global target, percent.
    pub target: f64,
    pub resource: Resource,
}

impl Default for SuggestForm {
    fn default() -> Self {
        SuggestForm { global: false, budget: 1.0, budget_relative: false, target: 30.0, resource: Resource::Macs }
    }
}

impl SuggestForm {
    pub fn rule(&self) -> Rule {
        if self.global {
            Rule::Global { resource: self.resource, fraction: self.target / 100.0 }
        } else if self.budget_relative {
            Rule::PerLayer(Budget::Relative(self.budget / 100.0))
        } else {
            Rule::PerLayer(Budget::Absolute(self.budget / 100.0))
        }
    }
}

/// Prune & compare settings and the last result.
#[derive(Default)]
pub struct CompareState {
    pub data: String,
    /// Report folder; empty: a new folder under the user's cache.
    pub out: String,
    /// A further checkpoint to compare (e.g. the pruned one after fine-tuning); optional.
    pub also: String,
    pub limit: usize,
    pub latency_runs: usize,
    pub device: String,
    pub running: bool,
    pub stage: String,
    pub done: usize,
    pub total: usize,
    pub outcome: Option<CompareOutcome>,
}

/// Which column the layer table is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SortBy {
    #[default]
    Block,
    Params,
    Macs,
    Sparsity,
    Drop,
}

/// Layer table settings (and how the large sensitivity plot scales its y axis).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TableState {
    pub sort: SortBy,
    pub descending: bool,
    pub filter: String,
    /// The bar chart shows parameters instead of MACs.
    pub params_chart: bool,
    pub y_axis: YAxis,
}

/// The y range of the large sensitivity plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum YAxis {
    /// The range of every analysed layer (as the grid), so layers compare at a glance.
    #[default]
    Shared,
    /// This layer's points, but never narrower than a few points of the metric: run-to-run
    /// noise of ±0.002 must not look like a cliff.
    Fit,
    /// From zero to the baseline.
    Zero,
}

impl YAxis {
    pub const ALL: [YAxis; 3] = [YAxis::Shared, YAxis::Fit, YAxis::Zero];
    pub fn label(self) -> &'static str {
        match self {
            YAxis::Shared => "shared",
            YAxis::Fit => "this layer",
            YAxis::Zero => "from 0",
        }
    }
}

/// What a file dialog was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Folder,
    Cfg,
    Weights,
    Data,
    Run,
    Plan,
    /// A plan for the Open window's field.
    OpenPlan,
    SavePlan,
    Export(ExportFormat),
    AnalysisData,
    AnalysisOut,
    CompareData,
    CompareAlso,
    ExportCheckpoint,
    ExportReport,
}

/// The paths typed in the Open window.
#[derive(Debug, Clone, Default)]
pub struct OpenForm {
    pub visible: bool,
    pub cfg: String,
    pub weights: String,
    pub data: String,
    pub run: String,
    pub plan: String,
}

impl OpenForm {
    pub fn paths(&self) -> Result<ProjectPaths, String> {
        let opt = |s: &str| (!s.trim().is_empty()).then(|| PathBuf::from(s.trim()));
        let cfg =
            opt(&self.cfg).ok_or("Open: the model field is empty (a Darknet .cfg or an .onnx file is required)")?;
        // An ONNX file holds its weights: the same file under both references.
        let onnx = crate::model::open::is_onnx(&cfg);
        let weights = match opt(&self.weights) {
            _ if onnx => cfg.clone(),
            Some(w) => w,
            None => return Err("Open: the weights field is empty (.weights, .pth or .safetensors is required)".into()),
        };
        Ok(ProjectPaths { cfg, weights, data: opt(&self.data), run: opt(&self.run), plan: opt(&self.plan) })
    }

    pub fn fill(&mut self, p: &ProjectPaths) {
        let s = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        self.cfg = p.cfg.display().to_string();
        self.weights = p.weights.display().to_string();
        self.data = s(&p.data);
        self.run = s(&p.run);
        self.plan = s(&p.plan);
    }
}
