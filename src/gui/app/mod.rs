//! The application: state that outlives a frame and what happens to it. Drawing lives in
//! `views/`. Here: the App and its plan edits; `action` (what the user asks for, one
//! `Action` queue applied once per frame), `jobs` (background work and its messages), `files`
//! (dialogs, plans, exports, drops), `forms` (form and table state), `persist` (restarts).

use super::state::{Project, ProjectPaths};
use super::views;
use super::worker::Bridge;
use crate::prune::stats::LayerStats;
use std::path::{Path, PathBuf};

mod action;
mod files;
mod forms;
mod jobs;
mod persist;

pub use action::{Action, Answer};
pub use forms::*;
pub use persist::{sample_dir, Persisted};

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
    /// The grid's scroll offset and visible height in the last frame, and whether the
    /// selection moved and must be scrolled into view.
    pub grid_view: (f32, f32),
    pub reveal_selected: bool,
    /// A plan save waiting for the totals of the current plan.
    pending_save: Option<PathBuf>,
    window_title: String,
    /// What the user asked for this frame ([`Action`]), applied at its end.
    actions: Vec<Action>,
    /// Run folders the run menu offers: the open one, its siblings, those analysed here.
    pub runs: Vec<PathBuf>,
    /// An action that would discard unsaved plan edits, waiting for the user's answer.
    pub confirm: Option<Action>,
    /// The user agreed to discard the edits for the next open.
    discard_ok: bool,
    /// What to do once the plan is saved (Save in the discard question).
    after_save: Option<Action>,
    /// The rule of the suggestion in flight (names the new plan file).
    suggested_rule: Option<crate::plan::Rule>,
    quit: bool,
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
            grid_view: (0.0, f32::INFINITY),
            reveal_selected: false,
            pending_save: None,
            window_title: String::new(),
            actions: Vec::new(),
            runs: Vec::new(),
            confirm: None,
            discard_ok: false,
            after_save: None,
            suggested_rule: None,
            quit: false,
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
                    app.errors.push(e.to_string());
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

    /// Opens a project (on a worker); when the open plan has unsaved edits the user is asked
    /// first ([`App::confirm`]).
    pub fn open_project(&mut self, paths: ProjectPaths) {
        if !std::mem::take(&mut self.discard_ok) && self.project.as_ref().is_some_and(|p| p.unsaved()) {
            self.confirm = Some(Action::OpenProject(paths));
            return;
        }
        self.notice = Some(format!("opening {} …", paths.title()));
        self.loading = Some(paths.clone());
        self.bridge.load(paths);
    }

    /// Opens another run of the open model (with a new plan).
    pub fn open_run(&mut self, dir: PathBuf) {
        let Some(p) = &self.project else {
            self.errors.push(format!("{}: open a model before a run of it", dir.display()));
            return;
        };
        let paths = ProjectPaths { run: Some(dir), plan: None, ..p.paths.clone() };
        self.open_project(paths);
    }

    /// Opens the run the loaded plan was made from, with that plan.
    pub fn open_plan_run(&mut self) {
        let Some(p) = &self.project else { return };
        let Some(from) = &p.plan_from_other_run else { return };
        let paths = ProjectPaths { run: Some(from.path.clone()), plan: p.paths.plan.clone(), ..p.paths.clone() };
        self.open_project(paths);
    }

    pub fn open_folder(&mut self, dir: &Path) {
        match ProjectPaths::discover(dir) {
            Ok(p) => self.open_project(p),
            Err(e) => self.errors.push(e.to_string()),
        }
    }

    pub fn busy(&self) -> bool {
        self.loading.is_some() || self.analysis.running || self.compare.running || self.suggesting
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
            self.reveal_selected = true;
            self.request_stats();
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

    /// Freezes or unfreezes the layer of convolution `block`.
    pub fn toggle_freeze(&mut self, block: usize) {
        if let Some(p) = &mut self.project {
            p.toggle_freeze(block);
        }
    }

    /// One frame: messages, then the views and keys queue what the user asks for, and the
    /// queue is applied.
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        self.poll();
        let ctx = ui.ctx().clone();
        let dropped: Vec<PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        if !dropped.is_empty() {
            self.act(Action::Dropped(dropped));
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
        self.apply_actions();
        if std::mem::take(&mut self.quit) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        if self.busy() {
            // Keep the spinners moving while a job runs (messages also wake the UI).
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }
}
