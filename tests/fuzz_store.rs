//! Seeded mutation fuzzing of the run store: run.json and points.jsonl of the bundled
//! sensitivity-l1 run, damaged (bit flips, truncation, duplicated, deleted and swapped lines,
//! huge, NaN and infinite numbers, deep nesting, long strings, renamed keys), are read back and
//! resumed. Every case must end without a panic, with an error that names the damaged file
//! when it fails, and within a bounded allocation. Reproducible: a failure names the seed and
//! the case index (`PRUNESCOPE_FUZZ_SEED`, `PRUNESCOPE_FUZZ_CASES` change them).

use prunescope::sensitivity::store::{self, RunWriter};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the bytes allocated now and the most ever allocated at once.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most a case may allocate above what was allocated when it began.
const CASE_ALLOCATION_LIMIT: usize = 256 << 20;

/// SplitMix64: small, seeded, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

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
            let starts: Vec<usize> =
                (0..len).filter(|&i| bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit())).collect();
            if starts.is_empty() {
                return "no number".into();
            }
            let s = *rng.pick(&starts);
            let mut e = s;
            while e < len && (bytes[e].is_ascii_digit() || b".eE+-".contains(&bytes[e])) {
                e += 1;
            }
            let n = *rng.pick(NUMBERS);
            bytes.splice(s..e, n.bytes());
            format!("number at {s} -> {n}")
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
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            bytes.splice(at..at, junk);
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
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
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
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        worst_peak = worst_peak.max(peak);
        let context = || format!("seed {seed} case {case} ({})", done.join("; "));
        match outcome {
            Ok(Ok(true)) => read_ok += 1,
            Ok(Ok(false)) => read_err += 1,
            Ok(Err(m)) => failures.push(format!("{}: {m}", context())),
            Err(p) => {
                let m = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                failures.push(format!("{}: panicked: {}", context(), m.unwrap_or_default()));
            }
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
