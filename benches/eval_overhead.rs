//! Evaluation overhead: images/s of `eval::evaluate` (decode on the prefetch pool, letterbox,
//! forward, NMS, metrics) against the bare forward pass over the same, already decoded
//! images. Prints the figures and the overhead; the target is ≤ 10 %.
//!
//! Run with `make bench` (or `cargo bench --bench eval_overhead` inside the libtorch env).
//! The weights are PyTorch-style random initialisation: every box then scores about
//! 0.5 × 0.5, far above conf 0.001, so NMS sees the worst case of candidates.

use prunescope::data::{load_rgb, try_letterbox, DetectionDataset, OnBad};
use prunescope::eval::{self, EvalConfig};
use prunescope::model::{Cfg, Darknet, Graph, Layout, Weights};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Tensor};

struct Case {
    name: &'static str,
    cfg: PathBuf,
    size: u32,
    images: usize,
    /// Original image sizes cycle through these.
    dims: &'static [(u32, u32)],
    classes: usize,
}

fn make_images(dir: &Path, case: &Case) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    let mut seed = 12345u64;
    let mut rnd = move |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as u32
    };
    for i in 0..case.images {
        let (w, h) = case.dims[i % case.dims.len()];
        let mut img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7 + y * 3) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8])
        });
        let mut labels = String::new();
        for _ in 0..4 {
            let (bw, bh) = (8 + rnd(w / 3), 8 + rnd(h / 3));
            let (x, y) = (rnd(w - bw), rnd(h - bh));
            let c = rnd(case.classes as u32);
            let colour = image::Rgb([rnd(256) as u8, rnd(256) as u8, rnd(256) as u8]);
            for yy in y..y + bh {
                for xx in x..x + bw {
                    img.put_pixel(xx, yy, colour);
                }
            }
            let (fw, fh) = (w as f64, h as f64);
            labels.push_str(&format!(
                "{c} {} {} {} {}\n",
                (x as f64 + bw as f64 / 2.0) / fw,
                (y as f64 + bh as f64 / 2.0) / fh,
                bw as f64 / fw,
                bh as f64 / fh
            ));
        }
        img.save(dir.join(format!("images/{i:04}.jpg"))).unwrap();
        std::fs::write(dir.join(format!("labels/{i:04}.txt")), labels).unwrap();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run(case: &Case) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    make_images(dir.path(), case);
    let cfg = Cfg::from_file(&case.cfg).unwrap();
    let graph = Graph::build(&cfg, 1, case.size as usize, case.size as usize).unwrap();
    let weights = Weights::initialize(&Layout::of(&cfg, &graph), 1);
    let net = Darknet::new(&cfg, &graph, &weights, Device::Cpu).unwrap();
    let ds = DetectionDataset::open(dir.path(), Some(cfg.classes()), OnBad::Error).unwrap();
    let ecfg = EvalConfig { img_size: case.size, batch: 8, ..Default::default() };
    let s = case.size as i64;
    // The same images, decoded and letterboxed beforehand, in the same batches.
    let batches: Vec<Tensor> = ds
        .samples
        .chunks(ecfg.batch)
        .map(|chunk| {
            let flat: Vec<f32> = chunk
                .iter()
                .flat_map(|smp| try_letterbox(&load_rgb(&smp.image).unwrap(), case.size).unwrap().data)
                .collect();
            Tensor::from_slice(&flat).view([chunk.len() as i64, 3, s, s])
        })
        .collect();
    let _ = net.forward(&batches[0]).unwrap(); // warm-up
                                               // Rounds alternate the two measurements; the overhead is the median of the per-round
                                               // ratios, which cancels slow drifts of the machine's speed.
    let (mut bare, mut full, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..7 {
        let t = Instant::now();
        for b in &batches {
            let _ = net.forward(b).unwrap();
        }
        let b = case.images as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let r = eval::evaluate(&net, &ds, &ecfg, &mut |_, _| true).unwrap();
        let f = case.images as f64 / t.elapsed().as_secs_f64();
        bare.push(b);
        full.push(f);
        ratios.push(b / f);
        last = Some(r);
    }
    let r = last.unwrap();
    let (bare, full) = (median(bare), median(full));
    let overhead = 100.0 * (median(ratios) - 1.0);
    let n = case.images as f64;
    println!(
        "{:<28} forward only {:>7.1} img/s   evaluate {:>7.1} img/s   overhead {:>5.1} %   (per image: decode wait {:.2} ms, NMS {:.2} ms, metrics {:.2} ms; {} threads)",
        case.name,
        bare,
        full,
        overhead,
        1e3 * r.timing.decode_wait_s / n,
        1e3 * r.timing.postprocess_s / n,
        1e3 * r.timing.metrics_s / n,
        tch::get_num_threads()
    );
    serde_json::json!({"case": case.name, "forward_images_per_s": bare, "eval_images_per_s": full, "overhead_percent": overhead})
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cases = [
        Case {
            name: "shapes-tiny 160, 5 classes",
            cfg: root.join("sample_runs/shapes/yolov3-tiny-shapes.cfg"),
            size: 160,
            images: 200,
            dims: &[(200, 150), (160, 240), (224, 224), (180, 120)],
            classes: 5,
        },
        Case {
            name: "yolov3-tiny 416, 80 classes",
            cfg: root.join("tests/fixtures/darknet/yolov3-tiny.cfg"),
            size: 416,
            images: 64,
            dims: &[(640, 480), (480, 640), (640, 427)],
            classes: 80,
        },
    ];
    let results: Vec<serde_json::Value> = cases.iter().map(run).collect();
    println!("{}", serde_json::json!({ "benchmark": "eval_overhead", "results": results }));
}
