//! `prunescope synth`: the deterministic synthetic datasets (shapes for detection, polygons for
//! classification).

use crate::data::synth::{self, SynthConfig};
use crate::data::synth_classify::{self, ClassifyConfig};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output folder: created; it must not exist or be empty (old and new files are never mixed).
    #[arg(long)]
    pub out: PathBuf,
    /// detect: the shapes set (YOLO layout + data.yaml); classify: the 20-class polygons set
    /// (image folders train/CLASS, val/CLASS).
    #[arg(long, default_value = "detect", value_parser = ["detect", "classify"])]
    pub task: String,
    /// Training images (classify: per class; default 2000, classify 150).
    #[arg(long, value_parser = |s: &str| crate::quantity::count_in(s, "train", 0, 1_000_000))]
    pub train: Option<usize>,
    /// Validation images (classify: per class; default 300, classify 30).
    #[arg(long, value_parser = |s: &str| crate::quantity::count_in(s, "val", 1, 1_000_000))]
    pub val: Option<usize>,
    /// Seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let classify = args.task == "classify";
    let (train, val) = if classify {
        (args.train.unwrap_or(150), args.val.unwrap_or(30))
    } else {
        (args.train.unwrap_or(2000), args.val.unwrap_or(300))
    };
    let per = if classify { synth_classify::CLASSES.len() } else { 1 };
    let bar = indicatif::ProgressBar::new(((train + val) * per) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("synth [{bar:30}] {pos}/{len} images  {per_sec}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let progress = |done: usize, _| bar.set_position(done as u64);
    if classify {
        let cfg = ClassifyConfig { train_per_class: train, val_per_class: val, seed: args.seed, ..Default::default() };
        synth_classify::generate(&args.out, &cfg, threads, &progress)?;
        bar.finish_and_clear();
        println!(
            "wrote {} training and {} validation images of {} classes in {}/{{train,val}}/CLASS",
            train * per,
            val * per,
            per,
            args.out.display()
        );
    } else {
        let cfg = SynthConfig { train, val, seed: args.seed, ..Default::default() };
        synth::generate(&args.out, &cfg, threads, &progress)?;
        bar.finish_and_clear();
        println!(
            "wrote {train} training and {val} validation images with labels and {}",
            args.out.join("data.yaml").display()
        );
    }
    Ok(())
}
