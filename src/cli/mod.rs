//! The command-line interface: one thin file per subcommand over the engine.

pub mod analyze;
pub mod cocoeval;
pub mod compare;
pub mod eval;
pub mod forward;
pub mod gui;
pub mod inspect;
pub mod plan;
pub mod synth;
pub mod train;

use crate::quantity::Named;
use clap::builder::TypedValueParser;
use clap::{Parser, Subcommand};

/// The clap value parser of an engine enum: its names as the possible values.
pub fn choice<T: Named>() -> impl TypedValueParser<Value = T> {
    clap::builder::PossibleValuesParser::new(T::ALL.iter().map(|v| v.name()))
        .map(|s| T::ALL.iter().copied().find(|v| v.name() == s).unwrap_or(T::ALL[0]))
}

/// Layer-wise pruning explorer for YOLO detectors.
#[derive(Debug, Parser)]
#[command(name = "prunescope", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per-layer shapes, parameters and MACs of a Darknet cfg (optionally checking weights).
    Inspect(inspect::Args),
    /// One forward pass of an input tensor (ONNX or Darknet); the outputs, and with
    /// --all-nodes every node output, written to a safetensors file.
    Forward(forward::Args),
    /// COCO bbox evaluation of a results file against ground truth (pycocotools' COCOeval).
    Cocoeval(cocoeval::Args),
    /// Evaluate a model on a validation set: mAP, P/R, per-class AP, confusion matrix.
    Eval(eval::Args),
    /// Generate the deterministic synthetic shapes dataset (YOLO layout + data.yaml).
    Synth(synth::Args),
    /// Train a Darknet model on a dataset's train split (validating on its val split).
    Train(train::TrainArgs),
    /// Fine-tune a (pruned) checkpoint; weights that are zero stay exactly zero.
    Finetune(train::FinetuneArgs),
    /// Layer-wise sensitivity analysis: prune one layer at a time at each sparsity, measure mAP.
    Analyze(analyze::Args),
    /// Join the shard runs of one analysis (`analyze --shard i/n`) into one run.
    Merge(analyze::MergeArgs),
    /// Suggest a pruning plan from a finished run: a per-layer budget or a global target.
    Suggest(plan::SuggestArgs),
    /// Export a plan as CSV, a Torch-Pruning pruning_ratio_dict or an NNI config_list.
    ExportPlan(plan::ExportArgs),
    /// Apply a plan to a checkpoint and save the pruned weights.
    Prune(plan::PruneArgs),
    /// Compare checkpoints: params, MACs, size, compressed size, mAP, confusion, latency.
    Compare(compare::Args),
    /// The desktop explorer (the default when no subcommand is given).
    Gui(gui::Args),
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Inspect(args)) => inspect::run(&args),
        Some(Command::Forward(args)) => forward::run(&args),
        Some(Command::Cocoeval(args)) => cocoeval::run(&args),
        Some(Command::Eval(args)) => eval::run(&args),
        Some(Command::Synth(args)) => synth::run(&args),
        Some(Command::Train(args)) => train::run_train(&args),
        Some(Command::Finetune(args)) => train::run_finetune(&args),
        Some(Command::Analyze(args)) => analyze::run(&args),
        Some(Command::Merge(args)) => analyze::run_merge(&args),
        Some(Command::Suggest(args)) => plan::run_suggest(&args),
        Some(Command::ExportPlan(args)) => plan::run_export(&args),
        Some(Command::Prune(args)) => plan::run_prune(&args),
        Some(Command::Compare(args)) => compare::run(&args),
        Some(Command::Gui(args)) => gui::run(&args),
        None => gui::run(&gui::Args::default()),
    }
}
