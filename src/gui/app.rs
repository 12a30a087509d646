//! The application: state that outlives a frame, the handling of worker messages and of
//! user actions. Drawing lives in `views/`; this file decides what happens.

use super::state::{Project, ProjectPaths};
use super::views;
use super::worker::{Bridge, CompareJob, CompareOutcome, Job, Msg};
use crate::plan::ExportFormat;
use crate::prune::stats::LayerStats;
use crate::plan::{Budget, Resource, Rule};
use crate::sensitivity::{AnalysisConfig, Event, Metric};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
        Ok(AnalysisConfig {
            cfg: cfg.to_path_buf(),
            weights: weights.to_path_buf(),
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

/// Layer table settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableState {
    pub sort: SortBy,
    pub descending: bool,
    pub filter: String,
    /// The bar chart shows parameters instead of MACs.
    pub params_chart: bool,
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

/// What survives a restart (eframe storage).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Persisted {
    pub project: Option<ProjectPaths>,
    pub recent: Vec<ProjectPaths>,
    pub tab: Tab,
    pub thresholds: Vec<(String, f64)>,
    pub frozen: Vec<String>,
    pub selected: usize,
    pub analysis: Option<AnalysisForm>,
    pub suggest: Option<SuggestForm>,
    pub table: TableState,
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
        let cfg = opt(&self.cfg).ok_or("Open: the cfg field is empty (a Darknet .cfg file is required)")?;
        let weights = opt(&self.weights)
            .ok_or("Open: the weights field is empty (.weights, .pth or .safetensors is required)")?;
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

/// The explorer.
pub struct App {
    pub bridge: Bridge,
    pub project: Option<Project>,
    pub loading: Option<ProjectPaths>,
    pub tab: Tab,
    /// Index into the curves' layers.
    pub selected: usize,
    pub errors: Vec<String>,
    pub notice: Option<String>,
    pub recent: Vec<ProjectPaths>,
    pub open: OpenForm,
    pub analysis_form: AnalysisForm,
    pub analysis: AnalysisStatus,
    pub suggest: SuggestForm,
    pub suggesting: bool,
    /// Where Save writes the plan (and Load reads it); exports go beside it.
    pub plan_file: String,
    pub compare: CompareState,
    pub table: TableState,
    pub stats: Option<LayerStats>,
    pub stats_pending: Option<usize>,
    /// The plan before the threshold drag in progress (one undo step for the whole drag).
    pub drag_before: Option<Vec<crate::plan::PlanLayer>>,
    pub requested_generation: u64,
    /// Restored thresholds waiting for their project to load.
    pending_restore: Option<Persisted>,
    /// Grid columns of the last frame (for up/down keys).
    pub grid_columns: usize,
    /// A plan save waiting for the totals of the current plan.
    pending_save: Option<PathBuf>,
    window_title: String,
}

/// The bundled sample experiment, when this build can find it.
pub fn sample_dir() -> Option<PathBuf> {
    let candidates =
        [PathBuf::from("sample_runs/shapes"), Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes")];
    candidates.into_iter().find(|p| p.join("yolov3-tiny-shapes.cfg").is_file())
}

impl App {
    /// A new explorer; `start` opens those files, else the last project (from `persisted`),
    /// else the sample.
    pub fn new(repaint: Option<egui::Context>, persisted: Option<Persisted>, start: Option<ProjectPaths>) -> Self {
        let mut app = App {
            bridge: Bridge::new(repaint),
            project: None,
            loading: None,
            tab: Tab::Sensitivity,
            selected: 0,
            errors: Vec::new(),
            notice: None,
            recent: Vec::new(),
            open: OpenForm::default(),
            analysis_form: AnalysisForm::default(),
            analysis: AnalysisStatus::default(),
            suggest: SuggestForm::default(),
            suggesting: false,
            plan_file: String::new(),
            compare: CompareState { latency_runs: 10, device: "cpu".into(), ..Default::default() },
            table: TableState::default(),
            stats: None,
            stats_pending: None,
            drag_before: None,
            requested_generation: 0,
            pending_restore: None,
            grid_columns: 1,
            pending_save: None,
            window_title: String::new(),
        };
        if let Some(p) = &persisted {
            app.recent = p.recent.clone();
            app.tab = p.tab;
            app.table = p.table.clone();
            if let Some(a) = &p.analysis {
                app.analysis_form = a.clone();
            }
            if let Some(s) = &p.suggest {
                app.suggest = s.clone();
            }
        }
        let target = start.or_else(|| persisted.as_ref().and_then(|p| p.project.clone())).or_else(|| {
            sample_dir().and_then(|d| match ProjectPaths::discover(&d) {
                Ok(p) => Some(p),
                Err(e) => {
                    app.errors.push(e);
                    None
                }
            })
        });
        if let Some(paths) = target {
            if persisted.as_ref().and_then(|p| p.project.as_ref()).is_some_and(|p| p.same_files(&paths)) {
                app.pending_restore = persisted;
            }
            app.open_project(paths);
        } else {
            app.open.visible = true;
        }
        app
    }

    /// What to persist now.
    pub fn persisted(&self) -> Persisted {
        let (thresholds, frozen) = match &self.project {
            Some(p) => (p.plan.layers.iter().map(|l| (l.layer.clone(), l.sparsity)).collect(), p.frozen()),
            None => (Vec::new(), Vec::new()),
        };
        Persisted {
            // Absolute, so that a start from another folder finds the files again.
            project: self.project.as_ref().map(|p| &p.paths).or(self.loading.as_ref()).map(ProjectPaths::absolute),
            recent: self.recent.iter().map(ProjectPaths::absolute).collect(),
            tab: self.tab,
            thresholds,
            frozen,
            selected: self.selected,
            analysis: Some(self.analysis_form.clone()),
            suggest: Some(self.suggest.clone()),
            table: self.table.clone(),
        }
    }

    pub fn open_project(&mut self, paths: ProjectPaths) {
        self.notice = Some(format!("opening {} …", paths.title()));
        self.loading = Some(paths.clone());
        self.bridge.load(paths);
    }

    pub fn open_folder(&mut self, dir: &Path) {
        match ProjectPaths::discover(dir) {
            Ok(p) => self.open_project(p),
            Err(e) => self.errors.push(e),
        }
    }

    pub fn busy(&self) -> bool {
        self.loading.is_some() || self.analysis.running || self.compare.running || self.suggesting
    }

    /// Handles every message the workers sent since the last frame.
    pub fn poll(&mut self) {
        while let Ok(m) = self.bridge.rx.try_recv() {
            self.handle(m);
        }
        self.request_cost_if_stale();
        // The selected layer can change under the UI (a run attached, curves arriving).
        self.request_stats();
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Loaded(Ok(project)) => self.loaded(*project),
            Msg::Loaded(Err(e)) => {
                // The paths go back into the Open window, to be corrected there.
                if let Some(failed) = self.loading.take() {
                    self.open.fill(&failed);
                    self.open.visible = true;
                }
                self.notice = None;
                self.errors.push(e);
            }
            Msg::Analysis(e) => self.analysis_event(e),
            Msg::AnalysisEnded(error) => {
                self.analysis.running = false;
                // The run's error, reported here once (the events carry none).
                if let Some(e) = error {
                    self.analysis.log.push(format!("error: {e}"));
                    self.errors.push(e);
                }
            }
            Msg::Cost { generation, prediction, after } => {
                let mut current = false;
                if let Some(p) = &mut self.project {
                    if generation == p.generation {
                        p.plan.predicted = prediction;
                        p.costed_generation = generation;
                        p.costs_after = Some(after);
                        current = true;
                    } else if p.costs_after.is_none() {
                        p.costs_after = Some(after);
                    }
                }
                if current {
                    if let Some(path) = self.pending_save.take() {
                        self.save_plan(&path);
                    }
                }
            }
            Msg::Suggested(r) => {
                self.suggesting = false;
                match (r, &mut self.project) {
                    // A suggestion for the project that was open when it was asked for.
                    (Ok(plan), Some(p)) if plan.model == p.model.reference => {
                        p.take_layers(&plan);
                        self.notice = Some(format!("suggested: {}", plan.rule.unwrap_or_default()));
                    }
                    (Err(e), _) => self.errors.push(e),
                    _ => {}
                }
            }
            Msg::CompareProgress(stage, done, total) => {
                self.compare.stage = stage;
                self.compare.done = done;
                self.compare.total = total;
            }
            Msg::Compared(r) => {
                self.compare.running = false;
                match r {
                    Ok(o) => {
                        self.notice = Some(format!("pruned and compared into {}", o.dir.display()));
                        self.compare.outcome = Some(*o);
                    }
                    Err(e) => self.errors.push(e),
                }
            }
            Msg::LayerStats(weights, r) => match r {
                // Statistics of a project closed meanwhile are dropped.
                _ if self.project.as_ref().is_none_or(|p| p.paths.weights != weights) => {}
                Ok(s) => {
                    if self.stats_pending == Some(s.block) {
                        self.stats_pending = None;
                    }
                    self.stats = Some(*s);
                }
                Err(e) => {
                    self.stats_pending = None;
                    self.errors.push(e)
                }
            },
            Msg::Picked(pick, path) => self.picked(pick, path),
            Msg::Notice(n) => self.notice = Some(n),
            Msg::Failed(job, e) => {
                self.errors.push(e);
                match job {
                    Job::Analysis => self.analysis.running = false,
                    Job::Compare => self.compare.running = false,
                    Job::Suggest => self.suggesting = false,
                    Job::Load => self.loading = None,
                    Job::LayerStats => self.stats_pending = None,
                    Job::PlanCost | Job::Dialog | Job::Export => {}
                }
            }
        }
    }

    /// Shows a loaded project (what a finished load job does).
    pub fn loaded(&mut self, mut project: Project) {
        self.loading = None;
        self.notice = Some(format!("opened {}", project.paths.title()));
        if let Some(r) = self.pending_restore.take() {
            if r.project.as_ref().is_some_and(|p| p.same_files(&project.paths)) && !r.thresholds.is_empty() {
                project.restore(&r.thresholds, &r.frozen);
                self.selected = r.selected;
            }
        }
        self.recent.retain(|p| !p.same_files(&project.paths));
        self.recent.insert(0, project.paths.clone());
        self.recent.truncate(10);
        self.open.fill(&project.paths);
        self.plan_file = match &project.paths.plan {
            Some(p) => p.display().to_string(),
            None => project.paths.cfg.parent().unwrap_or(Path::new(".")).join("plans/plan.json").display().to_string(),
        };
        if let Some(d) = &project.paths.data {
            self.analysis_form.data = d.display().to_string();
            self.compare.data = d.display().to_string();
        } else if let Some(r) = &project.run {
            self.compare.data = r.header.dataset.path.display().to_string();
        }
        if let Some(r) = &project.run {
            self.analysis_form.method = r.header.method;
            self.analysis_form.metric = r.header.metric;
            self.analysis_form.sparsities = r
                .header
                .sparsities
                .iter()
                .map(|s| format!("{}", (s * 100.0 * 10.0).round() / 10.0))
                .collect::<Vec<_>>()
                .join(", ");
            self.analysis_form.layers = r.header.layers.join(", ");
        }
        if let Some(r) = &project.paths.run {
            self.analysis_form.out = r.display().to_string();
        } else if self.analysis_form.out.is_empty() {
            let dir = project.paths.cfg.parent().unwrap_or(Path::new("."));
            self.analysis_form.out = dir.join("sensitivity").display().to_string();
        }
        self.bridge.start_cost_worker(project.model.clone(), project.plan.method);
        self.requested_generation = 0;
        self.compare.outcome = None;
        self.pending_save = None;
        self.stats = None;
        self.project = Some(project);
        let n = self.layer_count();
        self.selected = self.selected.min(n.saturating_sub(1));
        self.request_stats();
    }

    /// Number of analysed layers (plots in the grid).
    pub fn layer_count(&self) -> usize {
        self.project.as_ref().and_then(|p| p.curves.as_ref()).map(|c| c.layers.len()).unwrap_or(0)
    }

    /// Block of the selected layer.
    pub fn selected_block(&self) -> Option<usize> {
        self.project.as_ref()?.curves.as_ref()?.layers.get(self.selected).map(|l| l.block)
    }

    pub fn select(&mut self, i: usize) {
        let n = self.layer_count();
        if n == 0 {
            return;
        }
        let i = i.min(n - 1);
        if i != self.selected {
            self.selected = i;
            self.request_stats();
        }
    }

    fn request_stats(&mut self) {
        let Some(b) = self.selected_block() else { return };
        if self.stats.as_ref().map(|s| s.block) == Some(b) || self.stats_pending == Some(b) {
            return;
        }
        self.stats_pending = Some(b);
        if let Some(p) = &self.project {
            self.bridge.layer_stats(p, b);
        }
    }

    fn request_cost_if_stale(&mut self) {
        let Some(p) = &self.project else { return };
        if p.generation != self.requested_generation {
            self.requested_generation = p.generation;
            self.bridge.request_cost(p.generation, &p.plan, p.curves.as_ref());
        }
    }

    /// Whether the totals shown are those of the current plan.
    pub fn totals_current(&self) -> bool {
        self.project.as_ref().is_some_and(|p| p.costed_generation == p.generation)
    }

    /// Moves the selected layer's threshold by `steps` percent (or to the next measured point).
    pub fn nudge(&mut self, steps: i32, to_measured: bool) {
        let Some(b) = self.selected_block() else { return };
        let sel = self.selected;
        let Some(p) = &mut self.project else { return };
        let s = p.sparsity(b);
        let target = if to_measured {
            let pts: Vec<f64> =
                p.curves.as_ref().map(|c| c.layers[sel].points.iter().map(|x| x.0).collect()).unwrap_or_default();
            if steps > 0 {
                pts.iter().copied().find(|x| *x > s + 1e-9)
            } else {
                pts.iter().rev().copied().find(|x| *x < s - 1e-9)
            }
        } else {
            Some(((s * 100.0).round() + steps as f64) / 100.0)
        };
        if let Some(t) = target {
            p.edit_sparsity(b, t);
        }
    }

    pub fn undo(&mut self) {
        if let Some(p) = &mut self.project {
            if !p.undo() {
                self.notice = Some("nothing to undo".into());
            }
        }
    }

    pub fn redo(&mut self) {
        if let Some(p) = &mut self.project {
            if !p.redo() {
                self.notice = Some("nothing to redo".into());
            }
        }
    }

    /// Every layer back to 0 % (frozen layers stay frozen); one undo step.
    pub fn clear_plan(&mut self) {
        if let Some(p) = &mut self.project {
            let before = p.snapshot();
            let blocks: Vec<usize> = p.plan.layers.iter().map(|l| l.block).collect();
            for b in blocks {
                p.set_sparsity(b, 0.0);
            }
            p.commit(before);
        }
    }

    pub fn toggle_freeze_selected(&mut self) {
        if let (Some(b), Some(p)) = (self.selected_block(), &mut self.project) {
            p.toggle_freeze(b);
        }
    }

    pub fn run_suggest(&mut self) {
        let Some(p) = &self.project else { return };
        self.suggesting = true;
        self.bridge.suggest(p, self.suggest.rule());
    }

    pub fn start_analysis(&mut self, resume: bool) {
        let Some(p) = &self.project else {
            self.errors.push("Analysis: open a model first".into());
            return;
        };
        if self.analysis.running {
            return;
        }
        match self.analysis_form.config(p, resume) {
            Ok(c) => {
                let cancel = Arc::new(AtomicBool::new(false));
                self.analysis = AnalysisStatus {
                    running: true,
                    cancel: cancel.clone(),
                    started: Some(Instant::now()),
                    log: vec![format!(
                        "{} {} on {} with {} workers",
                        if resume { "resuming" } else { "starting" },
                        c.method.name(),
                        c.data.display(),
                        if c.workers == 0 { "auto".to_string() } else { c.workers.to_string() }
                    )],
                    weights: c.weights.clone(),
                    ..Default::default()
                };
                self.bridge.analyze(c, cancel);
            }
            Err(e) => self.errors.push(e),
        }
    }

    /// The open project, when it is the one the running analysis writes.
    fn analysed_project(&mut self) -> Option<&mut Project> {
        let dir = self.analysis.run_dir.clone()?;
        self.project.as_mut().filter(|p| p.paths.run.as_ref().is_some_and(|r| crate::fsio::same_path(r, &dir)))
    }

    pub fn cancel_analysis(&mut self) {
        self.analysis.cancel.store(true, Ordering::Relaxed);
        self.analysis.log.push("cancelling after the points in flight…".into());
    }

    fn analysis_event(&mut self, e: Event) {
        let a = &mut self.analysis;
        match e {
            Event::Started { run_dir, total, already_done, layers, .. } => {
                a.total = total;
                a.done = already_done;
                a.log.push(format!("{} layers, {total} points ({already_done} already done)", layers.len()));
                a.run_dir = Some(run_dir.clone());
                let weights = a.weights.clone();
                let ours = |p: &Project| crate::fsio::same_path(&p.paths.weights, &weights);
                if let Some(p) = self.project.as_mut().filter(|p| ours(p)) {
                    let same = p.paths.run.as_ref().is_some_and(|r| crate::fsio::same_path(r, &run_dir));
                    if !same || p.run.is_none() {
                        match p.attach_run(&run_dir) {
                            Ok(()) => {
                                self.bridge.start_cost_worker(p.model.clone(), p.plan.method);
                                self.requested_generation = 0;
                                self.selected = 0;
                                self.stats = None;
                                self.stats_pending = None;
                                let name = run_dir.file_name().map(|n| n.to_string_lossy().into_owned());
                                let dir = p.paths.cfg.parent().unwrap_or(Path::new(".")).join("plans");
                                self.plan_file =
                                    dir.join(format!("{}.json", name.unwrap_or("plan".into()))).display().to_string();
                                self.request_stats();
                            }
                            Err(e) => self.errors.push(e),
                        }
                    }
                }
            }
            Event::Baseline { metrics, seconds } => {
                a.log.push(format!(
                    "baseline mAP@0.5 {:.4}, mAP@0.5:0.95 {:.4} ({seconds:.1} s)",
                    metrics.map50, metrics.map
                ));
                if let Some(p) = self.analysed_project() {
                    p.set_baseline(metrics, seconds);
                }
            }
            Event::Point(pt) => {
                if let Some(p) = self.analysed_project() {
                    p.add_point(pt);
                }
            }
            Event::Progress { done, total, images_per_s, eta_s } => {
                a.done = done;
                a.total = total;
                a.images_per_s = images_per_s;
                a.eta_s = eta_s;
            }
            Event::Warning(w) => a.log.push(format!("warning: {w}")),
            Event::Finished(s) => {
                a.log.push(format!(
                    "finished: {} points ({} computed, {} resumed) in {:.1} s",
                    s.total_points, s.computed_points, s.resumed_points, s.timing.wall_s
                ));
                a.done = a.total;
            }
            Event::Cancelled => a.log.push("cancelled: finished points are kept; Resume continues".into()),
        }
    }

    pub fn start_compare(&mut self) {
        let Some(p) = &self.project else {
            self.errors.push("Prune & compare: open a model first".into());
            return;
        };
        if self.compare.running {
            return;
        }
        if self.compare.data.trim().is_empty() {
            self.errors.push("Prune & compare: choose the dataset to evaluate on".into());
            return;
        }
        let plan = p.plan.clone();
        let job = CompareJob {
            data: PathBuf::from(self.compare.data.trim()),
            dir: if self.compare.out.trim().is_empty() {
                super::worker::work_dir("compare")
            } else {
                PathBuf::from(self.compare.out.trim())
            },
            limit: (self.compare.limit > 0).then_some(self.compare.limit),
            latency_runs: self.compare.latency_runs,
            device: self.compare.device.clone(),
            also: (!self.compare.also.trim().is_empty()).then(|| PathBuf::from(self.compare.also.trim())),
        };
        let mut inputs = vec![p.paths.cfg.as_path(), p.paths.weights.as_path(), job.data.as_path()];
        inputs.extend(job.also.as_deref());
        if let Err(e) = crate::report::compare::check_report_dir(&job.dir, &inputs) {
            self.errors.push(format!("Prune & compare: report folder {e}"));
            return;
        }
        self.compare.running = true;
        self.compare.stage = "starting".into();
        self.compare.done = 0;
        self.compare.total = 0;
        self.bridge.prune_and_compare(p, plan, job);
    }

    /// Opens a native file dialog on a worker thread (dialogs block the thread they run on).
    pub fn dialog(&self, pick: Pick) {
        let start = self.project.as_ref().and_then(|p| p.paths.cfg.parent().map(Path::to_path_buf));
        self.bridge.spawn(Job::Dialog, move |n| {
            let opened = Instant::now();
            let mut d = rfd::FileDialog::new();
            if let Some(s) = &start {
                d = d.set_directory(s);
            }
            let chosen = match pick {
                Pick::Folder | Pick::Run | Pick::AnalysisOut | Pick::ExportReport => d.pick_folder(),
                Pick::Cfg => d.add_filter("Darknet cfg", &["cfg"]).pick_file(),
                Pick::Weights | Pick::CompareAlso => {
                    d.add_filter("checkpoint", &["weights", "pth", "safetensors"]).pick_file()
                }
                Pick::Data | Pick::AnalysisData | Pick::CompareData => d.add_filter("data.yaml", &["yaml", "yml"]).pick_file(),
                Pick::Plan | Pick::OpenPlan => d.add_filter("plan", &["json"]).pick_file(),
                Pick::SavePlan => d.add_filter("plan", &["json"]).set_file_name("plan.json").save_file(),
                Pick::Export(ExportFormat::Csv) => d.add_filter("CSV", &["csv"]).set_file_name("plan.csv").save_file(),
                Pick::Export(ExportFormat::TorchPruning) => {
                    d.add_filter("JSON", &["json"]).set_file_name("pruning_ratio_dict.json").save_file()
                }
                Pick::Export(ExportFormat::Nni) => d.add_filter("JSON", &["json"]).set_file_name("config_list.json").save_file(),
                Pick::ExportCheckpoint => d
                    .add_filter("checkpoint", &["safetensors", "pth", "weights"])
                    .set_file_name("pruned.safetensors")
                    .save_file(),
            };
            match chosen {
                Some(p) => n.send(Msg::Picked(pick, p)),
                // No dialog came up at all: no desktop portal (a bare X server, a container).
                None if opened.elapsed() < std::time::Duration::from_millis(300) => n.send(Msg::Notice(
                    "no file dialog is available here (xdg-desktop-portal): type the path, or drop the file on the window"
                        .into(),
                )),
                None => {}
            }
        });
    }

    /// A path chosen in a dialog (or typed, or dropped).
    pub fn picked(&mut self, pick: Pick, path: PathBuf) {
        let s = path.display().to_string();
        match pick {
            Pick::Folder => self.open_folder(&path),
            Pick::Cfg => self.open.cfg = s,
            Pick::Weights => self.open.weights = s,
            Pick::Data => self.open.data = s,
            Pick::Run => self.open.run = s,
            Pick::Plan => self.load_plan(&path),
            Pick::OpenPlan => self.open.plan = s,
            Pick::SavePlan => self.save_plan(&path),
            Pick::Export(k) => self.export_plan(k, &path),
            Pick::AnalysisData => self.analysis_form.data = s,
            Pick::AnalysisOut => self.analysis_form.out = s,
            Pick::CompareData => self.compare.data = s,
            Pick::CompareAlso => self.compare.also = s,
            Pick::ExportCheckpoint => self.export_checkpoint(path),
            Pick::ExportReport => self.export_report(&path),
        }
    }

    pub fn load_plan(&mut self, path: &Path) {
        let Some(p) = &mut self.project else { return };
        match crate::plan::Plan::read(path).map_err(|e| e.to_string()).and_then(|plan| p.replace_plan(plan, path)) {
            Ok(()) => {
                self.notice = Some(format!("loaded plan {}", path.display()));
                self.plan_file = path.display().to_string();
            }
            Err(e) => self.errors.push(e),
        }
    }

    /// Saves the plan with its totals; while the cost worker is still computing them the
    /// save waits for its answer instead of computing them here.
    pub fn save_plan(&mut self, path: &Path) {
        if !self.totals_current() {
            self.pending_save = Some(path.to_path_buf());
            self.notice = Some(format!("saving to {} once the totals are computed…", path.display()));
            return;
        }
        let Some(p) = &mut self.project else { return };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Err(e) = std::fs::create_dir_all(dir) {
                self.errors.push(format!("{}: cannot create: {e}", dir.display()));
                return;
            }
        }
        match p.save_plan(path) {
            Ok(()) => {
                self.notice = Some(format!("saved plan to {}", path.display()));
                self.plan_file = path.display().to_string();
            }
            Err(e) => self.errors.push(e),
        }
    }

    /// Saves to the plan file field, or asks where when it is empty.
    pub fn save_plan_here_or_ask(&mut self) {
        let path = self.plan_file.trim().to_string();
        if !path.is_empty() {
            self.save_plan(Path::new(&path));
        } else if self.project.is_some() {
            self.dialog(Pick::SavePlan);
        }
    }

    /// The export file of `kind` beside the plan file (`plan.csv`, `plan.torch_pruning.json`,
    /// `plan.nni.json`).
    pub fn export_beside_plan(&mut self, kind: ExportFormat) {
        let base = PathBuf::from(self.plan_file.trim());
        let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plan".into());
        let name = match kind {
            ExportFormat::Csv => format!("{stem}.csv"),
            ExportFormat::TorchPruning => format!("{stem}.torch_pruning.json"),
            ExportFormat::Nni => format!("{stem}.nni.json"),
        };
        let path = base.with_file_name(name);
        self.export_plan(kind, &path);
    }

    pub fn export_plan(&mut self, kind: ExportFormat, path: &Path) {
        let Some(p) = &self.project else { return };
        match crate::fsio::write_atomic(path, p.plan.export(kind)) {
            Ok(()) => self.notice = Some(format!("exported plan to {}", path.display())),
            Err(e) => self.errors.push(e.to_string()),
        }
    }

    /// Writes the pruned checkpoint in the format `dest`'s extension names.
    pub fn export_checkpoint(&mut self, dest: PathBuf) {
        let (Some(o), Some(p)) = (&self.compare.outcome, &self.project) else { return };
        let src = o.pruned.clone();
        let model = p.model.clone();
        if let Err(e) = crate::fsio::refuse_input_as_output(
            &dest,
            &[("checkpoint", &p.paths.weights), ("cfg", &p.paths.cfg), ("pruned checkpoint", &src)],
        ) {
            self.errors.push(e);
            return;
        }
        self.bridge.spawn(Job::Export, move |n| {
            let r = crate::model::Weights::load(&src, &model.layout)
                .and_then(|w| w.save(&dest, &model.layout))
                .map_err(|e| e.to_string());
            n.send(match r {
                Ok(()) => Msg::Notice(format!("exported pruned checkpoint to {}", dest.display())),
                Err(e) => Msg::Failed(Job::Export, e),
            });
        });
    }

    /// Copies the comparison report (md, json, png) and the plan into `dir`.
    pub fn export_report(&mut self, dir: &Path) {
        let Some(o) = &self.compare.outcome else { return };
        let r = (|| -> Result<usize, String> {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
            let mut n = 0;
            for entry in std::fs::read_dir(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))? {
                let path = entry.map_err(|e| e.to_string())?.path();
                let keep =
                    path.extension().and_then(|e| e.to_str()).is_some_and(|e| ["md", "json", "png"].contains(&e));
                if keep {
                    let to = dir.join(path.file_name().unwrap_or_default());
                    crate::fsio::write_via(&to, |tmp| {
                        std::fs::copy(&path, tmp).map(drop).map_err(|e| crate::fsio::IoError::new(&to, "cannot write", e))
                    })
                    .map_err(|e| e.to_string())?;
                    n += 1;
                }
            }
            Ok(n)
        })();
        match r {
            Ok(n) => self.notice = Some(format!("exported {n} report files to {}", dir.display())),
            Err(e) => self.errors.push(e),
        }
    }

    /// Files dropped on the window: a folder opens as a project; a plan loads; a cfg,
    /// checkpoint, data.yaml or run fills the Open window.
    pub fn dropped(&mut self, paths: Vec<PathBuf>) {
        for path in paths {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            if path.join(crate::sensitivity::store::RUN_FILE).is_file() {
                self.open.run = path.display().to_string();
                self.open.visible = true;
            } else if path.is_dir() {
                self.open_folder(&path);
            } else {
                match ext.as_str() {
                    "cfg" => {
                        self.open.cfg = path.display().to_string();
                        self.open.visible = true;
                    }
                    "weights" | "pth" | "safetensors" => {
                        self.open.weights = path.display().to_string();
                        self.open.visible = true;
                    }
                    "yaml" | "yml" => {
                        self.open.data = path.display().to_string();
                        self.open.visible = true;
                    }
                    "json" if self.project.is_some() => self.load_plan(&path),
                    _ => self.errors.push(format!(
                        "{}: not something prunescope opens (a folder, .cfg, .weights/.pth/.safetensors, data.yaml, run folder or plan .json)",
                        path.display()
                    )),
                }
            }
        }
    }

    /// One frame: messages, keys, then the views.
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        self.poll();
        let ctx = ui.ctx().clone();
        let dropped: Vec<PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        if !dropped.is_empty() {
            self.dropped(dropped);
        }
        self.keys(&ctx);
        let title = match &self.project {
            Some(p) => {
                format!("prunescope — {}{}", p.paths.title(), if p.unsaved() { " (plan not saved)" } else { "" })
            }
            None => "prunescope".into(),
        };
        if title != self.window_title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.window_title = title;
        }
        views::show(self, ui);
        if self.busy() {
            // Keep the spinners moving while a job runs (messages also wake the UI).
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }

    fn keys(&mut self, ctx: &egui::Context) {
        use egui::{Key, KeyboardShortcut, Modifiers};
        let sc = |m, k| KeyboardShortcut::new(m, k);
        // Ctrl+Shift+Z before Ctrl+Z: egui matches shortcuts ignoring an extra Shift.
        let (redo, undo, redo2, save, open, quit) = ctx.input_mut(|i| {
            (
                i.consume_shortcut(&sc(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z)),
                i.consume_shortcut(&sc(Modifiers::COMMAND, Key::Z)),
                i.consume_shortcut(&sc(Modifiers::COMMAND, Key::Y)),
                i.consume_shortcut(&sc(Modifiers::COMMAND, Key::S)),
                i.consume_shortcut(&sc(Modifiers::COMMAND, Key::O)),
                i.consume_shortcut(&sc(Modifiers::COMMAND, Key::Q)),
            )
        });
        if quit {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        let tab_keys = [Key::Num1, Key::Num2, Key::Num3, Key::Num4];
        for (k, t) in tab_keys.into_iter().zip(Tab::ALL) {
            if ctx.input_mut(|i| i.consume_shortcut(&sc(Modifiers::COMMAND, k))) {
                self.tab = t;
            }
        }
        if redo || redo2 {
            self.redo();
        } else if undo {
            self.undo();
        }
        if save {
            self.save_plan_here_or_ask();
        }
        if open {
            self.open.visible = true;
        }
        if ctx.egui_wants_keyboard_input() || self.tab != Tab::Sensitivity && self.tab != Tab::Layers {
            return;
        }
        let (left, right, up, down, plus, minus, shift, freeze) = ctx.input(|i| {
            (
                i.key_pressed(Key::ArrowLeft),
                i.key_pressed(Key::ArrowRight),
                i.key_pressed(Key::ArrowUp),
                i.key_pressed(Key::ArrowDown),
                i.key_pressed(Key::Plus) || i.key_pressed(Key::Equals),
                i.key_pressed(Key::Minus),
                i.modifiers.shift,
                i.key_pressed(Key::F),
            )
        });
        let cols = if self.tab == Tab::Layers { 1 } else { self.grid_columns.max(1) };
        if left {
            self.select(self.selected.saturating_sub(1));
        }
        if right {
            self.select(self.selected + 1);
        }
        if up {
            self.select(self.selected.saturating_sub(cols));
        }
        if down {
            self.select(self.selected + cols);
        }
        if plus {
            self.nudge(1, shift);
        }
        if minus {
            self.nudge(-1, shift);
        }
        if freeze {
            self.toggle_freeze_selected();
        }
    }
}
