//! What our files say about where they came from: the model and dataset files by path and
//! content hash, creation times, and paths stored relative to the file that names them (so a
//! run or plan copied from a GPU server, folder and all, still opens).

use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

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

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> Result<String, std::io::Error> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
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

/// `target` as a path relative to the folder `base` when both are on one root (`../model.cfg`),
/// else `target` made absolute. Both are resolved through the file system where they exist.
pub fn relative_to(base: &Path, target: &Path) -> PathBuf {
    let abs = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
            }
        })
    };
    let (b, t) = (abs(base), abs(target));
    let (bc, tc): (Vec<Component>, Vec<Component>) = (b.components().collect(), t.components().collect());
    if bc.first() != tc.first() {
        return t;
    }
    let common = bc.iter().zip(&tc).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..bc.len() {
        rel.push("..");
    }
    for c in &tc[common..] {
        rel.push(c.as_os_str());
    }
    if rel.as_os_str().is_empty() {
        rel.push(".");
    }
    rel
}

/// A path stored in a file in the folder `base`: relative paths are read relative to that
/// folder; files written before paths were stored that way hold paths relative to the folder
/// the writer ran in, which are used when they exist and the folder-relative one does not.
pub fn resolve(base: &Path, stored: &Path) -> PathBuf {
    if stored.is_absolute() {
        return stored.to_path_buf();
    }
    let beside = normalize(&base.join(stored));
    let found = if !beside.exists() && stored.exists() { stored.to_path_buf() } else { beside };
    absolute(&found)
}

/// `path` made absolute and free of links when it exists (so two spellings of one file compare
/// equal), else as it is.
pub fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `a/./b/../c` as `a/c`, without asking the file system (a `..` at the start is kept).
fn normalize(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().map(|c| c.as_os_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_relative_to_a_folder_and_back() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("runs/a");
        std::fs::create_dir_all(&run).unwrap();
        let cfg = d.path().join("model.cfg");
        std::fs::write(&cfg, "").unwrap();
        let rel = relative_to(&run, &cfg);
        assert_eq!(rel, Path::new("../../model.cfg"));
        assert_eq!(std::fs::canonicalize(resolve(&run, &rel)).unwrap(), std::fs::canonicalize(&cfg).unwrap());
        // The folder moved elsewhere with its files: still found.
        let moved = d.path().join("copy");
        std::fs::create_dir_all(moved.join("runs/a")).unwrap();
        std::fs::write(moved.join("model.cfg"), "").unwrap();
        assert!(resolve(&moved.join("runs/a"), &rel).is_file());
        assert_eq!(relative_to(&run, &run), Path::new("."));
    }
}
