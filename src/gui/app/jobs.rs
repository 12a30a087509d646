//! Background jobs: starting them, and applying what the workers report.

use super::*;
use crate::gui::state::Project;
use crate::gui::worker::{CompareJob, Job, Msg};
use crate::sensitivity::{Event, Metric};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

impl App {
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
                        // Another rule is another plan: Save writes a new file, not over the
                        // one loaded.
                        if let Some(rule) = self.suggested_rule.take() {
                            let dir = Path::new(self.plan_file.trim()).parent().map(Path::to_path_buf);
                            let dir = dir.unwrap_or_else(|| PathBuf::from("plans"));
                            self.plan_file = fresh_file(&dir, &rule_slug(&rule)).display().to_string();
                        }
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
        self.plan_file = match (&project.paths.plan, &project.paths.run) {
            (Some(p), _) => p.display().to_string(),
            // A new plan for a run: beside it, named after it.
            (None, Some(run)) => {
                let name = run.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or("plan".into());
                let dir = run.parent().unwrap_or(Path::new(".")).join("plans");
                fresh_file(&dir, &name).display().to_string()
            }
            (None, None) => {
                project.paths.cfg.parent().unwrap_or(Path::new(".")).join("plans/plan.json").display().to_string()
            }
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
        let classifier = project.model.is_classifier();
        if !self.analysis_form.metric.fits(classifier) {
            self.analysis_form.metric = if classifier { Metric::Top1 } else { Metric::Map50 };
        }
        if let Some(r) = &project.paths.run {
            self.analysis_form.out = r.display().to_string();
        } else if self.analysis_form.out.is_empty() {
            let dir = project.paths.cfg.parent().unwrap_or(Path::new("."));
            self.analysis_form.out = dir.join("sensitivity").display().to_string();
        }
        // A run being written: what streamed in before or during the load is replayed.
        let analysing = self.analysis.run_dir.as_ref();
        if project.paths.run.as_ref().zip(analysing).is_some_and(|(r, a)| crate::fsio::same_path(r, a)) {
            if let Some((m, s)) = self.analysis.baseline {
                project.set_baseline(m, s);
            }
            for pt in &self.analysis.points {
                project.add_point(pt.clone());
            }
        }
        // The run menu: the open run, the runs beside it and beside the model.
        let same_model = |a: &Project| crate::fsio::same_path(&a.paths.weights, &project.paths.weights);
        if !self.project.as_ref().is_some_and(same_model) {
            self.runs.clear();
            if crate::fsio::same_path(&self.analysis.weights, &project.paths.weights) {
                if let Some(d) = self.analysis.run_dir.clone() {
                    self.remember_run(&d);
                }
            }
        }
        let mut folders: Vec<PathBuf> =
            project.paths.run.iter().filter_map(|r| r.parent().map(Path::to_path_buf)).collect();
        folders.extend(project.paths.cfg.parent().map(Path::to_path_buf));
        for folder in folders {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&folder)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            found.retain(|d| d.join(crate::sensitivity::store::RUN_FILE).is_file());
            found.sort();
            for d in found {
                self.remember_run(&d);
            }
        }
        if let Some(r) = &project.paths.run {
            self.remember_run(r);
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

    pub(super) fn request_stats(&mut self) {
        let Some(b) = self.selected_block() else { return };
        if self.stats.as_ref().map(|s| s.block) == Some(b) || self.stats_pending == Some(b) {
            return;
        }
        self.stats_pending = Some(b);
        if let Some(p) = &self.project {
            self.bridge.layer_stats(p, b);
        }
    }

    pub(super) fn request_cost_if_stale(&mut self) {
        let Some(p) = &self.project else { return };
        if p.generation != self.requested_generation {
            self.requested_generation = p.generation;
            self.bridge.request_cost(p.generation, &p.plan, p.curves.as_ref());
        }
    }

    pub fn run_suggest(&mut self) {
        let Some(p) = &self.project else { return };
        self.suggesting = true;
        let rule = self.suggest.rule();
        self.suggested_rule = Some(rule.clone());
        self.bridge.suggest(p, rule);
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
                self.notice = None;
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

    /// Adds a run folder to the run menu's list.
    pub(super) fn remember_run(&mut self, dir: &Path) {
        if !self.runs.iter().any(|r| crate::fsio::same_path(r, dir)) {
            self.runs.push(dir.to_path_buf());
        }
    }

    /// The open project, when it is the one the running analysis writes.
    pub(super) fn analysed_project(&mut self) -> Option<&mut Project> {
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
                a.baseline = None;
                a.points.clear();
                self.remember_run(&run_dir);
                // The run is a job beside the open project: it is opened when the user asks
                // ("Open this run"), or now when the project has no run and no edits to lose.
                let weights = self.analysis.weights.clone();
                let open_now = self.project.as_ref().is_some_and(|p| {
                    crate::fsio::same_path(&p.paths.weights, &weights) && p.run.is_none() && !p.unsaved()
                });
                if open_now {
                    self.act(Action::OpenRun(run_dir));
                } else if self.analysed_project().is_none() {
                    let name = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    self.notice =
                        Some(format!("analysis writing run {name}: open it from the Analysis tab or the run menu"));
                }
            }
            Event::Baseline { metrics, seconds } => {
                a.log.push(match metrics.top1.zip(metrics.top5) {
                    Some((top1, top5)) => format!("baseline top-1 {top1:.4}, top-5 {top5:.4} ({seconds:.1} s)"),
                    None => format!(
                        "baseline mAP@0.5 {:.4}, mAP@0.5:0.95 {:.4} ({seconds:.1} s)",
                        metrics.map50, metrics.map
                    ),
                });
                self.analysis.baseline = Some((metrics, seconds));
                if let Some(p) = self.analysed_project() {
                    p.set_baseline(metrics, seconds);
                }
            }
            Event::Point(pt) => {
                self.analysis.points.push(pt.clone());
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
                let opened = self.analysed_project().is_some();
                if let (false, Some(d)) = (opened, &self.analysis.run_dir) {
                    let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    self.notice = Some(format!("analysis finished: run {name} (Open this run in the Analysis tab)"));
                }
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
                crate::gui::worker::work_dir("compare")
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
        self.notice = None;
        self.compare.running = true;
        self.compare.stage = "starting".into();
        self.compare.done = 0;
        self.compare.total = 0;
        self.bridge.prune_and_compare(p, plan, job);
    }
}

/// `dir/name.json`, or `dir/name-2.json`, `-3` … when taken: a new plan never lands on an
/// existing file.
pub(super) fn fresh_file(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(format!("{name}.json"));
    if !first.exists() {
        return first;
    }
    (2..).map(|i| dir.join(format!("{name}-{i}.json"))).find(|p| !p.exists()).unwrap_or(first)
}

/// A file name for the plan a rule suggests (`budget-0.01`, `budget-2pct`, `macs30`).
pub(super) fn rule_slug(rule: &crate::plan::Rule) -> String {
    use crate::plan::{Budget, Resource, Rule};
    match rule {
        Rule::PerLayer(Budget::Absolute(a)) => format!("budget-{a}"),
        Rule::PerLayer(Budget::Relative(r)) => format!("budget-{}pct", r * 100.0),
        Rule::Global { resource, fraction } => {
            let what = if *resource == Resource::Macs { "macs" } else { "params" };
            format!("{what}{}", (fraction * 100.0).round())
        }
    }
}
