//! The module graph of ARCHITECTURE.md is the one the code has: every `crate::<module>` a
//! module uses is one its row of the table allows (or a base module), every module of
//! src/lib.rs has a row, and the engine never uses `anyhow`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(|t| t.trim_end_matches('/').to_string()).collect()
}

/// module -> (allowed modules, per-file extra allowances)
type Rules = BTreeMap<String, (BTreeSet<String>, Vec<(String, String)>)>;

fn rules() -> Rules {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| l.starts_with('|') && l.contains('`'))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    let all: BTreeSet<String> = rows.iter().map(|r| backticked(&r[1])[0].clone()).collect();
    // The rows from the one whose layer is `base` on are the base modules, which every module
    // may use.
    let first_base = rows.iter().position(|r| r[0] == "base").expect("a `base` layer in the table");
    let base: BTreeSet<String> = rows[first_base..].iter().map(|r| backticked(&r[1])[0].clone()).collect();
    let mut out = Rules::new();
    for r in &rows {
        let module = backticked(&r[1])[0].clone();
        let may = &r[3];
        let (mut allowed, mut extra) = (BTreeSet::new(), Vec::new());
        if let Some(rest) = may.strip_prefix("everything but") {
            let (but, files) = rest.split_once('(').unwrap_or((rest, ""));
            let excluded: BTreeSet<String> = backticked(but).into_iter().collect();
            allowed = all.iter().filter(|m| !excluded.contains(*m) && **m != module).cloned().collect();
            let f = backticked(files);
            for pair in f.chunks(2) {
                extra.push((pair[0].clone(), pair[1].clone()));
            }
        } else {
            allowed.extend(backticked(may));
        }
        allowed.extend(base.iter().filter(|b| **b != module).cloned());
        out.insert(module, (allowed, extra));
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_import_only_what_the_architecture_allows() {
    let rules = rules();
    let src = root().join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    let tabled: BTreeSet<String> = rules.keys().cloned().collect();
    assert_eq!(declared, tabled, "src/lib.rs and the table in ARCHITECTURE.md name different modules");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let module = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        let Some((allowed, extra)) = rules.get(&module) else { continue };
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for part in code.split("crate::").skip(1) {
                let used: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if used == module || !rules.contains_key(&used) {
                    continue;
                }
                let by_file = extra.iter().any(|(file, m)| rel == *file && *m == used);
                if !allowed.contains(&used) && !by_file {
                    problems.push(format!("src/{rel}:{}: `{module}` uses `crate::{used}`", n + 1));
                }
            }
            let engine = !["cli", "gui"].contains(&module.as_str());
            if engine && code.contains("anyhow") {
                problems.push(format!("src/{rel}:{}: the engine uses anyhow", n + 1));
            }
        }
    }
    assert!(problems.is_empty(), "imports against ARCHITECTURE.md:\n{}", problems.join("\n"));
}
