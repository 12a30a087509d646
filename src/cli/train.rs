//! `prunescope train` and `prunescope finetune`: training on tch with a progress bar,
//! validation after each epoch and checkpoints; fine-tuning keeps pruned weights at zero.

use crate::data::{DetectionDataset, OnBad, Split};
use crate::eval::{self, EvalConfig};
use crate::model::{parse_device, Cfg, Darknet, Graph, Layout, Weights};
use crate::train::{self, trainer, OptimizerKind, TrainConfig};
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

/// Options shared by train and finetune.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Darknet cfg of the model.
    #[arg(long)]
    pub cfg: PathBuf,
    /// Dataset with `train` and `val` splits: an Ultralytics data.yaml or a Darknet .data.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 50, value_parser = |s: &str| crate::quantity::count_in(s, "epochs", 1, 100_000))]
    pub epochs: usize,
    /// Output folder (new or empty): last and best checkpoints and train_log.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 16, value_parser = crate::quantity::batch)]
    pub batch: usize,
    /// Square input size; default: the cfg's width.
    #[arg(long, value_parser = crate::quantity::img_size)]
    pub img_size: Option<u32>,
    /// Update rule (momentum / β1 0.937).
    #[arg(long, default_value = "sgd", value_parser = super::choice::<OptimizerKind>())]
    pub optimizer: OptimizerKind,
    /// Initial learning rate (after a linear warm-up, a cosine decays it to 1 % of this);
    /// default: 0.01 for SGD, 0.001 for Adam.
    #[arg(long, value_parser = |s: &str| crate::quantity::positive(s, "lr", 10.0))]
    pub lr: Option<f64>,
    /// Warm-up length in epochs.
    #[arg(long, default_value_t = 1.0, value_parser = |s: &str| crate::quantity::non_negative(s, "warmup", 1000.0))]
    pub warmup: f64,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Validate every N epochs (0: never; the last epoch is always validated).
    #[arg(long, default_value_t = 1)]
    pub val_every: usize,
    /// Checkpoint format: safetensors, weights or pth.
    #[arg(long, default_value = "safetensors")]
    pub save_as: String,
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub common: Common,
    /// Start from these weights instead of a fresh initialisation.
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub common: Common,
    /// The (pruned) checkpoint to fine-tune; its zero weights stay zero.
    #[arg(long)]
    pub weights: PathBuf,
}

pub fn run_train(a: &TrainArgs) -> anyhow::Result<()> {
    run(&a.common, a.weights.as_ref(), false)
}

pub fn run_finetune(a: &FinetuneArgs) -> anyhow::Result<()> {
    run(&a.common, Some(&a.weights), true)
}

fn run(c: &Common, weights: Option<&PathBuf>, keep_zeros: bool) -> anyhow::Result<()> {
    if !matches!(c.save_as.as_str(), "safetensors" | "weights" | "pth") {
        anyhow::bail!("--save-as {}: expected safetensors, weights or pth", c.save_as);
    }
    // Checkpoints and the log of an earlier training are never replaced or mixed with new ones.
    let non_empty = crate::fsio::non_empty_dir(&c.out);
    if c.out.is_file() || non_empty {
        anyhow::bail!(
            "--out {}: the folder exists and is not empty (an earlier training?); training writes last/best checkpoints and train_log.jsonl into a new or empty folder",
            c.out.display()
        );
    }
    let cfg = Cfg::from_file(&c.cfg)?;
    trainer::check_trainable(&cfg)?;
    let size = c.img_size.unwrap_or(cfg.width as u32);
    let graph = Graph::build(&cfg, 1, size as usize, size as usize)?;
    let layout = Layout::of(&cfg, &graph);
    let device = parse_device(&c.device)?;
    let train_ds = DetectionDataset::open_split(&c.data, Split::Train, Some(cfg.classes()), OnBad::Skip)?;
    let init = match weights {
        Some(p) => Weights::load(p, &layout)?,
        None => {
            let mut w = Weights::initialize(&layout, c.seed);
            let boxes: usize = train_ds.samples.iter().map(|s| s.boxes.len()).sum();
            trainer::prior_biases(&mut w, &cfg, &graph, boxes as f64 / train_ds.samples.len().max(1) as f64);
            w
        }
    };
    let val_ds = DetectionDataset::open_split(&c.data, Split::Val, Some(cfg.classes()), OnBad::Skip)?;
    if train_ds.num_classes() != cfg.classes() {
        anyhow::bail!(
            "{} names {} classes but the cfg has {}",
            c.data.display(),
            train_ds.num_classes(),
            cfg.classes()
        );
    }
    std::fs::create_dir_all(&c.out).with_context(|| format!("creating {}", c.out.display()))?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    eprintln!("decoding {} training images…", train_ds.samples.len());
    let (samples, skipped) = trainer::prepare(&train_ds, size, threads, OnBad::Skip)?;
    if !skipped.is_empty() || !train_ds.skipped.is_empty() {
        eprintln!("warning: {} / {}", train_ds.skipped.summary(3), skipped.summary(3));
    }
    let mut net = Darknet::new(&cfg, &graph, &init, device)?;
    let heads = trainer::heads(&cfg, &graph);
    let tc = TrainConfig {
        epochs: c.epochs,
        batch: c.batch,
        img_size: size,
        optimizer: c.optimizer,
        lr0: c.lr.unwrap_or(match c.optimizer {
            OptimizerKind::Sgd => 0.01,
            OptimizerKind::Adam => 0.001,
        }),
        warmup_epochs: c.warmup,
        seed: c.seed,
        keep_zeros,
        ..Default::default()
    };
    let steps = samples.len().div_ceil(c.batch.max(1));
    let bar = indicatif::ProgressBar::new((steps * c.epochs) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut log = std::fs::File::create(c.out.join("train_log.jsonl"))?;
    let ecfg = EvalConfig { img_size: size, ..Default::default() };
    let mut best = f64::NEG_INFINITY;
    let ext = c.save_as.clone();
    let reports = train::train(
        &mut net,
        &heads,
        &samples,
        &tc,
        &mut |epoch, step, steps, loss| {
            bar.set_prefix(format!("epoch {epoch}/{}", c.epochs));
            bar.set_message(format!("loss {loss:.3}"));
            bar.set_position(((epoch - 1) * steps + step) as u64);
        },
        &mut |net, report| {
            let validate = (c.val_every > 0 && report.epoch % c.val_every == 0) || report.epoch == c.epochs;
            let weights = net.to_weights().map_err(|e| e.to_string())?;
            let save = |name: &str| -> Result<(), String> {
                weights.save(&c.out.join(format!("{name}.{ext}")), &layout).map_err(|e| e.to_string())
            };
            save("last")?;
            let mut line = serde_json::to_value(report).map_err(|e| e.to_string())?;
            if validate {
                let r = eval::evaluate(net, &val_ds, &ecfg, &mut |_, _| true).map_err(|e| e.to_string())?;
                line["val_map50"] = r.map50.into();
                line["val_map"] = r.map.into();
                let msg = format!(
                    "epoch {:>3}: loss {:.4} (box {:.4} obj {:.4} cls {:.4}) lr {:.5}  val mAP@0.5 {:.4} mAP@0.5:0.95 {:.4}  {:.0} s",
                    report.epoch, report.loss, report.box_loss, report.obj_loss, report.cls_loss, report.lr, r.map50, r.map, report.seconds
                );
                if bar.is_hidden() {
                    eprintln!("{msg}");
                } else {
                    bar.println(msg);
                }
                if r.map > best {
                    best = r.map;
                    save("best")?;
                }
            }
            writeln!(log, "{line}").map_err(|e| e.to_string())?;
            Ok(true)
        },
    )?;
    bar.finish_and_clear();
    let last = reports.last().map(|r| r.loss).unwrap_or(f64::NAN);
    println!(
        "trained {} epochs (final loss {last:.4}); checkpoints in {} (best val mAP@0.5:0.95 {best:.4})",
        reports.len(),
        c.out.display()
    );
    Ok(())
}
