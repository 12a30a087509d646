//! What our files say about where they came from: paths stored relative to the file that
//! names them (so a run or plan copied from a GPU server, folder and all, still opens).

use std::path::{Component, Path, PathBuf};

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
    if !beside.exists() && stored.exists() {
        return stored.to_path_buf();
    }
    beside
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
