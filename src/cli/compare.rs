//! `prunescope compare A B [C ...]`: checkpoints of one cfg side by side on one validation set.

use crate::data::preprocess::ClassifyPreset;
use crate::eval::compare::{self, CompareConfig};
use crate::report::compare as report;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Checkpoints to compare (the first is the reference for the relative columns), or ONNX
    /// models (.onnx, without --cfg).
    #[arg(required = true)]
    pub weights: Vec<PathBuf>,
    /// The Darknet cfg of the checkpoints.
    #[arg(long)]
    pub cfg: Option<PathBuf>,
    #[arg(long)]
    pub data: PathBuf,
    /// Report folder: report.md, report.json, confusion.png, layers.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Names of the checkpoints, comma-separated (default: their file names).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    #[arg(long, value_parser = crate::quantity::img_size)]
    pub img_size: Option<u32>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Only the first N validation images.
    #[arg(long, value_parser = crate::quantity::limit)]
    pub limit: Option<usize>,
    /// Timed batch-1 forward passes per checkpoint (after 3 warm-up passes).
    #[arg(long, default_value_t = 30, value_parser = crate::quantity::runs)]
    pub latency_runs: usize,
    /// A classifier's input transform: torchvision (resize to size/0.875, centre crop,
    /// ImageNet mean/std) or ultralytics (resize to size, centre crop, /255); default:
    /// ultralytics for Ultralytics exports, else torchvision.
    #[arg(long, value_parser = super::choice::<ClassifyPreset>())]
    pub preprocess: Option<ClassifyPreset>,
    /// A plan: its run's curves are drawn with the plan's thresholds (curves.png).
    #[arg(long)]
    pub plan: Option<PathBuf>,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    // ONNX models need no cfg: the comparison names the first as its model.
    let cfg = match &a.cfg {
        Some(cfg) => cfg.clone(),
        None if a.weights.iter().all(|p| crate::model::open::is_onnx(p)) => a.weights[0].clone(),
        None => anyhow::bail!("--cfg: required for Darknet checkpoints (without it, give .onnx models only)"),
    };
    let inputs: Vec<&std::path::Path> =
        a.weights.iter().chain([&cfg, &a.data]).chain(a.plan.iter()).map(|p| p.as_path()).collect();
    report::check_report_dir(&a.out, &inputs).map_err(|m| anyhow::anyhow!("--out {m}"))?;
    if !a.labels.is_empty() && a.labels.len() != a.weights.len() {
        anyhow::bail!("--labels names {} checkpoints, but {} are given", a.labels.len(), a.weights.len());
    }
    let models: Vec<(String, PathBuf)> = a
        .weights
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let label = a.labels.get(i).cloned().unwrap_or_else(|| {
                p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| format!("model {i}"))
            });
            (label, p.clone())
        })
        .collect();
    let c = CompareConfig {
        cfg,
        data: a.data.clone(),
        img_size: a.img_size,
        device: a.device.clone(),
        limit: a.limit,
        latency_runs: a.latency_runs,
        preprocess: a.preprocess,
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} images  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let report = compare::compare(&c, &models, &mut |m, done, total| {
        bar.set_prefix(models[m].0.clone());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    crate::fsio::write_dir_via(&a.out, |dir| -> anyhow::Result<()> {
        report::write_files(&report, dir)?;
        if let Some(p) = &a.plan {
            curves_with_thresholds(p, &dir.join("curves.png"))?;
        }
        Ok(())
    })?;
    print!("{}", report::markdown(&report).split("\n## ").next().unwrap_or_default());
    println!("\nwrote {}/{{report.md, report.json, confusion.png, layers.png}}", a.out.display());
    Ok(())
}

/// The curves of the run `plan` was made from, with its thresholds.
pub fn curves_with_thresholds(plan: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let p = crate::plan::Plan::read(plan)?;
    let run_ref = p.run.as_ref().ok_or_else(|| anyhow::anyhow!("{}: the plan names no run", plan.display()))?;
    let run = crate::sensitivity::store::read(&run_ref.path)?;
    let t: Vec<(String, f64)> = p.layers.iter().map(|l| (l.layer.clone(), l.sparsity)).collect();
    Ok(crate::report::sensitivity::png(&run, p.metric, out, &t)?)
}
