//! `prunescope gui` (also what `prunescope` with no subcommand runs): the desktop explorer.

use crate::project::ProjectPaths;
use std::path::PathBuf;

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// An experiment folder (cfg, checkpoint, data.yaml, run folders, plans/).
    #[arg(conflicts_with_all = ["cfg", "weights", "model"])]
    pub folder: Option<PathBuf>,
    /// Or an ONNX model (its weights inside)…
    #[arg(long, conflicts_with_all = ["cfg", "weights"])]
    pub model: Option<PathBuf>,
    /// Or the files one by one: the cfg…
    #[arg(long, requires = "weights")]
    pub cfg: Option<PathBuf>,
    /// …its checkpoint…
    #[arg(long, requires = "cfg")]
    pub weights: Option<PathBuf>,
    /// …the dataset, a sensitivity run and a plan.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub run: Option<PathBuf>,
    #[arg(long)]
    pub plan: Option<PathBuf>,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let start = match (&a.folder, &a.cfg, &a.weights) {
        (None, None, None) if a.model.is_some() => {
            let m = a.model.clone().unwrap_or_default();
            Some(ProjectPaths {
                cfg: m.clone(),
                weights: m,
                data: a.data.clone(),
                run: a.run.clone(),
                plan: a.plan.clone(),
            })
        }
        (Some(dir), _, _) => {
            let mut p = ProjectPaths::discover(dir)?;
            p.data = a.data.clone().or(p.data);
            p.run = a.run.clone().or(p.run);
            p.plan = a.plan.clone().or(p.plan);
            Some(p)
        }
        (None, Some(cfg), Some(weights)) => Some(ProjectPaths {
            cfg: cfg.clone(),
            weights: weights.clone(),
            data: a.data.clone(),
            run: a.run.clone(),
            plan: a.plan.clone(),
        }),
        _ => None,
    };
    open(start)
}

#[cfg(feature = "gui")]
fn open(start: Option<ProjectPaths>) -> anyhow::Result<()> {
    crate::gui::run(start)
}

#[cfg(not(feature = "gui"))]
fn open(_: Option<ProjectPaths>) -> anyhow::Result<()> {
    anyhow::bail!(
        "this prunescope was built without the explorer (cargo build --no-default-features): use the subcommands (prunescope --help), or build with the default features for the GUI"
    )
}
