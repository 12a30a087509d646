//! Joining shard outputs (`--shard i/n` runs) into one run.

use super::store::{self, PointRecord, StoreError, StoredRun};
use std::path::{Path, PathBuf};

fn err(file: &Path, message: impl Into<String>) -> StoreError {
    StoreError { file: file.to_path_buf(), line: None, message: message.into() }
}

/// Reads the shard folders, checks they are the shards 0..n of one analysis, and writes the
/// merged run (header without shard, one baseline, every point in grid order) to `out`.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<StoredRun, StoreError> {
    let first = shards.first().ok_or_else(|| err(out, "give the shard folders to merge"))?;
    let runs: Vec<StoredRun> = shards.iter().map(|d| store::read(d)).collect::<Result<_, _>>()?;
    let head = &runs[0].header;
    let count = match head.shard {
        Some(s) => s.count,
        None => return Err(err(&first.join(store::RUN_FILE), "not a shard (no `shard` in run.json)")),
    };
    let mut seen = vec![None::<&PathBuf>; count];
    for (run, dir) in runs.iter().zip(shards) {
        let file = dir.join(store::RUN_FILE);
        head.same_analysis(&run.header).map_err(|m| err(&file, format!("does not match {}: {m}", first.display())))?;
        let shard = run.header.shard.ok_or_else(|| err(&file, "not a shard (no `shard` in run.json)"))?;
        if shard.count != count {
            return Err(err(
                &file,
                format!("is shard {}/{} but {} is of {count} shards", shard.index, shard.count, first.display()),
            ));
        }
        if let Some(other) = seen[shard.index] {
            return Err(err(&file, format!("shard {}/{count} is also {}", shard.index, other.display())));
        }
        seen[shard.index] = Some(dir);
    }
    if let Some(missing) = seen.iter().position(|s| s.is_none()) {
        return Err(err(out, format!("shard {missing}/{count} is missing: give all {count} shard folders")));
    }
    let baseline = runs
        .iter()
        .zip(shards)
        .find_map(|(r, _)| r.baseline)
        .ok_or_else(|| err(&first.join(store::POINTS_FILE), "no shard has a baseline"))?;
    let mut points: Vec<PointRecord> = runs.iter().flat_map(|r| r.points.iter().cloned()).collect();
    let layer_pos = |name: &str| head.layers.iter().position(|l| l == name).unwrap_or(usize::MAX);
    points.sort_by(|a, b| layer_pos(&a.layer).cmp(&layer_pos(&b.layer)).then(a.sparsity.total_cmp(&b.sparsity)));
    points.dedup_by(|a, b| a.block == b.block && a.sparsity == b.sparsity);
    let expected = head.layers.len() * head.sparsities.len();
    if points.len() != expected {
        return Err(err(
            out,
            format!("the shards hold {} of the {expected} points: finish them (run each again with --resume) before merging", points.len()),
        ));
    }
    let mut header = head.clone();
    header.shard = None;
    store::write_run(out, &header, &baseline, &points)?;
    Ok(StoredRun { header, baseline: Some(baseline), points, torn_lines: Vec::new() })
}
