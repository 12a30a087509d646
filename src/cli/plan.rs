//! `prunescope suggest` (a plan from a finished run), `prunescope export-plan` (CSV,
//! Torch-Pruning, NNI) and `prunescope prune` (apply a plan to a checkpoint).

use crate::model::{Model, ModelFiles};
use crate::plan::{self, ExportFormat, Plan, Rule};
use crate::plan::{Budget, Resource};
use crate::sensitivity::{store, Metric};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct SuggestArgs {
    /// The finished sensitivity run folder.
    #[arg(long)]
    pub run: PathBuf,
    /// Per-layer budget: the largest drop each layer may cause, as a metric value (0.01)
    /// or a percentage of the baseline (2%).
    #[arg(long, conflicts_with = "target", allow_negative_numbers = true)]
    pub budget: Option<Budget>,
    /// Global target: the reduction to reach, e.g. 30% (of `--resource`).
    #[arg(long, allow_negative_numbers = true)]
    pub target: Option<String>,
    /// What `--target` counts.
    #[arg(long, default_value = "macs", value_parser = super::choice::<Resource>())]
    pub resource: Resource,
    /// Metric the drops are read from; default: the run's.
    #[arg(long, value_parser = super::choice::<Metric>())]
    pub metric: Option<Metric>,
    /// Layers held at 0 % (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub freeze: Vec<String>,
    /// Cfg and weights; default: the files the run names (they must hash the same).
    #[arg(long)]
    pub cfg: Option<PathBuf>,
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Where the plan is written.
    #[arg(long)]
    pub out: PathBuf,
}

/// `30` or `30%`; a bare value below 1 (`0.3`) could mean 0.3 % or 30 % and is refused.
fn percent(s: &str) -> anyhow::Result<f64> {
    let t = s.trim();
    let v: f64 = t
        .trim_end_matches('%')
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| anyhow::anyhow!("--target {s}: expected a percentage such as 30%"))?;
    if !(v > 0.0 && v < 100.0) {
        anyhow::bail!("--target {s}: expected a percentage between 0 and 100");
    }
    if v < 1.0 && !t.ends_with('%') {
        anyhow::bail!("--target {s}: ambiguous (0.3 % or 30 %?): write the percentage with a % sign, e.g. 30% or 0.3%");
    }
    Ok(v / 100.0)
}

pub fn run_suggest(a: &SuggestArgs) -> anyhow::Result<()> {
    let run_file = a.run.join(store::RUN_FILE);
    let points_file = a.run.join(store::POINTS_FILE);
    let mut inputs = vec![("run.json", run_file.as_path()), ("points.jsonl", points_file.as_path())];
    inputs.extend(a.cfg.as_deref().map(|p| ("--cfg", p)));
    inputs.extend(a.weights.as_deref().map(|p| ("--weights", p)));
    crate::fsio::refuse_input_as_output(&a.out, &inputs)?;
    let run = store::read(&a.run)?;
    let (cfg, weights) = store::model_files(&run, &a.run, a.cfg.as_deref(), a.weights.as_deref())?;
    let model = Model::open(&ModelFiles::of_paths(&cfg, &weights), Some(run.header.eval.img_size))?;
    let rule = match (&a.budget, &a.target) {
        (Some(b), None) => Rule::PerLayer(*b),
        (None, Some(t)) => Rule::Global { resource: a.resource, fraction: percent(t)? },
        _ => anyhow::bail!("give either --budget (per layer, e.g. 0.01 or 2%) or --target (global, e.g. 30%)"),
    };
    let metric = a.metric.unwrap_or(run.header.metric);
    let p = plan::suggest(&run, &a.run, &model, &rule, metric, &a.freeze)?;
    p.write(&a.out)?;
    print_plan(&p);
    println!("wrote {}", a.out.display());
    Ok(())
}

/// The plan as a table with its prediction.
pub fn print_plan(p: &Plan) {
    println!("{} pruning, {}", p.method, p.rule.as_deref().unwrap_or("set by hand"));
    let w = p.layers.iter().map(|l| l.layer.chars().count()).max().unwrap_or(0).max(10);
    println!("{:<w$} {:>9} {:>10} {:>10}", "layer", "sparsity", "drop", "origin");
    for l in &p.layers {
        let drop = l.predicted_drop.map(|d| format!("{d:.4}")).unwrap_or_else(|| "–".into());
        println!("{:<w$} {:>8.1}% {:>10} {:>10?}", l.layer, l.sparsity * 100.0, drop, l.origin);
    }
    let pr = &p.predicted;
    println!(
        "parameters {} -> {} (−{:.1}%)   MACs {} -> {} (−{:.1}%, ptflops convention, effective)",
        pr.params_before,
        pr.params_after,
        pr.params_reduction() * 100.0,
        pr.macs_before,
        pr.macs_after,
        pr.macs_reduction() * 100.0
    );
    if let (Some(b), Some(m)) = (pr.baseline, pr.metric) {
        println!(
            "{}: baseline {b:.4}, predicted {m:.4} (estimate: the sum of the layers' drops, {:.4})",
            p.metric.label(),
            pr.drop
        );
    }
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub plan: PathBuf,
    /// csv (layer, module, sparsity, origin, predicted drop), torch-pruning
    /// (`pruning_ratio_dict`) or nni (`config_list`).
    #[arg(long, value_parser = super::choice::<ExportFormat>())]
    pub format: ExportFormat,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run_export(a: &ExportArgs) -> anyhow::Result<()> {
    crate::fsio::refuse_input_as_output(&a.out, &[("--plan", &a.plan)])?;
    let p = Plan::read(&a.plan)?;
    crate::fsio::write_atomic(&a.out, p.export(a.format))?;
    println!("wrote {}", a.out.display());
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The Darknet cfg (with --weights).
    #[arg(long, required_unless_present = "model", conflicts_with = "model", requires = "weights")]
    pub cfg: Option<PathBuf>,
    /// The Darknet checkpoint (with --cfg).
    #[arg(long, requires = "cfg")]
    pub weights: Option<PathBuf>,
    /// An ONNX model instead of --cfg/--weights; the pruned model is written as ONNX (the
    /// same graph, its metadata and external-data layout kept).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The task of an ONNX file whose metadata does not say it.
    #[arg(long, requires = "model", value_parser = ["detect", "pose", "classify"])]
    pub task: Option<String>,
    #[arg(long)]
    pub plan: PathBuf,
    /// The pruned checkpoint; its extension picks the format (.weights, .pth, .safetensors;
    /// .onnx for an ONNX model).
    #[arg(long)]
    pub out: PathBuf,
    /// Then compare the original and the pruned checkpoint on this dataset…
    #[arg(long, requires = "compare")]
    pub data: Option<PathBuf>,
    /// …into this report folder (as `prunescope compare --plan` does).
    #[arg(long, requires = "data")]
    pub compare: Option<PathBuf>,
}

pub fn run_prune(a: &PruneArgs) -> anyhow::Result<()> {
    let files = match (&a.model, &a.cfg, &a.weights) {
        (Some(path), _, _) => ModelFiles::Onnx { path: path.clone(), task: a.task.clone() },
        (None, Some(cfg), Some(weights)) => ModelFiles::Darknet { cfg: cfg.clone(), weights: weights.clone() },
        _ => anyhow::bail!("give --model M.onnx, or --cfg C and --weights W"),
    };
    let mut inputs: Vec<(&str, &std::path::Path)> = vec![("--plan", &a.plan)];
    inputs.extend(a.cfg.as_deref().map(|p| ("--cfg", p)));
    inputs.extend(a.weights.as_deref().map(|p| ("--weights", p)));
    inputs.extend(a.model.as_deref().map(|p| ("--model", p)));
    crate::fsio::refuse_input_as_output(&a.out, &inputs)?;
    let p = Plan::read(&a.plan)?;
    let model = Model::open(&files, Some(p.img_size))?;
    p.check(&model).map_err(|e| e.in_file(&a.plan))?;
    let (counts, nonzero) = p.prune_into(&model, &a.out)?;
    let w = counts.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0).max(10);
    for (layer, c) in &counts {
        println!("{layer:<w$} {:>9} weights zeroed {:>5} filters", c.weights_zeroed, c.filters_zeroed);
    }
    println!("non-zero parameters {} -> {nonzero}; wrote {}", model.weights.count_nonzero(), a.out.display());
    if let (Some(data), Some(dir)) = (&a.data, &a.compare) {
        let origin = a.model.as_ref().or(a.weights.as_ref()).cloned().unwrap_or_default();
        let args = super::compare::Args {
            weights: vec![origin, a.out.clone()],
            cfg: a.cfg.clone(),
            data: data.clone(),
            out: dir.clone(),
            labels: vec!["origin".into(), "pruned".into()],
            img_size: Some(p.img_size),
            device: "cpu".into(),
            limit: None,
            latency_runs: 30,
            preprocess: match p.preprocess {
                crate::data::preprocess::Preprocess::Classify(preset) => Some(preset),
                _ => None,
            },
            plan: p.run.as_ref().map(|_| a.plan.clone()),
        };
        super::compare::run(&args)?;
    }
    Ok(())
}
