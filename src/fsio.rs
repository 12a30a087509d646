//! Writing outputs so that a kill never leaves a torn file: every output is written to a
//! temporary file in the destination's folder and renamed into place (rename is atomic on one
//! file system), and a folder of outputs is built beside its destination and swapped in whole.
//! Also the advisory lock that keeps a second writer out of a run folder.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An I/O failure on a named path.
#[derive(Debug, thiserror::Error)]
#[error("{}: {what}: {source}", path.display())]
pub struct IoError {
    pub path: PathBuf,
    pub what: &'static str,
    #[source]
    pub source: io::Error,
}

impl IoError {
    pub fn new(path: &Path, what: &'static str, source: io::Error) -> Self {
        Self { path: path.to_path_buf(), what, source }
    }
}

/// A failure while producing an output: the I/O error, or what the producer reported.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{0}")]
    Other(String),
}

impl From<String> for WriteError {
    fn from(s: String) -> Self {
        Self::Other(s)
    }
}

/// A sibling of `path` that nothing else uses: `.NAME.tmp-PID-N` in the same folder.
fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let n = N.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{tag}-{}-{n}", std::process::id()))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `path` through `fill`, which receives a temporary path in the same folder (with the
/// same extension, for writers that look at it); the result is renamed into place only when
/// `fill` succeeds, so `path` is either its old content or the complete new one.
pub fn write_via<E>(path: &Path, fill: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E>
where
    E: From<IoError>,
{
    let mut tmp = temp_sibling(path, "tmp");
    if let Some(ext) = path.extension() {
        let mut name = tmp.file_name().unwrap_or_default().to_os_string();
        name.push(".");
        name.push(ext);
        tmp.set_file_name(name);
    }
    let result = fill(&tmp).and_then(|()| {
        // Make the data durable before the name points at it.
        if let Ok(f) = File::open(&tmp) {
            let _ = f.sync_all();
        }
        std::fs::rename(&tmp, path).map_err(|e| E::from(IoError::new(path, "cannot write", e)))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically (temporary file + rename).
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), IoError> {
    write_via(path, |tmp| {
        let mut f = File::create(tmp).map_err(|e| IoError::new(path, "cannot write", e))?;
        f.write_all(bytes.as_ref()).and_then(|_| f.flush()).map_err(|e| IoError::new(path, "cannot write", e))
    })
}

/// Builds the folder `dir` through `fill`, which receives an empty temporary folder beside it;
/// on success the folder replaces `dir` whole, so `dir` is always complete or absent (an older
/// complete `dir` is kept until the new one is in place).
pub fn write_dir_via<E>(dir: &Path, fill: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E>
where
    E: From<IoError>,
{
    let parent = parent_of(dir);
    std::fs::create_dir_all(parent).map_err(|e| E::from(IoError::new(parent, "cannot create the folder", e)))?;
    let tmp = temp_sibling(dir, "tmp");
    std::fs::create_dir(&tmp).map_err(|e| E::from(IoError::new(&tmp, "cannot create the folder", e)))?;
    let result = fill(&tmp).and_then(|()| {
        let old = temp_sibling(dir, "old");
        let had_old = dir.exists();
        if had_old {
            std::fs::rename(dir, &old).map_err(|e| E::from(IoError::new(dir, "cannot replace", e)))?;
        }
        match std::fs::rename(&tmp, dir) {
            Ok(()) => {
                if had_old {
                    let _ = std::fs::remove_dir_all(&old);
                }
                Ok(())
            }
            Err(e) => {
                if had_old {
                    let _ = std::fs::rename(&old, dir);
                }
                Err(E::from(IoError::new(dir, "cannot write", e)))
            }
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// True when `dir` is a folder with at least one entry (false when it is absent or unreadable).
pub fn non_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false)
}

/// True when `a` and `b` name the same existing file (through links and relative paths).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Bytes that are not UTF-8: the line and column of the first bad byte, and the byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: byte 0x{byte:02x} is not UTF-8; save the file as UTF-8")]
pub struct NotUtf8 {
    pub line: usize,
    pub column: usize,
    pub byte: u8,
}

/// The text of a file's bytes: a UTF-8 byte-order mark is skipped; bytes that are not UTF-8
/// are named by line and column (a Latin-1 `é` saved by an old editor, say).
pub fn utf8_text(bytes: &[u8]) -> Result<&str, NotUtf8> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        let col = at - bytes[..at].iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0) + 1;
        NotUtf8 { line, column: col, byte: bytes[at] }
    })
}

/// Two paths naming the same file or folder (falls back to comparing them as written, for
/// paths that do not exist).
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// An output path that names one of the command's inputs (`what`: `--weights`, `cfg`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: this is the input {what}; outputs never replace their inputs: choose another output file", out.display())]
pub struct InputIsOutput {
    pub out: PathBuf,
    pub what: String,
}

/// Refuses an output path that names one of the inputs (`(what, path)` pairs, e.g.
/// `("--weights", w)`): outputs never replace what they are made from.
pub fn refuse_input_as_output(out: &Path, inputs: &[(&str, &Path)]) -> Result<(), InputIsOutput> {
    for (what, input) in inputs {
        if same_file(out, input) {
            return Err(InputIsOutput { out: out.to_path_buf(), what: what.to_string() });
        }
    }
    Ok(())
}

/// An advisory, exclusive lock on a folder (the file `.prunescope.lock` in it), held until
/// dropped. The holder's process id and command are written into the lock file so that a
/// refused second writer can say who holds it. The OS releases the lock when the process
/// dies, so a crash never leaves a folder locked.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

/// Why a folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}: another prunescope process is writing to this folder ({holder}); wait for it to finish or stop it, or choose another folder", dir.display())]
    Held { dir: PathBuf, holder: String },
    #[error(transparent)]
    Io(#[from] IoError),
}

/// The lock file's name inside a locked folder.
pub const LOCK_FILE: &str = ".prunescope.lock";

impl DirLock {
    /// Locks `dir` (creating it if needed) or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        std::fs::create_dir_all(dir).map_err(|e| IoError::new(dir, "cannot create the folder", e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| IoError::new(&path, "cannot open the lock file", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let holder = if holder.is_empty() { "process unknown".to_string() } else { holder.to_string() };
                return Err(LockError::Held { dir: dir.to_path_buf(), holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(IoError::new(&path, "cannot lock", e).into()),
        }
        let me = format!(
            "pid {}: {}",
            std::process::id(),
            std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(300)
                .collect::<String>()
        );
        let _ = file.set_len(0).and_then(|_| file.write_all(me.as_bytes())).and_then(|_| file.flush());
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_keeps_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_atomic(&p, b"old").unwrap();
        let r: Result<(), IoError> = write_via(&p, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(IoError::new(tmp, "cannot write", io::Error::other("killed")))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_folder_is_complete_or_absent() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("report");
        write_dir_via(&out, |t| std::fs::write(t.join("a"), b"1").map_err(|e| IoError::new(t, "w", e))).unwrap();
        let r: Result<(), IoError> = write_dir_via(&out, |t| {
            std::fs::write(t.join("b"), b"2").unwrap();
            Err(IoError::new(t, "w", io::Error::other("killed")))
        });
        assert!(r.is_err());
        let names: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a")]);
        write_dir_via(&out, |t| std::fs::write(t.join("c"), b"3").map_err(|e| IoError::new(t, "w", e))).unwrap();
        let names: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c")]);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn text_with_a_bom_or_latin1() {
        assert_eq!(utf8_text(b"\xEF\xBB\xBF{}").unwrap(), "{}");
        let e = utf8_text(b"{\n  \"a\": \"caf\xe9\"\n}").unwrap_err();
        assert_eq!(e, NotUtf8 { line: 2, column: 12, byte: 0xe9 });
        assert!(e.to_string().starts_with("line 2, column 12: byte 0xe9 is not UTF-8"), "{e}");
    }

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let a = DirLock::acquire(d.path()).unwrap();
        let e = DirLock::acquire(d.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(a);
        DirLock::acquire(d.path()).unwrap();
    }
}
