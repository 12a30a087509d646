//! `prunescope synth`: the deterministic synthetic shapes dataset.

use crate::data::synth::{self, SynthConfig};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output folder: created; it must not exist or be empty (old and new files are never mixed).
    #[arg(long)]
    pub out: PathBuf,
    /// Training images.
    #[arg(long, default_value_t = 2000, value_parser = |s: &str| crate::quantity::count_in(s, "train", 0, 1_000_000))]
    pub train: usize,
    /// Validation images.
    #[arg(long, default_value_t = 300, value_parser = |s: &str| crate::quantity::count_in(s, "val", 1, 1_000_000))]
    pub val: usize,
    /// Seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cfg = SynthConfig { train: args.train, val: args.val, seed: args.seed, ..Default::default() };
    let bar = indicatif::ProgressBar::new((args.train + args.val) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("synth [{bar:30}] {pos}/{len} images  {per_sec}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    synth::generate(&args.out, &cfg, threads, &|done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    println!(
        "wrote {} training and {} validation images with labels and {}",
        args.train,
        args.val,
        args.out.join("data.yaml").display()
    );
    Ok(())
}
