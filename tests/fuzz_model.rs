//! Seeded, reproducible mutation fuzzing of the model file parsers: cfg text, Darknet
//! `.weights`, `.pth` (the raw zip bytes, and the pickle inside a re-zipped archive so that
//! mutations reach the unpickler) and safetensors. Every case must end in `Ok` or in an error
//! that names the file: never a panic, and never more than `ALLOC_BOUND` bytes allocated at
//! once (a counting global allocator watches the whole test binary; the fuzz tests run one at
//! a time). Each parser prints its case count, outcome split, time and peak allocation
//! (`cargo test --release --test fuzz_model -- --nocapture`).
//!
//! Reproduce a failure: the message gives the seed and the case index, e.g.
//! `PRUNESCOPE_FUZZ_SEED=0x5eed PRUNESCOPE_FUZZ_CASE=123 cargo test --release --test fuzz_model pth_pickle -- --nocapture`.
//! `PRUNESCOPE_FUZZ_SCALE=10` runs ten times as many cases.

mod common;

use common::fuzz::{panic_message, Counting, Rng};
use prunescope::model::{BlockKind, Cfg, Graph, Layout, Weights};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Counting allocator

/// The case being run, for the message printed before a huge request aborts the process.
static CASE_SEED: AtomicU64 = AtomicU64::new(0);
static CASE_INDEX: AtomicU64 = AtomicU64::new(u64::MAX);

/// The most a single case may hold allocated at once, beyond what was held before it.
const ALLOC_BOUND: usize = 256 << 20;
/// Requests that would take the whole process past this fail (the process then aborts after
/// printing the case), so that a parser that does allocate without bound cannot exhaust the
/// machine before the per-case check sees it.
const HARD_LIMIT: usize = 2 << 30;

#[global_allocator]
static ALLOC: Counting = Counting::limited(HARD_LIMIT).reporting(ALLOC_BOUND, report_huge);

/// Writes "fuzz_model: allocation of N bytes requested in case I (seed S)" without
/// allocating: a request this large would abort the process before any assertion runs.
fn report_huge(size: usize) {
    fn num(buf: &mut [u8; 24], mut v: u64) -> &[u8] {
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                return &buf[i..];
            }
        }
    }
    let mut e = std::io::stderr();
    let (mut a, mut b, mut c) = ([0u8; 24], [0u8; 24], [0u8; 24]);
    let _ = e.write_all(b"\nfuzz_model: an allocation of ");
    let _ = e.write_all(num(&mut a, size as u64));
    let _ = e.write_all(b" bytes was requested in case ");
    let _ = e.write_all(num(&mut b, CASE_INDEX.load(Ordering::Relaxed)));
    let _ = e.write_all(b" (seed ");
    let _ = e.write_all(num(&mut c, CASE_SEED.load(Ordering::Relaxed)));
    let _ = e.write_all(b")\n");
}

/// The fuzz tests run one at a time so that the peak of a case is its own.
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------
// Mutations

const INTERESTING_BYTES: [u8; 8] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE, 0x0A, 0x2E];
const INTERESTING_INTS: [u64; 13] = [
    0,
    1,
    0x7F,
    0xFFFF_FFFF,
    0x7FFF_FFFF,
    0x8000_0000,
    0xC000_0000,
    1 << 32,
    1 << 40,
    1 << 61,
    1 << 62,
    i64::MAX as u64,
    u64::MAX,
];

/// One byte-level mutation: bit flip, interesting byte or int, truncation, chunk
/// duplication, deletion or insertion, within `lo..hi` of `data` (the whole of it when the
/// range is empty).
fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, lo: usize, hi: usize) {
    let (lo, hi) = if lo < hi && hi <= data.len() { (lo, hi) } else { (0, data.len()) };
    if hi == lo {
        data.push(*rng.pick(&INTERESTING_BYTES));
        return;
    }
    let at = lo + rng.below(hi - lo);
    match rng.below(8) {
        0 | 1 => data[at] ^= 1 << rng.below(8),
        2 => data[at] = *rng.pick(&INTERESTING_BYTES),
        3 => {
            let v = rng.pick(&INTERESTING_INTS).to_le_bytes();
            let n = if rng.chance(50) { 4 } else { 8 };
            let end = (at + n).min(data.len());
            data[at..end].copy_from_slice(&v[..end - at]);
        }
        4 => data.truncate(at),
        5 => {
            let len = 1 + rng.below(64.min(hi - at));
            let chunk = data[at..at + len].to_vec();
            let to = lo + rng.below(hi - lo + 1);
            data.splice(to..to, chunk);
        }
        6 => {
            let len = 1 + rng.below(64.min(hi - at));
            data.drain(at..at + len);
        }
        _ => {
            let n = 1 + rng.below(8);
            let bytes = rng.bytes(n);
            data.splice(at..at, bytes);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Harness

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn scaled(cases: usize) -> usize {
    let scale = std::env::var("PRUNESCOPE_FUZZ_SCALE").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(1.0);
    ((cases as f64 * scale).round() as usize).max(1)
}

/// What a case did: `Ok(true)` accepted, `Ok(false)` refused with a proper error, `Err`
/// a violated expectation (an error message without the file name, ...).
type Outcome = Result<bool, String>;

/// Runs `cases` cases of `case` (each with its own PRNG derived from the seed and the index)
/// and fails with the seed and index of the first case that panics, breaks an expectation,
/// allocates more than the bound or takes more than 10 s.
fn fuzz(name: &str, default_seed: u64, cases: usize, mut case: impl FnMut(&mut Rng, usize) -> Outcome) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = env_u64("PRUNESCOPE_FUZZ_SEED").unwrap_or(default_seed);
    let only = env_u64("PRUNESCOPE_FUZZ_CASE").map(|c| c as usize);
    let cases = scaled(cases);
    let indices: Vec<usize> = match only {
        Some(i) => vec![i],
        None => (0..cases).collect(),
    };
    let reproduce = |i: usize| {
        format!("reproduce: PRUNESCOPE_FUZZ_SEED={seed:#x} PRUNESCOPE_FUZZ_CASE={i} cargo test --release --test fuzz_model {name} -- --nocapture")
    };
    let start = Instant::now();
    let (mut accepted, mut refused, mut max_peak) = (0usize, 0usize, 0usize);
    for &i in &indices {
        let mut rng = Rng(seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        CASE_SEED.store(seed, Ordering::Relaxed);
        CASE_INDEX.store(i as u64, Ordering::Relaxed);
        let base = ALLOC.begin();
        let t0 = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&mut rng, i)));
        let took = t0.elapsed();
        let peak = ALLOC.peak_since(base);
        max_peak = max_peak.max(peak);
        match result {
            Err(p) => {
                panic!("{name}: case {i} (seed {seed:#x}) panicked: {}\n{}", panic_message(p.as_ref()), reproduce(i))
            }
            Ok(Err(m)) => panic!("{name}: case {i} (seed {seed:#x}): {m}\n{}", reproduce(i)),
            Ok(Ok(true)) => accepted += 1,
            Ok(Ok(false)) => refused += 1,
        }
        assert!(
            peak <= ALLOC_BOUND,
            "{name}: case {i} (seed {seed:#x}) allocated {peak} bytes at once, more than {ALLOC_BOUND}\n{}",
            reproduce(i)
        );
        assert!(took < Duration::from_secs(10), "{name}: case {i} (seed {seed:#x}) took {took:?}\n{}", reproduce(i));
    }
    eprintln!(
        "fuzz {name}: {} cases ({accepted} accepted, {refused} refused) in {:.2} s, seed {seed:#x}, peak allocation per case {:.1} MiB",
        indices.len(),
        start.elapsed().as_secs_f64(),
        max_peak as f64 / (1 << 20) as f64
    );
}

/// An error message must name the file it is about.
fn names_file(message: &str, path: &Path) -> Outcome {
    if message.contains(&path.display().to_string()) {
        Ok(false)
    } else {
        Err(format!("the error does not name the file {}: {message}", path.display()))
    }
}

// ---------------------------------------------------------------------------------------
// Models and base files

/// Two convolutions (BN + leaky, bias + linear) and a yolo head: 410 floats.
const SMALL_CFG: &str = "[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n[convolutional]\nfilters=18\nsize=1\nstride=1\npad=1\nactivation=linear\n\n[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=1\nnum=3\nscale_x_y=1.05\n";

fn layout_of(cfg_text: &str, size: usize) -> Layout {
    let cfg = Cfg::parse(cfg_text, "base.cfg").unwrap();
    Layout::of(&cfg, &Graph::build(&cfg, 1, size, size).unwrap())
}

/// The small model's weights written by our own writers, in every format.
fn small_files(dir: &Path) -> (Layout, Vec<u8>, Vec<u8>, Vec<u8>) {
    let layout = layout_of(SMALL_CFG, 64);
    let w = Weights::initialize(&layout, 11);
    let mut out = Vec::new();
    for name in ["base.weights", "base.pth", "base.safetensors"] {
        let p = dir.join(name);
        w.save(&p, &layout).unwrap();
        assert_eq!(Weights::load(&p, &layout).unwrap(), w, "{name}");
        out.push(std::fs::read(&p).unwrap());
    }
    let s = out.pop().unwrap();
    let pth = out.pop().unwrap();
    (layout, out.pop().unwrap(), pth, s)
}

fn parity_layout() -> Layout {
    let text = std::fs::read_to_string(common::darknet("parity.cfg")).unwrap();
    layout_of(&text, 128)
}

/// Loads `bytes` as a weights file named `name` in `dir`: Ok(accepted) or a named error.
fn load_case(dir: &Path, name: &str, bytes: &[u8], layout: &Layout) -> Outcome {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| format!("cannot write the case file: {e}"))?;
    match Weights::load(&path, layout) {
        Ok(w) => match w.check(layout) {
            Ok(()) => Ok(true),
            Err(m) => Err(format!("loaded weights do not fit the layout: {m}")),
        },
        Err(e) => names_file(&e.to_string(), &path),
    }
}

// ---------------------------------------------------------------------------------------
// cfg

const CFG_VALUES: [&str; 24] = [
    "0",
    "1",
    "-1",
    "2",
    "3",
    "-2147483648",
    "99999",
    "2000000000",
    "1e9",
    "NaN",
    "inf",
    "-inf",
    "18446744073709551616",
    "",
    "1,2,3",
    "0.5",
    "4294967296",
    "65536",
    "65537",
    "128",
    "129",
    "16384",
    "-1,-1,-1",
    "0,0,0,0,0,0,0,0",
];

const CFG_LINES: [&str; 14] = [
    "[route]",
    "[shortcut]",
    "[yolo]",
    "[maxpool]",
    "[upsample]",
    "[convolutional]",
    "[net]",
    "layers=-1,-1",
    "from=-3",
    "groups=2",
    "scale_x_y=1.2",
    "new_coords=1",
    "\u{feff}[net]",
    "stride=2",
];

fn mutate_cfg(rng: &mut Rng, text: &str) -> Vec<u8> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..1 + rng.below(4) {
        if lines.is_empty() {
            lines.push("[net]".into());
        }
        let at = rng.below(lines.len());
        match rng.below(7) {
            0 => {
                let l = lines[at].clone();
                let to = rng.below(lines.len() + 1);
                lines.insert(to, l);
            }
            1 => {
                lines.remove(at);
            }
            2 => {
                let to = rng.below(lines.len());
                lines.swap(at, to);
            }
            3 | 4 => {
                // Replace the value of some key=value line.
                let keyed: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains('=')).collect();
                if let Some(&i) = keyed.get(rng.below(keyed.len().max(1))) {
                    let key = lines[i].split('=').next().unwrap_or("").to_string();
                    lines[i] = format!("{key}={}", rng.pick(&CFG_VALUES));
                }
            }
            5 => {
                let l = rng.pick(&CFG_LINES).to_string();
                lines.insert(at, l);
            }
            _ => {
                // A block of lines repeated (deep graphs: routes and upsamples stacking up).
                let len = 1 + rng.below(8.min(lines.len() - at));
                let chunk: Vec<String> = lines[at..at + len].to_vec();
                for _ in 0..1 + rng.below(40) {
                    lines.extend(chunk.iter().cloned());
                }
            }
        }
    }
    let mut bytes = lines.join("\n").into_bytes();
    if rng.chance(30) {
        for _ in 0..1 + rng.below(3) {
            mutate_bytes(rng, &mut bytes, 0, 0);
        }
    }
    bytes
}

/// Parses a mutated cfg from a file and, when it parses, builds its graph, layout and cost.
fn cfg_case(dir: &Path, bytes: &[u8]) -> Outcome {
    let path = dir.join("fuzz.cfg");
    std::fs::write(&path, bytes).map_err(|e| format!("cannot write the case file: {e}"))?;
    let cfg = match Cfg::from_file(&path) {
        Ok(c) => c,
        Err(e) => return names_file(&e.to_string(), &path),
    };
    let round = |v: usize| (v / 32).clamp(1, 64) * 32;
    let graph = match Graph::build(&cfg, 1, round(cfg.height), round(cfg.width)) {
        Ok(g) => g,
        Err(e) => return names_file(&e.to_string(), &path),
    };
    // The costs are the true numbers (computed here without any chance of overflow).
    for b in &cfg.blocks {
        let BlockKind::Convolutional(c) = &b.kind else { continue };
        let node = &graph.nodes[b.index];
        let [n, cin, ..] = node.input_shape[..] else { return Err(format!("conv input {:?}", node.input_shape)) };
        let [_, _, ho, wo] = node.output_shape[..] else { return Err(format!("conv output {:?}", node.output_shape)) };
        let per_filter = (cin / c.groups) as u128 * (c.size * c.size) as u128;
        let params = c.filters as u128 * per_filter + if c.batch_normalize { 2 } else { 1 } * c.filters as u128;
        let conv_macs = n as u128 * ho as u128 * wo as u128 * per_filter * c.filters as u128;
        if (node.params as u128, node.conv_macs as u128) != (params, conv_macs) {
            return Err(format!(
                "block {}: params {} and conv MACs {} where the cfg gives {params} and {conv_macs}",
                b.index, node.params, node.conv_macs
            ));
        }
    }
    let total: u128 = graph.nodes.iter().map(|n| n.macs as u128).sum();
    if total != graph.total_macs() as u128 {
        return Err(format!("total MACs {} where the blocks sum to {total}", graph.total_macs()));
    }
    let layout = Layout::of(&cfg, &graph);
    let _ = layout.float_count();
    let _ = graph.total_params();
    Ok(true)
}

#[test]
fn cfg_text() {
    let dir = tempfile::tempdir().unwrap();
    let bases: Vec<String> = ["yolov3-tiny.cfg", "yolov3.cfg", "parity.cfg"]
        .iter()
        .map(|n| std::fs::read_to_string(common::darknet(n)).unwrap())
        .chain([
            std::fs::read_to_string(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes/yolov3-tiny-shapes.cfg"),
            )
            .unwrap(),
            SMALL_CFG.to_string(),
        ])
        .collect();
    fuzz("cfg_text", 0xC0F_F1E5, 6000, |rng, _| {
        let base = rng.pick(&bases).clone();
        let bytes = mutate_cfg(rng, &base);
        cfg_case(dir.path(), &bytes)
    });
}

// ---------------------------------------------------------------------------------------
// Darknet .weights

#[test]
fn darknet_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (small, base, _, _) = small_files(dir.path());
    let parity = parity_layout();
    let parity_bytes = std::fs::read(common::darknet("parity.weights")).unwrap();
    fuzz("darknet_weights", 0xDA4C_4E37, 3000, |rng, _| {
        let (layout, mut bytes) = if rng.chance(10) { (&parity, parity_bytes.clone()) } else { (&small, base.clone()) };
        for _ in 0..1 + rng.below(4) {
            // Mostly the header, where the structure is.
            if rng.chance(60) {
                mutate_bytes(rng, &mut bytes, 0, 24);
            } else {
                mutate_bytes(rng, &mut bytes, 0, 0);
            }
        }
        if rng.chance(5) {
            // Someone else's file renamed .weights.
            bytes =
                rng.pick(&[&b"\xFF\xD8\xFF\xE0\x00\x10JFIF"[..], b"\x89PNG\r\n", b"PK\x03\x04", b"[net]\n"]).to_vec();
            bytes.resize(bytes.len() + rng.below(4096), 0);
        }
        load_case(dir.path(), "fuzz.weights", &bytes, layout)
    });
}

// ---------------------------------------------------------------------------------------
// .pth

/// The records of a zip archive, in order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().to_string(), data)
        })
        .collect()
}

fn rezip(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in records {
        z.start_file(name.as_str(), o).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// Opcodes of the unpickler, with a few argument bytes after some of them.
const PICKLE_OPS: &[&[u8]] = &[
    b"(",
    b")",
    b"]",
    b"}",
    b"N",
    b"\x88",
    b"\x89",
    b"K\x07",
    b"M\xff\xff",
    b"J\xff\xff\xff\x7f",
    b"\x8a\x08",
    b"\x8b\xff\xff\xff\xff",
    b"G",
    b"X\xff\xff\xff\xff",
    b"X\x04\x00\x00\x00",
    b"\x8c\x03",
    b"\x8d",
    b"U\x05",
    b"T\x00\x00\x00\x80",
    b"B\x10\x00\x00\x00",
    b"C\x02",
    b"\x8e",
    b"ctorch\nFloatStorage\n",
    b"c",
    b"\x93",
    b"q\x00",
    b"r\x01\x00\x00\x00",
    b"\x94",
    b"h\x00",
    b"h\x05",
    b"j\xff\xff\xff\xff",
    b"t",
    b"\x85",
    b"\x86",
    b"\x87",
    b"l",
    b"d",
    b"a",
    b"e",
    b"s",
    b"u",
    b"Q",
    b"R",
    b"\x81",
    b"b",
    b"0",
    b"1",
    b"2",
    b".",
    b"\x80\x02",
    b"\x95",
];

/// Replaces the argument of an int opcode (shapes, strides, offsets, numels) with an
/// interesting value, as BININT or as an 8-byte LONG1.
fn mutate_pickle_int(rng: &mut Rng, pkl: &mut Vec<u8>) {
    let ints: Vec<usize> = (0..pkl.len().saturating_sub(4)).filter(|&i| pkl[i] == b'J').collect();
    let Some(&at) = ints.get(rng.below(ints.len().max(1))) else { return };
    let v = *rng.pick(&INTERESTING_INTS);
    if rng.chance(50) {
        pkl[at + 1..at + 5].copy_from_slice(&(v as u32).to_le_bytes());
    } else {
        let mut long = vec![0x8a, 8];
        long.extend_from_slice(&v.to_le_bytes());
        pkl.splice(at..at + 5, long);
    }
}

/// Constructs that build large or deep values from few bytes.
fn pickle_bomb(rng: &mut Rng) -> Vec<u8> {
    let n = *rng.pick(&[150usize, 1000, 100_000]);
    match rng.below(4) {
        // Nested lists: `]` n times, then APPEND n-1 times.
        0 => std::iter::repeat_n(b']', n).chain(std::iter::repeat_n(b'a', n - 1)).collect(),
        // Nested tuples.
        1 => std::iter::repeat_n(b'(', n).chain(std::iter::repeat_n(b't', n)).collect(),
        // A list appended to a copy of itself 64 times (DUP, APPENDS).
        2 => std::iter::once(b']').chain(std::iter::repeat_n(*b"(2e", 64).flatten()).collect(),
        // A list of two memo copies of the previous one, 64 times.
        _ => b"]q\x00".iter().copied().chain(std::iter::repeat_n(*b"0(h\x00h\x00lq\x00", 64).flatten()).collect(),
    }
}

fn mutate_pickle(rng: &mut Rng, pkl: &mut Vec<u8>) {
    if rng.chance(4) {
        let bomb = pickle_bomb(rng);
        let at = rng.below(pkl.len() + 1);
        pkl.splice(at..at, bomb);
        return;
    }
    for _ in 0..1 + rng.below(4) {
        if rng.chance(25) {
            mutate_pickle_int(rng, pkl);
            continue;
        }
        match rng.below(10) {
            0..=2 => {
                let op = rng.pick(PICKLE_OPS).to_vec();
                let at = rng.below(pkl.len() + 1);
                pkl.splice(at..at, op);
            }
            3 => {
                // A run of one opcode (deep nesting, long stacks, doubling).
                let op = rng.pick(PICKLE_OPS).to_vec();
                let n = 1 + rng.below(2000);
                let at = rng.below(pkl.len() + 1);
                let run: Vec<u8> = std::iter::repeat_n(op, n).flatten().collect();
                pkl.splice(at..at, run);
            }
            _ => mutate_bytes(rng, pkl, 0, 0),
        }
    }
}

/// Overwrites a size, length, count or offset field of a zip header (local file header,
/// central directory entry or end of central directory) with an interesting value.
fn mutate_zip_field(rng: &mut Rng, bytes: &mut [u8]) {
    /// A header signature and its fields as (offset, width).
    type Header = (&'static [u8; 4], &'static [(usize, usize)]);
    const HEADERS: [Header; 3] = [
        (b"PK\x03\x04", &[(18, 4), (22, 4), (26, 2), (28, 2)]),
        (b"PK\x01\x02", &[(20, 4), (24, 4), (28, 2), (30, 2), (42, 4)]),
        (b"PK\x05\x06", &[(8, 2), (10, 2), (12, 4), (16, 4)]),
    ];
    let (sig, fields) = rng.pick(&HEADERS);
    let starts: Vec<usize> = bytes.windows(4).enumerate().filter(|(_, w)| w == sig).map(|(i, _)| i).collect();
    let Some(&at) = starts.get(rng.below(starts.len().max(1))) else { return };
    let (off, width) = *rng.pick(fields);
    let v = rng.pick(&INTERESTING_INTS).to_le_bytes();
    if let Some(field) = bytes.get_mut(at + off..at + off + width) {
        field.copy_from_slice(&v[..width]);
    }
}

#[test]
fn pth_zip() {
    let dir = tempfile::tempdir().unwrap();
    let (small, _, base, _) = small_files(dir.path());
    let parity = parity_layout();
    let parity_bytes = std::fs::read(common::darknet("parity.pth")).unwrap();
    fuzz("pth_zip", 0x7A1F_0000, 3000, |rng, _| {
        let (layout, mut bytes) = if rng.chance(10) { (&parity, parity_bytes.clone()) } else { (&small, base.clone()) };
        // The zip structure lives in the local headers and the central directory at the end.
        for _ in 0..1 + rng.below(4) {
            let n = bytes.len();
            match rng.below(4) {
                3 => mutate_zip_field(rng, &mut bytes),
                0 => mutate_bytes(rng, &mut bytes, n.saturating_sub(400), n),
                1 => mutate_bytes(rng, &mut bytes, 0, 200.min(n)),
                _ => mutate_bytes(rng, &mut bytes, 0, 0),
            }
        }
        load_case(dir.path(), "fuzz.pth", &bytes, layout)
    });
}

#[test]
fn pth_pickle() {
    let dir = tempfile::tempdir().unwrap();
    let (small, _, base, _) = small_files(dir.path());
    let parity = parity_layout();
    let small_records = unzip(&base);
    let parity_records = unzip(&std::fs::read(common::darknet("parity.pth")).unwrap());
    fuzz("pth_pickle", 0x9C1C_1E00, 6000, |rng, _| {
        let (layout, mut records) =
            if rng.chance(15) { (&parity, parity_records.clone()) } else { (&small, small_records.clone()) };
        let pkl = records.iter_mut().find(|(n, _)| n.ends_with("data.pkl")).expect("a data.pkl record");
        mutate_pickle(rng, &mut pkl.1);
        if rng.chance(10) {
            // A storage record cut short or grown.
            let i = rng.below(records.len());
            mutate_bytes(rng, &mut records[i].1, 0, 0);
        }
        load_case(dir.path(), "fuzz.pth", &rezip(&records), layout)
    });
}

// ---------------------------------------------------------------------------------------
// safetensors

const JSON_NUMBERS: [&str; 10] = [
    "0",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "99999999999999999999",
    "1e308",
    "1099511627776",
    "9223372036854775807",
    "3",
];

fn mutate_safetensors(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let hlen = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize).unwrap_or(0);
    let end = (8 + hlen).min(bytes.len());
    if rng.chance(50) && end > 8 {
        // Edit the JSON header (numbers of shapes and offsets, dtypes) and fix its length.
        let mut header = bytes[8..end].to_vec();
        let body = bytes[end..].to_vec();
        for _ in 0..1 + rng.below(3) {
            if rng.chance(70) {
                let digits: Vec<usize> = (0..header.len()).filter(|&i| header[i].is_ascii_digit()).collect();
                if let Some(&at) = digits.get(rng.below(digits.len().max(1))) {
                    let mut stop = at;
                    while stop < header.len() && header[stop].is_ascii_digit() {
                        stop += 1;
                    }
                    let num = rng.pick(&JSON_NUMBERS).as_bytes().to_vec();
                    header.splice(at..stop, num);
                }
            } else if rng.chance(50) {
                let dtype = rng.pick(&[&b"F64"[..], b"I64", b"BOOL", b"F16", b"U8", b"XX"]).to_vec();
                if let Some(at) = header.windows(3).position(|w| w == b"F32") {
                    header.splice(at..at + 3, dtype);
                }
            } else {
                mutate_bytes(rng, &mut header, 0, 0);
            }
        }
        bytes.clear();
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&body);
    } else {
        for _ in 0..1 + rng.below(4) {
            if rng.chance(70) {
                mutate_bytes(rng, bytes, 0, end.max(1).min(bytes.len()));
            } else {
                mutate_bytes(rng, bytes, 0, 0);
            }
        }
    }
}

#[test]
fn safetensors_files() {
    let dir = tempfile::tempdir().unwrap();
    let (small, _, _, base) = small_files(dir.path());
    fuzz("safetensors", 0x5AFE_7E50, 3000, |rng, _| {
        let mut bytes = base.clone();
        mutate_safetensors(rng, &mut bytes);
        load_case(dir.path(), "fuzz.safetensors", &bytes, &small)
    });
}

/// One structured mutation of a decoded ONNX model: an operator, an attribute, an
/// initializer's dims, type or data, the opset, the wiring or a node removed.
fn mutate_onnx(rng: &mut Rng, m: &mut prunescope::model::onnx::proto::ModelProto) {
    let g = m.graph.as_mut().unwrap();
    const OPS: [&str; 8] = ["Conv", "Concat", "Reshape", "Split", "Resize", "Gemm", "Softmax", "NoSuchOp"];
    const INTS: [i64; 9] = [0, 1, -1, 2, 3, -7, 7, 64, i64::MIN];
    match rng.below(8) {
        0 => {
            let i = rng.below(g.node.len());
            g.node[i].op_type = Some(rng.pick(&OPS).to_string());
        }
        1 => {
            let i = rng.below(g.node.len());
            if let Some(a) = g.node[i].attribute.first_mut() {
                a.i = Some(*rng.pick(&INTS));
                for v in a.ints.iter_mut() {
                    if rng.chance(50) {
                        *v = *rng.pick(&INTS);
                    }
                }
            }
        }
        2 => {
            let i = rng.below(g.initializer.len());
            let t = &mut g.initializer[i];
            if let Some(d) = t.dims.first_mut() {
                *d = *rng.pick(&INTS);
            }
        }
        3 => {
            let i = rng.below(g.initializer.len());
            let t = &mut g.initializer[i];
            match rng.below(3) {
                0 => t.data_type = Some(rng.below(20) as i32),
                1 => {
                    if let Some(r) = t.raw_data.as_mut() {
                        r.truncate(rng.below(r.len() + 1));
                    }
                }
                _ => t.data_location = Some(1),
            }
        }
        4 => m.opset_import[0].version = Some(*rng.pick(&[1, 10, 11, 13, 17, 21, 22, 99])),
        5 => {
            let i = rng.below(g.node.len());
            g.node.remove(i);
        }
        6 => {
            let (a, b) = (rng.below(g.node.len()), rng.below(g.node.len()));
            if let (Some(x), Some(y)) = (g.node[a].input.first().cloned(), g.node[b].input.first().cloned()) {
                g.node[a].input[0] = y;
                g.node[b].input[0] = x;
            }
        }
        _ => {
            let i = rng.below(g.node.len());
            g.node[i].input.push(format!("missing_{}", rng.below(4)));
        }
    }
}

/// Mutated ONNX files (the protobuf's bytes, and decoded models changed field by field) are
/// read and run at batch 1, or refused with the file named: never a panic.
#[test]
fn onnx_files() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/yolov8pico-cls.onnx");
    let base = std::fs::read(&fixture).unwrap();
    let decoded = prunescope::model::onnx::proto::ModelProto::decode(base.as_slice()).unwrap();
    let path = dir.path().join("fuzz.onnx");
    fuzz("onnx", 0x0_11E5, 300, |rng, _| {
        let bytes = if rng.chance(50) {
            let mut m = decoded.clone();
            for _ in 0..1 + rng.below(3) {
                mutate_onnx(rng, &mut m);
            }
            m.encode_to_vec()
        } else {
            let mut b = base.clone();
            for _ in 0..1 + rng.below(4) {
                mutate_bytes(rng, &mut b, 0, 0);
            }
            b
        };
        std::fs::write(&path, &bytes).map_err(|e| e.to_string())?;
        match prunescope::model::onnx::read(&path) {
            Err(e) => names_file(&e.to_string(), &path),
            Ok(m) => {
                let Ok(shape) = m.input_shape(None) else { return Ok(false) };
                let x = tch::Tensor::zeros(shape.as_slice(), (tch::Kind::Float, tch::Device::Cpu));
                if let Err(e) = m.run(vec![(m.inputs[0].name.clone(), x)], prunescope::model::ir::exec::Keep::Outputs) {
                    return names_file(&e.to_string(), &path);
                }
                // What every later step opens: layers, channel rules, costs (never a panic).
                let files = prunescope::model::ModelFiles::Onnx { path: path.clone(), task: Some("detect".into()) };
                match prunescope::model::Model::open(&files, None) {
                    Ok(_) => Ok(true),
                    Err(e) => names_file(&e.to_string(), &path),
                }
            }
        }
    });
}
