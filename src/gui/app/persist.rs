//! What survives a restart (eframe storage), and where the bundled sample is.

use super::*;
use crate::gui::state::ProjectPaths;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

/// The bundled sample experiment, when this build can find it.
pub fn sample_dir() -> Option<PathBuf> {
    let candidates =
        [PathBuf::from("sample_runs/shapes"), Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes")];
    candidates.into_iter().find(|p| p.join("yolov3-tiny-shapes.cfg").is_file())
}

impl App {
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
}
