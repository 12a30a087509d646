//! `prunescope cocoeval`: pycocotools' bbox evaluation of a COCO results file, without Python.

use crate::data::coco_json;
use crate::metrics::coco;
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// COCO ground-truth json (images, annotations, categories).
    #[arg(long)]
    pub gt: PathBuf,
    /// COCO results json: a list of {image_id, category_id, bbox, score}.
    #[arg(long)]
    pub dets: PathBuf,
    /// Print {"bbox": [12 stats], "per_class_ap50": {...}} instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Output {
    bbox: [f64; 12],
    per_class_ap50: BTreeMap<String, f64>,
    per_class_ap: BTreeMap<String, f64>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let gt = coco_json::read_gt(&args.gt)?;
    let dets = coco_json::read_detections(&args.dets)?;
    let result = coco::evaluate(&gt, &dets).with_context(|| args.dets.display().to_string())?;
    if args.json {
        let out = Output {
            bbox: result.stats,
            per_class_ap50: result.per_class_ap50().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            per_class_ap: result.per_class_ap().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", result.summary());
        let names: BTreeMap<i64, &str> = gt.categories.iter().map(|c| (c.id, c.name.as_str())).collect();
        let ap = result.per_class_ap();
        println!("\n{:>6}  {:<24} {:>8} {:>10}", "id", "category", "AP50", "AP50:95");
        for (id, ap50) in result.per_class_ap50() {
            println!("{:>6}  {:<24} {:>8.4} {:>10.4}", id, names.get(&id).copied().unwrap_or(""), ap50, ap[&id]);
        }
    }
    Ok(())
}
