//! The bridge between the UI thread and the engine: every slow call runs on a worker thread
//! and reports back over a crossbeam channel, waking the UI. Only plain data crosses.

use super::state::{Project, ProjectPaths};
use crate::eval::compare::{self, CompareConfig, Comparison};
use crate::model::effective::Cost;
use crate::model::Model;
use crate::plan::PlanCoster;
use crate::plan::{Curves, Plan, Prediction, Rule};
use crate::prune::stats::LayerStats;
use crate::prune::Method;
use crate::sensitivity::{self, AnalysisConfig, Event};
use crossbeam_channel::{Receiver, Sender};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The kinds of background job; a failure names its job, so it ends that job only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Load,
    PlanCost,
    Analysis,
    Suggest,
    Compare,
    LayerStats,
    Dialog,
    Export,
}

impl Job {
    /// The thread's name and the prefix of its failures.
    pub fn name(self) -> &'static str {
        match self {
            Job::Load => "load",
            Job::PlanCost => "plan-cost",
            Job::Analysis => "analysis",
            Job::Suggest => "suggest",
            Job::Compare => "prune-compare",
            Job::LayerStats => "layer-stats",
            Job::Dialog => "dialog",
            Job::Export => "export",
        }
    }
}

/// What a worker reports.
pub enum Msg {
    Loaded(Result<Box<Project>, String>),
    Analysis(Event),
    /// The analysis thread ended, with the run's error (none when it finished or was cancelled).
    AnalysisEnded(Option<String>),
    Cost {
        generation: u64,
        prediction: Prediction,
        after: Vec<Cost>,
    },
    Suggested(Result<Plan, String>),
    /// Stage, images done, images in all.
    CompareProgress(String, usize, usize),
    Compared(Result<Box<CompareOutcome>, String>),
    /// The statistics of one layer of the checkpoint at the path.
    LayerStats(PathBuf, Result<Box<LayerStats>, String>),
    /// A path chosen in a file dialog.
    Picked(super::app::Pick, PathBuf),
    Notice(String),
    /// A job failed outside the cases above (a panic, a lost thread, an export error).
    Failed(Job, String),
}

/// The result of a prune + compare job.
pub struct CompareOutcome {
    pub comparison: Comparison,
    pub dir: PathBuf,
    pub pruned: PathBuf,
    /// The plan applied, with what it predicted (shown beside what was measured).
    pub plan: Option<Plan>,
}

/// Spawns jobs and collects their messages.
pub struct Bridge {
    tx: Sender<Msg>,
    pub rx: Receiver<Msg>,
    repaint: Option<egui::Context>,
    cost_tx: Option<Sender<CostRequest>>,
}

/// A sender that wakes the UI after each message.
#[derive(Clone)]
pub struct Notifier {
    tx: Sender<Msg>,
    repaint: Option<egui::Context>,
}

impl Notifier {
    pub fn send(&self, m: Msg) {
        let _ = self.tx.send(m);
        if let Some(c) = &self.repaint {
            c.request_repaint();
        }
    }
}

struct CostRequest {
    generation: u64,
    plan: Plan,
    curves: Option<Curves>,
}

impl Bridge {
    pub fn new(repaint: Option<egui::Context>) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Bridge { tx, rx, repaint, cost_tx: None }
    }

    pub fn notifier(&self) -> Notifier {
        Notifier { tx: self.tx.clone(), repaint: self.repaint.clone() }
    }

    /// Runs `job` on a named thread; a panic becomes a `Failed` message instead of a silent end.
    pub fn spawn(&self, kind: Job, job: impl FnOnce(&Notifier) + Send + 'static) {
        let n = self.notifier();
        let label = kind.name();
        let spawned = std::thread::Builder::new().name(format!("prunescope-{label}")).spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&n)));
            if let Err(e) = r {
                let what = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                n.send(Msg::Failed(kind, format!("{label}: internal error: {what}")));
            }
        });
        if let Err(e) = spawned {
            self.notifier().send(Msg::Failed(kind, format!("{label}: cannot start a thread: {e}")));
        }
    }

    pub fn load(&self, paths: ProjectPaths) {
        self.spawn(Job::Load, move |n| n.send(Msg::Loaded(Project::load(&paths).map(Box::new))));
    }

    /// Starts the cost worker of a newly opened project (the previous one ends with its channel).
    pub fn start_cost_worker(&mut self, model: Arc<Model>, method: Method) {
        let (tx, rx) = crossbeam_channel::unbounded::<CostRequest>();
        self.cost_tx = Some(tx);
        self.spawn(Job::PlanCost, move |n| {
            let mut coster = PlanCoster::new(&model, method);
            while let Ok(mut req) = rx.recv() {
                // Only the newest plan matters: skip the ones a drag left behind.
                while let Ok(newer) = rx.try_recv() {
                    req = newer;
                }
                let (prediction, after) = coster.predict(&model, &req.plan, req.curves.as_ref());
                n.send(Msg::Cost { generation: req.generation, prediction, after: after.layers });
            }
        });
    }

    pub fn request_cost(&self, generation: u64, plan: &Plan, curves: Option<&Curves>) {
        if let Some(tx) = &self.cost_tx {
            let _ = tx.send(CostRequest { generation, plan: plan.clone(), curves: curves.cloned() });
        }
    }

    /// Runs a sensitivity analysis; events stream back as they happen.
    pub fn analyze(&self, config: AnalysisConfig, cancel: Arc<AtomicBool>) {
        self.spawn(Job::Analysis, move |n| {
            let (etx, erx) = crossbeam_channel::unbounded::<Event>();
            let forward = n.clone();
            let pump = std::thread::spawn(move || {
                for e in erx {
                    forward.send(Msg::Analysis(e));
                }
            });
            let error = match sensitivity::run(&config, &etx, &cancel) {
                // Already reported as `Event::Cancelled`: not an error.
                Ok(_) | Err(sensitivity::SensitivityError::Cancelled) => None,
                Err(e) => Some(e.to_string()),
            };
            drop(etx);
            let _ = pump.join();
            n.send(Msg::AnalysisEnded(error));
        });
    }

    pub fn suggest(&self, project: &Project, rule: Rule) {
        let Some(run) = project.run.clone() else {
            self.notifier().send(Msg::Suggested(Err("Suggest needs a sensitivity run: open or start one".into())));
            return;
        };
        let dir = project.paths.run.clone().unwrap_or_default();
        let model = project.model.clone();
        let metric = project.plan.metric;
        let frozen = project.frozen();
        self.spawn(Job::Suggest, move |n| {
            let r = crate::plan::suggest(&run, &dir, &model, &rule, metric, &frozen).map_err(|e| e.to_string());
            n.send(Msg::Suggested(r));
        });
    }

    /// Prunes with `plan` into `dir`, then compares the original and the pruned checkpoint.
    pub fn prune_and_compare(&self, project: &Project, plan: Plan, job: CompareJob) {
        let model = project.model.clone();
        let paths = project.paths.clone();
        self.spawn(Job::Compare, move |n| {
            let r = prune_and_compare(&model, &paths, &plan, &job, n).map(Box::new);
            n.send(Msg::Compared(r));
        });
    }

    pub fn layer_stats(&self, project: &Project, block: usize) {
        let model = project.model.clone();
        let weights = project.paths.weights.clone();
        self.spawn(Job::LayerStats, move |n| {
            n.send(Msg::LayerStats(weights, layer_stats(&model, block).map(Box::new)))
        });
    }
}

/// Settings of a prune + compare job.
#[derive(Debug, Clone)]
pub struct CompareJob {
    pub data: PathBuf,
    pub dir: PathBuf,
    pub limit: Option<usize>,
    pub latency_runs: usize,
    pub device: String,
    /// Another checkpoint of the same cfg to compare too (a fine-tuned one, say).
    pub also: Option<PathBuf>,
}

fn prune_and_compare(
    model: &Model,
    paths: &ProjectPaths,
    plan: &Plan,
    job: &CompareJob,
    n: &Notifier,
) -> Result<CompareOutcome, String> {
    // The folder is built aside and moved into place whole (fsio::write_dir_via).
    let ext = paths.weights.extension().and_then(|e| e.to_str()).unwrap_or("safetensors");
    let pruned_name = format!("pruned.{ext}");
    let mut comparison = None;
    crate::fsio::write_dir_via(&job.dir, |dir| -> Result<(), crate::fsio::WriteError> {
        plan.write(&dir.join("plan.json")).map_err(|e| e.to_string())?;
        n.send(Msg::CompareProgress("pruning".into(), 0, 1));
        let pruned = dir.join(&pruned_name);
        plan.prune_into(model, &pruned).map_err(|e| e.to_string())?;
        let mut c = compare_in(paths, plan, job, &pruned, n)?;
        // The report names where the checkpoint will be, not the temporary folder.
        if let Some(m) = c.models.get_mut(1) {
            m.weights = job.dir.join(&pruned_name);
        }
        crate::report::compare::write_files(&c, dir).map_err(|e| e.to_string())?;
        comparison = Some(c);
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    let comparison = comparison.ok_or("the comparison produced no result")?;
    Ok(CompareOutcome { comparison, dir: job.dir.clone(), pruned: job.dir.join(pruned_name), plan: Some(plan.clone()) })
}

/// Evaluates the origin, the pruned checkpoint at `pruned` and the optional third one.
fn compare_in(
    paths: &ProjectPaths,
    plan: &Plan,
    job: &CompareJob,
    pruned: &Path,
    n: &Notifier,
) -> Result<Comparison, String> {
    let c = CompareConfig {
        cfg: paths.cfg.clone(),
        data: job.data.clone(),
        img_size: Some(plan.img_size),
        device: job.device.clone(),
        limit: job.limit,
        latency_runs: job.latency_runs,
        preprocess: None,
    };
    let mut models = vec![("origin".to_string(), paths.weights.clone()), ("pruned".to_string(), pruned.to_path_buf())];
    if let Some(p) = &job.also {
        let label = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "third".into());
        models.push((label, p.clone()));
    }
    compare::compare(&c, &models, &mut |m, done, total| {
        n.send(Msg::CompareProgress(format!("evaluating {}", models[m].0), done, total));
    })
    .map_err(|e| e.to_string())
}

fn layer_stats(model: &Model, block: usize) -> Result<LayerStats, String> {
    let layer = model.layer_by_id(block).ok_or_else(|| format!("block {block}: no prunable layer in the model"))?;
    LayerStats::of(&model.weights, &layer.keys, 60).map_err(|e| e.to_string())
}

/// A working folder for GUI jobs, under the user's cache.
pub fn work_dir(kind: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let stamp = crate::provenance::now_rfc3339().replace([':', '-'], "");
    base.join("prunescope").join("gui").join(format!("{kind}-{stamp}"))
}
