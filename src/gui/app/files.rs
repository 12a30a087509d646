//! Files: dialogs, plans loaded, saved and exported, checkpoints and reports exported, files
//! dropped on the window.

use super::*;
use crate::gui::worker::{Job, Msg};
use crate::plan::ExportFormat;
use std::path::{Path, PathBuf};
use std::time::Instant;

impl App {
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
                Pick::Cfg => d.add_filter("model", &["cfg", "onnx"]).pick_file(),
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
                self.saved();
            }
            Err(e) => {
                self.after_save = None;
                self.errors.push(e)
            }
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
            self.errors.push(e.to_string());
            return;
        }
        self.bridge.spawn(Job::Export, move |n| {
            let pruned = model.files.with_weights(&src);
            let r = crate::model::Model::open(&pruned, Some(model.img_size))
                .and_then(|m| {
                    m.check_output(&dest)?;
                    m.save(&m.weights, &dest)
                })
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
                        std::fs::copy(&path, tmp)
                            .map(drop)
                            .map_err(|e| crate::fsio::IoError::new(&to, "cannot write", e))
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
}
