//! The run store: `run.json` (what was analysed, with content hashes) and `points.jsonl`
//! (a baseline line, then one line per finished point, appended and flushed as points
//! finish). Resuming reads the points back and skips them; a torn last line is ignored.
//!
//! run.json is written atomically (temporary file and rename) and names the model and the
//! dataset by paths relative to the run folder, so a run folder copied elsewhere together with
//! its files still loads (absolute paths of older runs are read as they are). A writer holds
//! the run folder's lock ([`crate::fsio::DirLock`]) while it is open, so two processes never
//! append to one run.

use super::Metrics;
use crate::fsio::{self, DirLock, LockError};
use crate::provenance;
use crate::prune::Method;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The `format` of run.json.
pub const RUN_FORMAT: &str = "prunescope.run/1";
pub const RUN_FILE: &str = "run.json";
pub const POINTS_FILE: &str = "points.jsonl";

use crate::provenance::{DatasetRef, ModelRef};

/// `--shard i/n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("shard `{s}`: expected i/n with 0 ≤ i < n, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Evaluation settings of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    pub img_size: u32,
    pub conf: f32,
    pub iou: f32,
    pub max_det: usize,
    /// How pictures become inputs (absent in runs made before classifiers: letterbox).
    #[serde(default)]
    pub preprocess: crate::data::preprocess::Preprocess,
}

/// run.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    pub format: String,
    pub model: ModelRef,
    pub dataset: DatasetRef,
    pub method: Method,
    pub sparsities: Vec<f64>,
    /// Analysed convolutions by name (`conv_{i}`), in cfg order.
    pub layers: Vec<String>,
    /// The metric plotted and used for thresholds (every metric is stored per point).
    pub metric: super::Metric,
    pub eval: EvalSettings,
    pub device: String,
    pub created_at: String,
    pub shard: Option<Shard>,
}

impl RunHeader {
    /// Everything that must agree for points to be comparable (not paths, time, device
    /// or shard).
    pub fn same_analysis(&self, other: &RunHeader) -> Result<(), Mismatch> {
        let checks: [(&'static str, bool, String, String); 7] = [
            (
                "cfg",
                self.model.cfg.sha256 == other.model.cfg.sha256,
                self.model.cfg.path.display().to_string(),
                other.model.cfg.path.display().to_string(),
            ),
            (
                "weights",
                self.model.weights.sha256 == other.model.weights.sha256,
                self.model.weights.path.display().to_string(),
                other.model.weights.path.display().to_string(),
            ),
            (
                "dataset",
                self.dataset.sha256 == other.dataset.sha256,
                format!("{} ({} images)", self.dataset.path.display(), self.dataset.images),
                format!("{} ({} images)", other.dataset.path.display(), other.dataset.images),
            ),
            ("method", self.method == other.method, self.method.to_string(), other.method.to_string()),
            (
                "sparsities",
                self.sparsities == other.sparsities,
                format!("{:?}", self.sparsities),
                format!("{:?}", other.sparsities),
            ),
            ("layers", self.layers == other.layers, self.layers.join(","), other.layers.join(",")),
            ("evaluation settings", self.eval == other.eval, format!("{:?}", self.eval), format!("{:?}", other.eval)),
        ];
        for (what, same, run, this) in checks {
            if !same {
                return Err(Mismatch { what, run, this });
            }
        }
        Ok(())
    }
}

/// One line of points.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Baseline { metrics: Metrics, seconds: f64 },
    Point(PointRecord),
}

/// A finished (layer, sparsity) point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    pub layer: String,
    pub block: usize,
    pub sparsity: f64,
    /// Weights of the layer set to zero.
    pub zeroed: usize,
    pub metrics: Metrics,
    pub seconds: f64,
}

/// A store error: each message names the file (and the line where there is one) and what was
/// wrong; an underlying failure is spelled out in the message and kept as the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file that cannot be read, created, opened or written (see [`crate::fsio::IoError`]).
    #[error("{0}")]
    Io(#[from] fsio::IoError),
    /// Another process holds the run folder's lock.
    #[error(
        "{}: another prunescope process is writing to this run folder ({holder}): wait for it to finish or stop it, or choose another folder",
        dir.display()
    )]
    Locked { dir: PathBuf, holder: String },
    /// run.json is not JSON.
    #[error("{}:{line}: not JSON: {source}", file.display())]
    Json {
        file: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// run.json of another format (or none).
    #[error("{}: {}", file.display(), match found {
        Some(f) => format!("format `{f}` is not supported: expected `{RUN_FORMAT}`"),
        None => format!("no `format` field: expected \"format\": \"{RUN_FORMAT}\""),
    })]
    Format { file: PathBuf, found: Option<String> },
    /// run.json whose fields are not those of a run.
    #[error("{}: unexpected content: {source}", file.display())]
    Content {
        file: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A line of points.jsonl (not the last, torn one) that is no record.
    #[error("{}:{line}: not a point record: {source}", file.display())]
    Record {
        file: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// A point of points.jsonl outside the grid of run.json.
    #[error(
        "{}:{line}: a point of {layer} (block {block}) at sparsity {sparsity}, which is not in the grid of {RUN_FILE}",
        file.display()
    )]
    OffGrid { file: PathBuf, line: usize, layer: String, block: usize, sparsity: f64 },
    /// A record that cannot be serialized.
    #[error("{}: cannot serialize a record: {source}", file.display())]
    Serialize {
        file: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A model file run.json names that is not there, and no path was given instead.
    #[error(
        "{}: the {what} the run was made with, {}, is not there (paths in run.json are relative to the run folder): give its path with {flag} PATH",
        file.display(), stored.display()
    )]
    ModelFileMissing { file: PathBuf, what: &'static str, stored: PathBuf, flag: &'static str },
    /// A run is already in the folder a new one was to start in; `advice` says what to do.
    #[error("{}: a run already exists here: {advice}", file.display())]
    RunExists { file: PathBuf, advice: &'static str },
    /// points.jsonl holds points but run.json is missing.
    #[error(
        "{}: {}: the folder holds points ({bytes} bytes) but no {RUN_FILE}, so what they were computed with is unknown; restore {RUN_FILE} to resume them, or choose another output folder (the points are left as they are)",
        file.display(), if *resume { "cannot resume" } else { "cannot start a run here" }
    )]
    OrphanPoints { file: PathBuf, bytes: u64, resume: bool },
    /// The stored run is of another analysis.
    #[error("{}: cannot resume: {source}; start a new run with another --out", file.display())]
    Resume {
        file: PathBuf,
        #[source]
        source: Mismatch,
    },
    /// The stored run is another shard.
    #[error("{}: cannot resume: the run is shard {stored:?}, this analysis is shard {this:?}", file.display())]
    Shard { file: PathBuf, stored: Option<Shard>, this: Option<Shard> },
}

impl StoreError {
    /// The file (or folder) the error is about.
    pub fn file(&self) -> &Path {
        match self {
            Self::Io(e) => &e.path,
            Self::Locked { dir: file, .. }
            | Self::Json { file, .. }
            | Self::Format { file, .. }
            | Self::Content { file, .. }
            | Self::Record { file, .. }
            | Self::OffGrid { file, .. }
            | Self::Serialize { file, .. }
            | Self::ModelFileMissing { file, .. }
            | Self::RunExists { file, .. }
            | Self::OrphanPoints { file, .. }
            | Self::Resume { file, .. }
            | Self::Shard { file, .. } => file,
        }
    }

    /// The line of the file the error is about, where there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Json { line, .. } | Self::Record { line, .. } | Self::OffGrid { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// What differs between two runs' analyses ([`RunHeader::same_analysis`]): `what` (cfg,
/// weights, dataset, method, …) and its value in each.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("mismatched {what}{}: the run has {run}, this analysis has {this}",
    if matches!(*what, "cfg" | "weights" | "dataset") { " (the content hashes differ)" } else { "" })]
pub struct Mismatch {
    pub what: &'static str,
    pub run: String,
    pub this: String,
}

/// Locks the run folder `dir` for writing (creating it), or says which process holds it.
pub fn lock(dir: &Path) -> Result<DirLock, StoreError> {
    DirLock::acquire(dir).map_err(|e| match e {
        LockError::Held { dir, holder } => StoreError::Locked { dir, holder },
        LockError::Io(e) => e.into(),
    })
}

/// A path run.json stores, resolved for reading ([`crate::provenance::resolve`]): relative to
/// the run folder `dir`, or for runs written before paths were stored that way, relative to
/// the folder the writer ran in; when neither exists, relative to a folder above the run
/// folder (a run made in a project folder and opened from elsewhere). A file found nowhere
/// resolves against the run folder (the error that follows names that path).
pub fn resolve(dir: &Path, stored: &Path) -> PathBuf {
    let p = provenance::resolve(dir, stored);
    if p.exists() || stored.is_absolute() {
        return p;
    }
    let above = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    above.ancestors().skip(1).map(|a| a.join(stored)).find(|c| c.exists()).unwrap_or(p)
}

/// The cfg and weights of a read run (resolved by [`read`]), or `cfg` / `weights` when given
/// instead. A file that is not there is an error that names it and the command-line flag that
/// points at it elsewhere.
pub fn model_files(
    run: &StoredRun,
    dir: &Path,
    cfg: Option<&Path>,
    weights: Option<&Path>,
) -> Result<(PathBuf, PathBuf), StoreError> {
    let pick = |given: Option<&Path>, stored: &Path, what, flag| -> Result<PathBuf, StoreError> {
        match given {
            Some(p) => Ok(p.to_path_buf()),
            None if stored.is_file() => Ok(stored.to_path_buf()),
            None => {
                Err(StoreError::ModelFileMissing { file: dir.join(RUN_FILE), what, stored: stored.to_path_buf(), flag })
            }
        }
    };
    Ok((
        pick(cfg, &run.header.model.cfg.path, "cfg", "--cfg")?,
        pick(weights, &run.header.model.weights.path, "weights", "--weights")?,
    ))
}

/// What a run folder holds.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub header: RunHeader,
    pub baseline: Option<(Metrics, f64)>,
    pub points: Vec<PointRecord>,
    /// Lines that could not be read (a torn last line after a kill), with their numbers.
    pub torn_lines: Vec<usize>,
}

/// Reads run.json and points.jsonl of `dir`.
pub fn read(dir: &Path) -> Result<StoredRun, StoreError> {
    let hp = dir.join(RUN_FILE);
    let text = std::fs::read_to_string(&hp).map_err(|e| fsio::IoError::new(&hp, "cannot read", e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|source| StoreError::Json {
        file: hp.clone(),
        line: source.line(),
        source,
    })?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(RUN_FORMAT) => {}
        found => return Err(StoreError::Format { file: hp, found: found.map(String::from) }),
    }
    let mut header: RunHeader =
        serde_json::from_value(value).map_err(|source| StoreError::Content { file: hp.clone(), source })?;
    for p in [&mut header.model.cfg.path, &mut header.model.weights.path, &mut header.dataset.path] {
        *p = resolve(dir, p);
    }
    let pp = dir.join(POINTS_FILE);
    let text = match std::fs::read_to_string(&pp) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(fsio::IoError::new(&pp, "cannot read", e).into()),
    };
    let mut run = StoredRun { header, baseline: None, points: Vec::new(), torn_lines: Vec::new() };
    let lines: Vec<&str> = text.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(Record::Baseline { metrics, seconds }) => run.baseline = Some((metrics, seconds)),
            Ok(Record::Point(p)) => {
                let grid = run.header.layers.contains(&p.layer)
                    && run.header.sparsities.iter().any(|s| s.to_bits() == p.sparsity.to_bits());
                if !grid {
                    return Err(StoreError::OffGrid {
                        file: pp,
                        line: n + 1,
                        layer: p.layer,
                        block: p.block,
                        sparsity: p.sparsity,
                    });
                }
                // A point written twice (two resumes racing) counts once.
                if !run.points.iter().any(|q| q.block == p.block && q.sparsity == p.sparsity) {
                    run.points.push(p);
                }
            }
            // Only the last line can be torn by a kill; anything else is damage.
            Err(_) if n + 1 == lines.len() && !text.ends_with('\n') => run.torn_lines.push(n + 1),
            Err(source) => return Err(StoreError::Record { file: pp, line: n + 1, source }),
        }
    }
    Ok(run)
}

/// An open run folder that points are appended to; it holds the folder's lock.
pub struct RunWriter {
    path: PathBuf,
    file: std::fs::File,
    _lock: DirLock,
}

/// Refuses a folder whose points.jsonl holds points but whose run.json is missing: they
/// belong to a run that cannot be identified, and are never overwritten.
fn refuse_orphan_points(dir: &Path, resume: bool) -> Result<(), StoreError> {
    let pp = dir.join(POINTS_FILE);
    let len = std::fs::metadata(&pp).map(|m| m.len()).unwrap_or(0);
    if len > 0 && !dir.join(RUN_FILE).exists() {
        return Err(StoreError::OrphanPoints { file: pp, bytes: len, resume });
    }
    Ok(())
}

impl RunWriter {
    /// Starts a new run in `dir`; refuses a folder that already holds one (or its points),
    /// or that another process writes to.
    pub fn create(dir: &Path, header: &RunHeader) -> Result<Self, StoreError> {
        let lock = lock(dir)?;
        let hp = dir.join(RUN_FILE);
        if hp.exists() {
            return Err(StoreError::RunExists {
                file: hp,
                advice: "resume it (--resume, or Resume in the explorer) or choose another output folder",
            });
        }
        refuse_orphan_points(dir, false)?;
        write_header(dir, header)?;
        let pp = dir.join(POINTS_FILE);
        let file = std::fs::File::create(&pp).map_err(|e| fsio::IoError::new(&pp, "cannot create", e))?;
        Ok(Self { path: pp, file, _lock: lock })
    }

    /// Resumes the run in `dir` when it has one, else starts it there (nothing to resume).
    /// Points without a run.json are refused, never truncated.
    pub fn open(dir: &Path, header: &RunHeader, resume: bool) -> Result<(Self, Option<StoredRun>), StoreError> {
        if resume && dir.join(RUN_FILE).exists() {
            let (w, s) = Self::resume(dir, header)?;
            return Ok((w, Some(s)));
        }
        refuse_orphan_points(dir, resume)?;
        Ok((Self::create(dir, header)?, None))
    }

    /// Reopens `dir` to continue it. The stored header must describe the same analysis
    /// (same model and dataset hashes, method, sparsities, layers, settings).
    pub fn resume(dir: &Path, header: &RunHeader) -> Result<(Self, StoredRun), StoreError> {
        let lock = lock(dir)?;
        if !dir.join(RUN_FILE).exists() {
            refuse_orphan_points(dir, true)?;
        }
        let stored = read(dir)?;
        stored
            .header
            .same_analysis(header)
            .map_err(|source| StoreError::Resume { file: dir.join(RUN_FILE), source })?;
        if stored.header.shard != header.shard {
            return Err(StoreError::Shard {
                file: dir.join(RUN_FILE),
                stored: stored.header.shard,
                this: header.shard,
            });
        }
        let pp = dir.join(POINTS_FILE);
        // Drop a torn last line so the next record starts on a line of its own.
        let mut text = std::fs::read_to_string(&pp).unwrap_or_default();
        if !stored.torn_lines.is_empty() || (!text.is_empty() && !text.ends_with('\n')) {
            let keep = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
            text.truncate(keep);
            fsio::write_atomic(&pp, &text)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pp)
            .map_err(|e| fsio::IoError::new(&pp, "cannot open", e))?;
        Ok((Self { path: pp, file, _lock: lock }, stored))
    }

    /// Appends one record and flushes it to the file.
    pub fn append(&mut self, record: &Record) -> Result<(), StoreError> {
        let mut line = serde_json::to_string(record)
            .map_err(|source| StoreError::Serialize { file: self.path.clone(), source })?;
        line.push('\n');
        // One write per line, so a kill can tear at most the last line.
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| fsio::IoError::new(&self.path, "cannot write", e).into())
    }
}

/// Writes run.json atomically, its paths relative to `dir`.
pub fn write_header(dir: &Path, header: &RunHeader) -> Result<(), StoreError> {
    let hp = dir.join(RUN_FILE);
    let mut header = header.clone();
    for p in [&mut header.model.cfg.path, &mut header.model.weights.path, &mut header.dataset.path] {
        *p = provenance::relative_to(dir, p);
    }
    let json =
        serde_json::to_string_pretty(&header).map_err(|source| StoreError::Serialize { file: hp.clone(), source })?;
    Ok(fsio::write_atomic(&hp, json + "\n")?)
}

/// Writes a complete run (merged shards) into `dir`, which must hold no run: points.jsonl
/// (baseline, points in the given order), then run.json, each atomically.
pub fn write_run(
    dir: &Path,
    header: &RunHeader,
    baseline: &(Metrics, f64),
    points: &[PointRecord],
) -> Result<(), StoreError> {
    let _lock = lock(dir)?;
    let hp = dir.join(RUN_FILE);
    if hp.exists() {
        return Err(StoreError::RunExists { file: hp, advice: "choose another output folder (it is never replaced)" });
    }
    refuse_orphan_points(dir, false)?;
    let pp = dir.join(POINTS_FILE);
    let serialize =
        |r: &Record| serde_json::to_string(r).map_err(|source| StoreError::Serialize { file: pp.clone(), source });
    let mut text = serialize(&Record::Baseline { metrics: baseline.0, seconds: baseline.1 })?;
    text.push('\n');
    for p in points {
        text.push_str(&serialize(&Record::Point(p.clone()))?);
        text.push('\n');
    }
    fsio::write_atomic(&pp, text)?;
    write_header(dir, header)
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> Result<String, StoreError> {
    provenance::file_sha256(path).map_err(|e| fsio::IoError::new(path, "cannot read", e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_syntax() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("a/2".parse::<Shard>().unwrap_err().contains("expected i/n"));
    }

    /// Paths are read back against the run folder; older runs' paths relative to the folder
    /// they were made from resolve through the folders above the run; absolute paths stay.
    #[test]
    fn paths_relative_to_the_run_folder() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let run = root.join("exp/runs/r1");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(root.join("exp/models")).unwrap();
        let cfg = root.join("exp/models/m.cfg");
        std::fs::write(&cfg, "x").unwrap();
        assert_eq!(provenance::relative_to(&run, &cfg), Path::new("../../models/m.cfg"));
        assert_eq!(resolve(&run, Path::new("../../models/m.cfg")), cfg);
        // Written from `root` by an older prunescope: `exp/models/m.cfg`.
        assert_eq!(resolve(&run, Path::new("exp/models/m.cfg")), cfg);
        assert_eq!(resolve(&run, &cfg), cfg);
        // Missing: resolved against the run folder, for the message.
        assert_eq!(resolve(&run, Path::new("../gone.cfg")), root.join("exp/runs/gone.cfg"));
    }

    /// A cause is kept as the error's source (to be inspected) and spelled out in its message
    /// once: `error::text` does not repeat it.
    #[test]
    fn causes_are_sources_printed_once() {
        let d = tempfile::tempdir().unwrap();
        let missing = read(d.path()).unwrap_err();
        let StoreError::Io(io) = &missing else { panic!("{missing:?}") };
        assert_eq!(io.source.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(missing.file(), d.path().join(RUN_FILE));
        let cause = std::error::Error::source(&missing).unwrap();
        assert!(cause.downcast_ref::<fsio::IoError>().is_some());
        assert_eq!(crate::error::text(&missing), missing.to_string());

        std::fs::write(d.path().join(RUN_FILE), "{\n  \"format\": ").unwrap();
        let e = read(d.path()).unwrap_err();
        assert!(matches!(e, StoreError::Json { line: 2, .. }), "{e:?}");
        assert_eq!(e.line(), Some(2));
        let json = std::error::Error::source(&e).unwrap();
        assert!(json.downcast_ref::<serde_json::Error>().is_some());
        let text = crate::error::text(&e);
        assert!(text.starts_with(&format!("{}:2: not JSON: ", d.path().join(RUN_FILE).display())), "{text}");
        assert_eq!(text.matches(&json.to_string()).count(), 1, "{text}");
        assert_eq!(text, e.to_string());
    }

    #[test]
    fn sha256_of_abc() {
        // FIPS 180-2 test vector.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("abc");
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(file_sha256(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
