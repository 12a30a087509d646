//! Joining shard outputs (`--shard i/n` runs) into one run.

use super::store::{self, Mismatch, PointRecord, StoreError, StoredRun};
use std::path::{Path, PathBuf};

/// Why shards could not be merged: each message names the folder or file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A shard that cannot be read, or an output that cannot be written.
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{}: give the shard folders to merge", out.display())]
    NoShards { out: PathBuf },
    /// A run that was not made with `--shard`.
    #[error("{}: not a shard (no `shard` in run.json)", file.display())]
    NotAShard { file: PathBuf },
    /// A shard of another analysis than the first.
    #[error("{}: does not match {}: {source}", file.display(), first.display())]
    Mismatch {
        file: PathBuf,
        first: PathBuf,
        #[source]
        source: Mismatch,
    },
    /// A shard of a split into another number of shards.
    #[error("{}: is shard {index}/{count} but {} is of {expected} shards", file.display(), first.display())]
    ShardCount { file: PathBuf, index: usize, count: usize, first: PathBuf, expected: usize },
    /// The same shard given twice.
    #[error("{}: shard {index}/{count} is also {}", file.display(), other.display())]
    Duplicate { file: PathBuf, index: usize, count: usize, other: PathBuf },
    #[error("{}: shard {index}/{count} is missing: give all {count} shard folders", out.display())]
    MissingShard { out: PathBuf, index: usize, count: usize },
    #[error("{}: no shard has a baseline", file.display())]
    NoBaseline { file: PathBuf },
    /// Shards with points still to compute.
    #[error(
        "{}: the shards hold {points} of the {expected} points: finish them (run each again with --resume) before merging",
        out.display()
    )]
    Unfinished { out: PathBuf, points: usize, expected: usize },
}

/// Reads the shard folders, checks they are the shards 0..n of one analysis, and writes the
/// merged run (header without shard, one baseline, every point in grid order) to `out`.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<StoredRun, MergeError> {
    let first = shards.first().ok_or_else(|| MergeError::NoShards { out: out.to_path_buf() })?;
    let runs: Vec<StoredRun> = shards.iter().map(|d| store::read(d)).collect::<Result<_, _>>()?;
    let head = &runs[0].header;
    let count = match head.shard {
        Some(s) => s.count,
        None => return Err(MergeError::NotAShard { file: first.join(store::RUN_FILE) }),
    };
    let mut seen = vec![None::<&PathBuf>; count];
    for (run, dir) in runs.iter().zip(shards) {
        let file = dir.join(store::RUN_FILE);
        if let Err(source) = head.same_analysis(&run.header) {
            return Err(MergeError::Mismatch { file, first: first.clone(), source });
        }
        let Some(shard) = run.header.shard else { return Err(MergeError::NotAShard { file }) };
        if shard.count != count {
            return Err(MergeError::ShardCount {
                file,
                index: shard.index,
                count: shard.count,
                first: first.clone(),
                expected: count,
            });
        }
        if let Some(other) = seen[shard.index] {
            return Err(MergeError::Duplicate { file, index: shard.index, count, other: other.clone() });
        }
        seen[shard.index] = Some(dir);
    }
    if let Some(missing) = seen.iter().position(|s| s.is_none()) {
        return Err(MergeError::MissingShard { out: out.to_path_buf(), index: missing, count });
    }
    let baseline = runs
        .iter()
        .zip(shards)
        .find_map(|(r, _)| r.baseline)
        .ok_or_else(|| MergeError::NoBaseline { file: first.join(store::POINTS_FILE) })?;
    let mut points: Vec<PointRecord> = runs.iter().flat_map(|r| r.points.iter().cloned()).collect();
    let layer_pos = |name: &str| head.layers.iter().position(|l| l == name).unwrap_or(usize::MAX);
    points.sort_by(|a, b| layer_pos(&a.layer).cmp(&layer_pos(&b.layer)).then(a.sparsity.total_cmp(&b.sparsity)));
    points.dedup_by(|a, b| a.block == b.block && a.sparsity == b.sparsity);
    let expected = head.layers.len() * head.sparsities.len();
    if points.len() != expected {
        return Err(MergeError::Unfinished { out: out.to_path_buf(), points: points.len(), expected });
    }
    let mut header = head.clone();
    header.shard = None;
    store::write_run(out, &header, &baseline, &points)?;
    Ok(StoredRun { header, baseline: Some(baseline), points, torn_lines: Vec::new() })
}
