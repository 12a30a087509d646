//! An experiment folder: which files make a project (model, checkpoint, dataset, run, plan).
//! The explorer and `prunescope gui FOLDER` open projects through it.

use crate::plan::PLAN_FORMAT;
use crate::sensitivity::store;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a folder is not a project: each message names the folder and what it lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectError {
    #[error("{}: not a folder", dir.display())]
    NotAFolder { dir: PathBuf },
    #[error("{}: no model in the folder (a Darknet .cfg with its checkpoint, or an .onnx file)", dir.display())]
    NoCfg { dir: PathBuf },
    #[error("{}: {count} models (.cfg or .onnx files); open the model files one by one", dir.display())]
    SeveralCfgs { dir: PathBuf, count: usize },
    #[error("{}: no checkpoint (.weights, .pth, .safetensors) in the folder", dir.display())]
    NoCheckpoint { dir: PathBuf },
}

/// The files a project is made of. Only the model is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectPaths {
    pub cfg: PathBuf,
    pub weights: PathBuf,
    /// A data.yaml or image folder: what analyses and comparisons evaluate on.
    pub data: Option<PathBuf>,
    /// A sensitivity run folder.
    pub run: Option<PathBuf>,
    /// A plan file to start from.
    pub plan: Option<PathBuf>,
}

impl ProjectPaths {
    /// The files of an experiment folder: the one `.cfg`, the checkpoint named like it (or the
    /// only one), `data.yaml`, the first sub-folder holding a `run.json` and the plan (in the
    /// folder or `plans/`) made from that run.
    pub fn discover(dir: &Path) -> Result<Self, ProjectError> {
        let list = |d: &Path| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> =
                std::fs::read_dir(d).map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
            v.sort();
            v
        };
        if !dir.is_dir() {
            return Err(ProjectError::NotAFolder { dir: dir.to_path_buf() });
        }
        let files = list(dir);
        let ext = |p: &Path, e: &[&str]| p.extension().and_then(|x| x.to_str()).is_some_and(|x| e.contains(&x));
        let cfgs: Vec<&PathBuf> = files.iter().filter(|p| ext(p, &["cfg"])).collect();
        let onnx: Vec<&PathBuf> = files.iter().filter(|p| ext(p, &["onnx"])).collect();
        let (cfg, weights) = match (cfgs.as_slice(), onnx.as_slice()) {
            // An ONNX model is its own checkpoint.
            ([], [one]) => ((*one).clone(), (*one).clone()),
            ([one], _) => {
                let cfg = (*one).clone();
                let ckpts: Vec<&PathBuf> =
                    files.iter().filter(|p| ext(p, &["weights", "pth", "safetensors"])).collect();
                let weights = ckpts
                    .iter()
                    .find(|p| p.file_stem() == cfg.file_stem())
                    .or(ckpts.first())
                    .map(|p| (*p).clone())
                    .ok_or_else(|| ProjectError::NoCheckpoint { dir: dir.to_path_buf() })?;
                (cfg, weights)
            }
            ([], []) => return Err(ProjectError::NoCfg { dir: dir.to_path_buf() }),
            ([], many) => return Err(ProjectError::SeveralCfgs { dir: dir.to_path_buf(), count: many.len() }),
            (many, _) => return Err(ProjectError::SeveralCfgs { dir: dir.to_path_buf(), count: many.len() }),
        };
        let data = [dir.join("data.yaml"), dir.join("data.yml")].into_iter().find(|p| p.is_file());
        let run = files.iter().find(|p| p.join(store::RUN_FILE).is_file()).cloned();
        let plan = run.as_ref().and_then(|r| {
            let mut candidates = list(&dir.join("plans"));
            candidates.extend(files.iter().cloned());
            candidates.into_iter().filter(|p| ext(p, &["json"])).find(|p| plan_made_from(p, r))
        });
        Ok(ProjectPaths { cfg, weights, data, run, plan })
    }

    /// The same paths made absolute (those that exist).
    pub fn absolute(&self) -> ProjectPaths {
        let abs = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        ProjectPaths {
            cfg: abs(&self.cfg),
            weights: abs(&self.weights),
            data: self.data.as_deref().map(abs),
            run: self.run.as_deref().map(abs),
            plan: self.plan.as_deref().map(abs),
        }
    }

    /// Whether both name the same files, however the paths are written.
    pub fn same_files(&self, other: &ProjectPaths) -> bool {
        self.absolute() == other.absolute()
    }

    /// A short name: the cfg's file name and, when there is one, the run's folder name.
    pub fn title(&self) -> String {
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match &self.run {
            Some(r) => format!("{} · {}", name(&self.cfg), name(r)),
            None => name(&self.cfg),
        }
    }
}

fn plan_made_from(plan: &Path, run: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(plan) else { return false };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    if v.get("format").and_then(|f| f.as_str()) != Some(PLAN_FORMAT) {
        return false;
    }
    let Some(p) = v.pointer("/run/path").and_then(|p| p.as_str()) else { return false };
    let base = plan.parent().unwrap_or(Path::new("."));
    crate::fsio::same_path(&crate::provenance::resolve(base, Path::new(p)), run)
}
