//! Seeded mutation fuzzing of the run store: run.json and points.jsonl of the bundled
//! sensitivity-l1 run, damaged (bit flips, truncation, duplicated, deleted and swapped lines,
//! huge, NaN and infinite numbers, deep nesting, long strings, renamed keys), are read back and
//! resumed. Every case must end without a panic, with an error that names the damaged file
//! when it fails, and within a bounded allocation. Reproducible: a failure names the seed and
//! the case index (`PRUNESCOPE_FUZZ_SEED`, `PRUNESCOPE_FUZZ_CASES` change them).

mod common;

use common::fuzz::{insert_random_bytes, panic_message, replace_number, Counting, Rng};
use prunescope::sensitivity::store::{self, RunWriter};
use std::path::{Path, PathBuf};

#[global_allocator]
static ALLOC: Counting = Counting::new();

/// The most a case may allocate above what was allocated when it began.
const CASE_ALLOCATION_LIMIT: usize = 256 << 20;

const NUMBERS: &[&str] = &[
    "1e999",
    "-1e999",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "1.7976931348623157e308",
    "-0",
    "0",
    "18446744073709551616",
    "-1",
    "4294967296",
    "99999999999999999999999999999999999999999999999999999999999999999999999999999999",
    "1e-400",
    "0.30000000000000004",
    "1.0",
    "\"0.5\"",
    "null",
    "true",
];

fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split_inclusive(|b| *b == b'\n').map(|l| l.to_vec()).collect()
}

/// One random change of `bytes`; what it did, for the report.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let len = bytes.len();
    match rng.below(11) {
        0 => {
            let (i, bit) = (rng.below(len.max(1)), rng.below(8));
            if let Some(b) = bytes.get_mut(i) {
                *b ^= 1 << bit;
            }
            format!("flip bit {bit} of byte {i}")
        }
        1 => {
            let at = rng.below(len + 1);
            bytes.truncate(at);
            format!("truncate at {at}")
        }
        2 | 3 => {
            let mut lines = lines_of(bytes);
            if lines.is_empty() {
                return "no lines".into();
            }
            let k = rng.below(lines.len());
            let what = match rng.below(3) {
                0 => {
                    let l = lines[k].clone();
                    let at = rng.below(lines.len() + 1);
                    lines.insert(at, l);
                    format!("duplicate line {k} at {at}")
                }
                1 => {
                    lines.remove(k);
                    format!("delete line {k}")
                }
                _ => {
                    let j = rng.below(lines.len());
                    lines.swap(k, j);
                    format!("swap lines {k} and {j}")
                }
            };
            *bytes = lines.concat();
            what
        }
        4 | 5 => {
            // A number (a run of digits, signs, dots, exponents) replaced.
            match replace_number(rng, bytes, b".eE+-", NUMBERS) {
                Some((s, n)) => format!("number at {s} -> {n}"),
                None => "no number".into(),
            }
        }
        6 => {
            let depth = 1 + rng.below(20_000);
            let at = rng.below(len + 1);
            let (open, close) = if rng.below(2) == 0 { ("[", "]") } else { ("{\"a\":", "}") };
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            bytes.splice(at..at, nested.bytes());
            format!("nesting {depth} deep at {at}")
        }
        7 => {
            // A value replaced by deep nesting where a value goes (after a colon).
            let colons: Vec<usize> = (0..len).filter(|&i| bytes[i] == b':').collect();
            if colons.is_empty() {
                return "no value".into();
            }
            let c = *rng.pick(&colons);
            let depth = 1 + rng.below(5_000);
            let nested = format!("{}0{}", "[".repeat(depth), "]".repeat(depth));
            bytes.splice(c + 1..c + 1, nested.bytes());
            format!("nested value {depth} deep after byte {c}")
        }
        8 => {
            let at = rng.below(len + 1);
            let n = rng.below(256 << 10);
            let s = format!("\"{}\"", "a".repeat(n));
            bytes.splice(at..at, s.bytes());
            format!("string of {n} bytes at {at}")
        }
        9 => {
            let keys = ["\"layer\"", "\"block\"", "\"sparsity\"", "\"kind\"", "\"format\"", "\"path\"", "\"shard\""];
            let (a, b) = (*rng.pick(&keys), *rng.pick(&keys));
            let found: Vec<usize> =
                bytes.windows(a.len()).enumerate().filter(|(_, w)| *w == a.as_bytes()).map(|(i, _)| i).collect();
            match found {
                v if !v.is_empty() => {
                    let i = *rng.pick(&v);
                    bytes.splice(i..i + a.len(), b.bytes());
                    format!("key {a} at {i} -> {b}")
                }
                _ => "no key".into(),
            }
        }
        _ => {
            let (at, n) = insert_random_bytes(rng, bytes);
            format!("{n} random bytes at {at}")
        }
    }
}

fn names_a_file(e: &str) -> bool {
    e.contains(store::RUN_FILE) || e.contains(store::POINTS_FILE)
}

#[test]
fn damaged_run_files_never_panic_and_errors_name_the_file() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes/sensitivity-l1");
    let run_json = std::fs::read(sample.join(store::RUN_FILE)).unwrap();
    let points = std::fs::read(sample.join(store::POINTS_FILE)).unwrap();
    let header = store::read(&sample).unwrap().header;
    let seed: u64 = std::env::var("PRUNESCOPE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261202);
    let cases: usize = std::env::var("PRUNESCOPE_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(4_000);
    let tmp = tempfile::tempdir().unwrap();
    // Quiet panics: they are caught and reported below with their case.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::time::Instant::now();
    let (mut failures, mut read_ok, mut read_err, mut resumed, mut worst_peak) = (Vec::new(), 0, 0, 0, 0usize);
    for case in 0..cases {
        // Every case has its own generator: (seed, case) alone reproduces it.
        let mut rng = Rng(seed ^ (case as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        let (mut rj, mut pj) = (run_json.clone(), points.clone());
        let mut done = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let (name, file) = match rng.below(3) {
                0 => (store::RUN_FILE, &mut rj),
                _ => (store::POINTS_FILE, &mut pj),
            };
            done.push(format!("{name}: {}", mutate(&mut rng, file)));
        }
        // A fresh folder per case: overwriting files (truncation) makes ext4 flush them.
        let dir: PathBuf = tmp.path().join(format!("case{case}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(store::RUN_FILE), &rj).unwrap();
        std::fs::write(dir.join(store::POINTS_FILE), &pj).unwrap();
        let resume = case % 10 == 0;
        let base = ALLOC.begin();
        let outcome = std::panic::catch_unwind(|| -> Result<bool, String> {
            let ok = match store::read(&dir) {
                Ok(run) => {
                    // What the CLI prints of a run must not fail on what was read.
                    let _ = prunescope::cli::analyze::table(&run);
                    true
                }
                Err(e) => {
                    let m = e.to_string();
                    if !names_a_file(&m) {
                        return Err(format!("read: the error names no file: {m}"));
                    }
                    false
                }
            };
            if resume {
                if let Err(e) = RunWriter::resume(&dir, &header) {
                    let m = e.to_string();
                    if !names_a_file(&m) {
                        return Err(format!("resume: the error names no file: {m}"));
                    }
                }
            }
            Ok(ok)
        });
        let peak = ALLOC.peak_since(base);
        worst_peak = worst_peak.max(peak);
        let context = || format!("seed {seed} case {case} ({})", done.join("; "));
        match outcome {
            Ok(Ok(true)) => read_ok += 1,
            Ok(Ok(false)) => read_err += 1,
            Ok(Err(m)) => failures.push(format!("{}: {m}", context())),
            Err(p) => failures.push(format!("{}: panicked: {}", context(), panic_message(p.as_ref()))),
        }
        resumed += usize::from(resume);
        let _ = std::fs::remove_dir_all(&dir);
        if peak > CASE_ALLOCATION_LIMIT {
            failures.push(format!("{}: allocated {} MiB at once", context(), peak >> 20));
        }
    }
    std::panic::set_hook(hook);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz_store: {cases} cases (seed {seed}) in {secs:.1} s: {read_ok} read, {read_err} refused with the file named, {resumed} also resumed; largest allocation in a case {:.1} MiB",
        worst_peak as f64 / 1048576.0
    );
    assert!(failures.is_empty(), "{} of {cases} cases failed:\n{}", failures.len(), failures.join("\n"));
}
