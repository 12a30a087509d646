//! The run store: `run.json` (what was analysed, with content hashes) and `points.jsonl`
//! (a baseline line, then one line per finished point, appended and flushed as points
//! finish). Resuming reads the points back and skips them; a torn last line is ignored.

use super::Metrics;
use crate::prune::Method;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The `format` of run.json.
pub const RUN_FORMAT: &str = "prunescope.run/1";
pub const RUN_FILE: &str = "run.json";
pub const POINTS_FILE: &str = "points.jsonl";

/// A file and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub path: PathBuf,
    pub sha256: String,
}

/// The model analysed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub cfg: FileRef,
    pub weights: FileRef,
}

/// The validation set analysed: where, how many images, and a hash of the image list and
/// its labels (so a changed subset or label is noticed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRef {
    pub path: PathBuf,
    pub images: usize,
    pub sha256: String,
}

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
    pub fn same_analysis(&self, other: &RunHeader) -> Result<(), String> {
        let checks: [(&str, bool, String, String); 7] = [
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
        for (what, same, a, b) in checks {
            if !same {
                let hint = if what == "cfg" || what == "weights" || what == "dataset" {
                    " (the content hashes differ)"
                } else {
                    ""
                };
                return Err(format!("mismatched {what}{hint}: the run has {a}, this analysis has {b}"));
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

/// A store error names the file and what was wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct StoreError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

fn err(file: &Path, line: Option<usize>, message: impl Into<String>) -> StoreError {
    StoreError { file: file.to_path_buf(), line, message: message.into() }
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
    let text = std::fs::read_to_string(&hp).map_err(|e| err(&hp, None, format!("cannot read: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(&hp, Some(e.line()), format!("not JSON: {e}")))?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(RUN_FORMAT) => {}
        Some(other) => {
            return Err(err(&hp, None, format!("format `{other}` is not supported: expected `{RUN_FORMAT}`")))
        }
        None => return Err(err(&hp, None, format!("no `format` field: expected \"format\": \"{RUN_FORMAT}\""))),
    }
    let header: RunHeader =
        serde_json::from_value(value).map_err(|e| err(&hp, None, format!("unexpected content: {e}")))?;
    let pp = dir.join(POINTS_FILE);
    let text = match std::fs::read_to_string(&pp) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(err(&pp, None, format!("cannot read: {e}"))),
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
                // A point written twice (two resumes racing) counts once.
                if !run.points.iter().any(|q| q.block == p.block && q.sparsity == p.sparsity) {
                    run.points.push(p);
                }
            }
            // Only the last line can be torn by a kill; anything else is damage.
            Err(_) if n + 1 == lines.len() && !text.ends_with('\n') => run.torn_lines.push(n + 1),
            Err(e) => return Err(err(&pp, Some(n + 1), format!("not a point record: {e}"))),
        }
    }
    Ok(run)
}

/// An open run folder that points are appended to.
pub struct RunWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl RunWriter {
    /// Starts a new run in `dir`; refuses a folder that already holds one.
    pub fn create(dir: &Path, header: &RunHeader) -> Result<Self, StoreError> {
        let hp = dir.join(RUN_FILE);
        if hp.exists() {
            return Err(err(
                &hp,
                None,
                "a run already exists here: resume it (--resume, or Resume in the explorer) or choose another output folder",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| err(dir, None, format!("cannot create: {e}")))?;
        write_header(dir, header)?;
        let pp = dir.join(POINTS_FILE);
        let file = std::fs::File::create(&pp).map_err(|e| err(&pp, None, format!("cannot create: {e}")))?;
        Ok(Self { path: pp, file })
    }

    /// Reopens `dir` to continue it. The stored header must describe the same analysis
    /// (same model and dataset hashes, method, sparsities, layers, settings).
    pub fn resume(dir: &Path, header: &RunHeader) -> Result<(Self, StoredRun), StoreError> {
        let stored = read(dir)?;
        stored.header.same_analysis(header).map_err(|m| {
            err(&dir.join(RUN_FILE), None, format!("cannot resume: {m}; start a new run with another --out"))
        })?;
        if stored.header.shard != header.shard {
            return Err(err(
                &dir.join(RUN_FILE),
                None,
                format!(
                    "cannot resume: the run is shard {:?}, this analysis is shard {:?}",
                    stored.header.shard, header.shard
                ),
            ));
        }
        let pp = dir.join(POINTS_FILE);
        // Drop a torn last line so the next record starts on a line of its own.
        let mut text = std::fs::read_to_string(&pp).unwrap_or_default();
        if !stored.torn_lines.is_empty() || (!text.is_empty() && !text.ends_with('\n')) {
            let keep = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
            text.truncate(keep);
            std::fs::write(&pp, &text).map_err(|e| err(&pp, None, format!("cannot repair: {e}")))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pp)
            .map_err(|e| err(&pp, None, format!("cannot open: {e}")))?;
        Ok((Self { path: pp, file }, stored))
    }

    /// Appends one record and flushes it to the file.
    pub fn append(&mut self, record: &Record) -> Result<(), StoreError> {
        let mut line = serde_json::to_string(record).map_err(|e| err(&self.path, None, e.to_string()))?;
        line.push('\n');
        // One write per line, so a kill can tear at most the last line.
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| err(&self.path, None, format!("cannot write: {e}")))
    }
}

/// Writes run.json.
pub fn write_header(dir: &Path, header: &RunHeader) -> Result<(), StoreError> {
    let hp = dir.join(RUN_FILE);
    let json = serde_json::to_string_pretty(header).map_err(|e| err(&hp, None, e.to_string()))?;
    std::fs::write(&hp, json + "\n").map_err(|e| err(&hp, None, format!("cannot write: {e}")))
}

/// Writes a complete run (merged shards): header, baseline, points in the given order.
pub fn write_run(
    dir: &Path,
    header: &RunHeader,
    baseline: &(Metrics, f64),
    points: &[PointRecord],
) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, None, format!("cannot create: {e}")))?;
    write_header(dir, header)?;
    let pp = dir.join(POINTS_FILE);
    let mut text = serde_json::to_string(&Record::Baseline { metrics: baseline.0, seconds: baseline.1 })
        .map_err(|e| err(&pp, None, e.to_string()))?;
    text.push('\n');
    for p in points {
        text.push_str(&serde_json::to_string(&Record::Point(p.clone())).map_err(|e| err(&pp, None, e.to_string()))?);
        text.push('\n');
    }
    std::fs::write(&pp, text).map_err(|e| err(&pp, None, format!("cannot write: {e}")))
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> Result<String, StoreError> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).map_err(|e| err(path, None, format!("cannot read: {e}")))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| err(path, None, format!("cannot read: {e}")))?;
    Ok(hex(&h.finalize()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// UTC now as RFC 3339 (seconds).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
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

    #[test]
    fn sha256_of_abc() {
        // FIPS 180-2 test vector.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("abc");
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(file_sha256(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
