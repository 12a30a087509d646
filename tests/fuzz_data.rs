//! A seeded, reproducible mutation fuzzer for every dataset parser: YOLO label files,
//! `data.yaml`, Darknet `.data`, image lists, COCO ground truth and COCO results.
//!
//! Each case mutates a valid seed input (bit flips, interesting bytes, truncation, chunk
//! duplication and deletion, line mutations, huge/negative/NaN numbers, YAML anchors and
//! aliases, deep nesting) and asserts: no panic, every error names the file, and the case
//! allocates less than [`CASE_MEMORY`] at its peak (a counting allocator wraps `System`).
//! A failure prints the parser, the case seed and the case index; `FUZZ_SEED=<n>` changes
//! the master seed, `FUZZ_SCALE=<x>` the number of cases.

mod common;

use common::fuzz::{insert_random_bytes, replace_number, Counting, Rng};
use prunescope::data::{self, coco_json, yolo, DetectionDataset, OnBad, OpenOptions, Split};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A hard ceiling for the whole process: past it allocations fail (the test aborts) rather
/// than a runaway case taking the machine's memory.
const HARD_LIMIT: usize = 3 << 30;
/// The most one case may allocate at its peak.
const CASE_MEMORY: usize = 256 << 20;

#[global_allocator]
static ALLOC: Counting = Counting::limited(HARD_LIMIT);

// ---------------------------------------------------------------------------------------
// The mutations.

/// Inputs are capped so one case stays small.
const MAX_INPUT: usize = 256 << 10;

const INTERESTING: &[u8] = &[
    0x00, 0xFF, 0x7F, 0x80, 0xC3, 0xE9, 0xEF, 0xBB, 0xBF, b'\n', b'\r', b' ', b'\t', b'-', b'+', b'.', b'#', b':',
    b'&', b'*', b'!', b'[', b']', b'{', b'}', b'"', b'\'', b'\\', b',', b'=', b'0', b'9', b'e', b'|', b'>', b'%', b'@',
];

const NUMBERS: &[&str] = &[
    "1e308",
    "-1e308",
    "1e309",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "-0",
    "-1",
    "0",
    "99999999999999999999",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "1e-320",
    "0x10",
    "0.5.5",
    "",
    "1_000",
    ".5",
    "5.",
    "+1",
];

#[derive(Clone, Copy, PartialEq)]
enum Flavour {
    Text,
    Yaml,
    Json,
}

fn mutate_once(rng: &mut Rng, buf: &mut Vec<u8>, flavour: Flavour) {
    let len = buf.len();
    let at = |rng: &mut Rng| rng.below(len + 1);
    match rng.below(11) {
        0 => {
            // Bit flips.
            for _ in 0..1 + rng.below(8) {
                if !buf.is_empty() {
                    let i = rng.below(buf.len());
                    buf[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            // Interesting bytes, overwritten or inserted.
            for _ in 0..1 + rng.below(4) {
                let b = *rng.pick(INTERESTING);
                if !buf.is_empty() && rng.below(2) == 0 {
                    let i = rng.below(buf.len());
                    buf[i] = b;
                } else {
                    let i = rng.below(buf.len() + 1);
                    buf.insert(i, b);
                }
            }
        }
        2 => {
            // Truncation.
            let i = at(rng);
            buf.truncate(i);
        }
        3 => {
            // Chunk duplication (possibly many times).
            if !buf.is_empty() {
                let s = rng.below(buf.len());
                let e = (s + 1 + rng.below(256)).min(buf.len());
                let chunk = buf[s..e].to_vec();
                let times = if rng.below(4) == 0 { 1 + rng.below(200) } else { 1 };
                let i = rng.below(buf.len() + 1);
                let mut ins = Vec::new();
                for _ in 0..times {
                    ins.extend_from_slice(&chunk);
                }
                buf.splice(i..i, ins);
            }
        }
        4 => {
            // Chunk deletion.
            if !buf.is_empty() {
                let s = rng.below(buf.len());
                let e = (s + 1 + rng.below(512)).min(buf.len());
                buf.drain(s..e);
            }
        }
        5 | 6 => {
            // Line-level: duplicate, delete, swap, repeat.
            let mut lines: Vec<Vec<u8>> = buf.split(|&b| b == b'\n').map(|l| l.to_vec()).collect();
            let n = lines.len();
            let (i, j) = (rng.below(n), rng.below(n));
            match rng.below(4) {
                0 => {
                    let l = lines[i].clone();
                    lines.insert(j, l);
                }
                1 => {
                    if n > 1 {
                        lines.remove(i);
                    }
                }
                2 => lines.swap(i, j),
                _ => {
                    let l = lines[i].clone();
                    for _ in 0..rng.below(100) {
                        lines.insert(i, l.clone());
                    }
                }
            }
            *buf = lines.join(&b'\n');
        }
        7 => {
            // A number replaced by a huge, negative, NaN or malformed one.
            replace_number(rng, buf, b".e", NUMBERS);
        }
        8 => {
            // Format-specific structure: anchors and aliases, deep nesting.
            let i = rng.below(buf.len() + 1);
            let ins: Vec<u8> = match flavour {
                Flavour::Yaml => match rng.below(5) {
                    0 => b"&a ".to_vec(),
                    1 => b"*a".to_vec(),
                    2 => {
                        let mut s = String::from("\nz0: &z0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
                        for k in 1..1 + rng.below(12) {
                            let refs = vec![format!("*z{}", k - 1); 9].join(", ");
                            s.push_str(&format!("z{k}: &z{k} [{refs}]\n"));
                        }
                        s.into_bytes()
                    }
                    3 => "[".repeat(1 + rng.below(5000)).into_bytes(),
                    _ => "- ".repeat(1 + rng.below(5000)).into_bytes(),
                },
                Flavour::Json => match rng.below(3) {
                    0 => "[".repeat(1 + rng.below(5000)).into_bytes(),
                    1 => "{\"a\":".repeat(1 + rng.below(2000)).into_bytes(),
                    _ => {
                        let n = 1 + rng.below(300);
                        format!("{}1{}", "[".repeat(n), "]".repeat(n)).into_bytes()
                    }
                },
                Flavour::Text => match rng.below(3) {
                    0 => b"\xEF\xBB\xBF".to_vec(),
                    1 => vec![b' '; rng.below(10_000)],
                    _ => b"../".repeat(1 + rng.below(50)),
                },
            };
            buf.splice(i..i, ins);
        }
        9 => {
            // A long line without a newline.
            let i = rng.below(buf.len() + 1);
            let b = *rng.pick(INTERESTING);
            buf.splice(i..i, std::iter::repeat_n(b, rng.below(50_000)));
        }
        _ => {
            // Random bytes.
            insert_random_bytes(rng, buf);
        }
    }
    buf.truncate(MAX_INPUT);
}

fn mutate(rng: &mut Rng, seed: &[u8], flavour: Flavour) -> Vec<u8> {
    let mut buf = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut buf, flavour);
    }
    buf
}

fn master_seed() -> u64 {
    std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED_DA7A)
}

fn cases(n: usize) -> usize {
    let scale: f64 = std::env::var("FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(1)
}

fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
    format!("{s:?}{}", if bytes.len() > 400 { format!(" … ({} bytes)", bytes.len()) } else { String::new() })
}

/// Runs `n` cases of one parser. `run` gets the case's input and returns the error message
/// if it refused it, which must contain `must_name`.
fn fuzz(
    name: &str,
    n: usize,
    seeds: &[Vec<u8>],
    flavour: Flavour,
    must_name: &str,
    run: &mut dyn FnMut(&[u8]) -> Option<String>,
) {
    let n = cases(n);
    let master = master_seed() ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(b as u64));
    let started = Instant::now();
    let (mut refused, mut peak_max) = (0usize, 0usize);
    for case in 0..n {
        let case_seed = Rng(master ^ (case as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)).next();
        let mut rng = Rng(case_seed);
        let seed = rng.pick(seeds);
        // One case in 16 is the seed itself (the parsers must accept it).
        let input = if case % 16 == 0 { seed.clone() } else { mutate(&mut rng, seed, flavour) };
        let base = ALLOC.begin();
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&input)));
        let peak = ALLOC.peak_since(base);
        peak_max = peak_max.max(peak);
        let ctx = || {
            format!(
                "{name}: case {case} (FUZZ_SEED={} case seed {case_seed:#x}), input {}",
                master_seed(),
                show(&input)
            )
        };
        match outcome {
            Err(_) => panic!("panicked: {}", ctx()),
            Ok(Some(msg)) => {
                refused += 1;
                assert!(msg.contains(must_name), "the error does not name the file `{must_name}`: {msg}\n{}", ctx());
                assert!(case % 16 != 0, "the unmutated seed was refused: {msg}\n{}", ctx());
            }
            Ok(None) => {}
        }
        assert!(peak < CASE_MEMORY, "allocated {peak} bytes at the peak (limit {CASE_MEMORY}): {}", ctx());
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {name}: {n} cases in {secs:.2} s ({refused} refused with an error, peak {:.1} MiB per case)",
        peak_max as f64 / (1 << 20) as f64
    );
}

// ---------------------------------------------------------------------------------------
// The parsers.

const LABELS: &str = "0 0.5 0.5 0.2 0.3\n1 0.1 0.9 0.05 0.05\n\n2 0.999999 0.000001 1 1\n";

#[test]
fn fuzz_yolo_labels() {
    let path = Path::new("fuzz/labels/val/img.txt");
    let seeds = vec![LABELS.as_bytes().to_vec(), b"\xEF\xBB\xBF0 0.5 0.5 0.5 0.5\r\n".to_vec(), Vec::new()];
    fuzz("yolo labels", 40_000, &seeds, Flavour::Text, "fuzz/labels/val/img.txt", &mut |input| {
        data::decode_text(path, input.to_vec())
            .and_then(|t| yolo::parse_labels(path, &t, 3, 0))
            .map(|boxes| {
                for b in boxes {
                    assert!(b.class < 3 && b.coords.iter().all(|v| (0.0..=1.0).contains(v)));
                }
            })
            .err()
            .map(|e| e.to_string())
    });
}

fn sample_yaml() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes/data.yaml")).unwrap()
}

#[test]
fn fuzz_data_yaml() {
    let path = Path::new("fuzz/ds/data.yaml");
    let seeds = vec![
        sample_yaml(),
        b"path: .\ntrain: images/train\nval: [images/val, list.txt]\nnames: [a, b, 'c d']\n".to_vec(),
        b"val: images/val\nnc: 3\n".to_vec(),
        b"base: &b images\nval: *b\nnames: &n {0: x, 1: y}\nother: *n\n".to_vec(),
        b"---\nval: v\nnames:\n  - a\n  - b\n...\n---\nsecond: doc\n".to_vec(),
    ];
    fuzz("data.yaml", 20_000, &seeds, Flavour::Yaml, "fuzz/ds/data.yaml", &mut |input| {
        data::decode_text(path, input.to_vec())
            .and_then(|t| yolo::parse_data_yaml(path, &t, Split::Val))
            .err()
            .map(|e| e.to_string())
    });
}

#[test]
fn fuzz_darknet_data() {
    let path = Path::new("fuzz/ds/obj.data");
    let seeds = vec![
        b"classes = 2\ntrain = train.txt\nvalid = val.txt\nnames = obj.names\nbackup = backup/\n".to_vec(),
        b"# comment\nvalid=images/val # trailing\nclasses=80\n".to_vec(),
    ];
    fuzz("darknet .data", 20_000, &seeds, Flavour::Text, "fuzz/ds/obj.data", &mut |input| {
        data::decode_text(path, input.to_vec())
            .and_then(|t| yolo::parse_darknet_data(path, &t, Split::Val))
            .err()
            .map(|e| e.to_string())
    });
}

/// A small dataset on disk for the end-to-end cases: two images, labels, names.
fn small_dataset() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (i, label) in ["0 0.5 0.5 0.2 0.2\n", "1 0.3 0.3 0.1 0.1\n"].iter().enumerate() {
        let img = d.path().join(format!("images/val/{i}.png"));
        std::fs::create_dir_all(img.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9])).save(&img).unwrap();
        let lp = d.path().join(format!("labels/val/{i}.txt"));
        std::fs::create_dir_all(lp.parent().unwrap()).unwrap();
        std::fs::write(lp, label).unwrap();
    }
    std::fs::write(d.path().join("classes.txt"), "a\nb\n").unwrap();
    d
}

#[test]
fn fuzz_image_lists_end_to_end() {
    let d = small_dataset();
    let list = d.path().join("list.txt");
    let shown = list.display().to_string();
    let seeds = vec![
        b"images/val/0.png\nimages/val/1.png\n".to_vec(),
        format!("# comment\n{}/images/val/1.png\n\nimages/val/0.png\n", d.path().display()).into_bytes(),
    ];
    let opts = OpenOptions { on_bad: OnBad::Skip, limit: Some(100), ..Default::default() };
    fuzz("image list (open)", 1500, &seeds, Flavour::Text, &shown, &mut |input| {
        // Pure parsing first, then the whole open through the file.
        if let Ok(t) = data::decode_text(&list, input.to_vec()) {
            let _ = yolo::parse_list(&list, &t);
        }
        std::fs::write(&list, input).unwrap();
        match DetectionDataset::open_with(&list, opts) {
            Ok(ds) => {
                assert!(ds.samples.len() <= 100 && ds.names == ["a", "b"]);
                // Errors of skipped entries name their own file.
                None
            }
            Err(e) => Some(e.to_string()),
        }
    });
}

#[test]
fn fuzz_data_yaml_end_to_end() {
    let d = small_dataset();
    let yaml = d.path().join("data.yaml");
    let shown = yaml.display().to_string();
    let seeds = vec![b"val: images/val\nnames: [a, b]\n".to_vec(), b"val: [images/val]\nnc: 2\n".to_vec()];
    let opts = OpenOptions { on_bad: OnBad::Skip, limit: Some(100), ..Default::default() };
    fuzz("data.yaml (open)", 1500, &seeds, Flavour::Yaml, &shown, &mut |input| {
        std::fs::write(&yaml, input).unwrap();
        match DetectionDataset::open_with(&yaml, opts) {
            Ok(ds) => {
                assert!(ds.samples.len() <= 100);
                None
            }
            // Errors about the folders it names may name those instead (a missing classes
            // file, an unreadable folder): they still name a path below the dataset.
            Err(e) => Some(e.to_string().replace(&d.path().display().to_string(), &shown)),
        }
    });
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/coco").join(name)).unwrap()
}

#[test]
fn fuzz_coco_ground_truth() {
    let path = Path::new("fuzz/coco/gt.json");
    let small = br#"{"images":[{"id":1,"width":10,"height":10,"file_name":"a.jpg"}],"annotations":[{"id":1,"image_id":1,"category_id":3,"bbox":[1,2,3,4],"area":12,"iscrowd":0}],"categories":[{"id":3,"name":"x"}]}"#;
    let seeds = vec![fixture("gt.json"), small.to_vec()];
    fuzz("COCO ground truth", 10_000, &seeds, Flavour::Json, "fuzz/coco/gt.json", &mut |input| {
        data::decode_text(path, input.to_vec())
            .and_then(|t| coco_json::parse_gt(path, &t))
            .and_then(|gt| coco_json::from_gt(path, gt, None))
            .map(|ds| assert!(ds.samples.iter().flat_map(|s| &s.boxes).all(|b| b.class < ds.names.len())))
            .err()
            .map(|e| e.to_string())
    });
}

#[test]
fn fuzz_coco_results() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("dets.json");
    let shown = path.display().to_string();
    let small = br#"[{"image_id":1,"category_id":3,"bbox":[1,2,3,4],"score":0.5}]"#;
    let seeds = vec![fixture("dets.json"), small.to_vec(), b"[]".to_vec()];
    fuzz("COCO results", 2000, &seeds, Flavour::Json, &shown, &mut |input| {
        std::fs::write(&path, input).unwrap();
        coco_json::read_detections(&path).err().map(|e| e.to_string())
    });
}

// ---------------------------------------------------------------------------------------
// The image stream as evaluation consumes it.

struct Zeros;

impl prunescope::eval::Predictor for Zeros {
    fn predict(&self, batch: &tch::Tensor) -> Result<tch::Tensor, prunescope::model::ForwardError> {
        Ok(tch::Tensor::zeros([batch.size()[0], 4, 7], (tch::Kind::Float, tch::Device::Cpu)))
    }

    fn device(&self) -> tch::Device {
        tch::Device::Cpu
    }
}

#[test]
fn evaluation_fails_naming_the_image_when_it_cannot_be_letterboxed() {
    let d = small_dataset();
    let ds = DetectionDataset::open(d.path(), None, OnBad::Skip).unwrap();
    for size in [0, 65536] {
        let cfg = prunescope::eval::EvalConfig { img_size: size, batch: 2, ..Default::default() };
        let r = prunescope::eval::evaluate(&Zeros, &ds, &cfg, &mut |_, _| true);
        let e = r.err().unwrap_or_else(|| panic!("size {size}: evaluated fewer images with no error")).to_string();
        let first: PathBuf = ds.samples[0].image.clone();
        assert!(e.contains(&first.display().to_string()) && e.contains(&format!("image size {size}")), "{e}");
    }
}
