//! A deterministic generator of a synthetic detection dataset ("shapes"): textured,
//! cluttered backgrounds with 1–8 rotated, coloured, partly occluded shapes of five classes,
//! written in YOLO layout with a data.yaml. The same seed gives byte-identical files.
//!
//! Circles and hexagons, and squares and hexagons, look alike when small: a weak model
//! confuses them, which the confusion matrix shows.

use super::DataError;
use image::{Rgb, RgbImage};
use std::path::Path;

/// Class names, in label order.
pub const CLASSES: [&str; 5] = ["circle", "square", "triangle", "hexagon", "star"];

/// Generation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthConfig {
    pub train: usize,
    pub val: usize,
    pub seed: u64,
    /// Image side range in pixels (each side drawn independently).
    pub min_side: u32,
    pub max_side: u32,
    /// Smallest object box side in pixels.
    pub min_object: f64,
    pub jpeg_quality: u8,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self { train: 2000, val: 300, seed: 0, min_side: 120, max_side: 160, min_object: 8.0, jpeg_quality: 90 }
    }
}

/// A small, fast, seedable generator (splitmix64); ours so files never change with a crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform integer in [lo, hi].
    pub fn int(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as u32
    }
}

/// One drawn object: class and its box (x1, y1, x2, y2) in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Object {
    pub class: usize,
    pub bbox: [f64; 4],
}

/// Outline of a shape of class `class`, centred at `c`, circumradius `r`, rotated by `rot`.
fn polygon(class: usize, c: (f64, f64), r: f64, rot: f64, aspect: f64) -> Vec<(f64, f64)> {
    let n = match class {
        0 => 48,
        1 => 4,
        2 => 3,
        3 => 6,
        _ => 10,
    };
    (0..n)
        .map(|i| {
            // Stars alternate outer and inner points.
            let radius = if class == 4 && i % 2 == 1 { r * 0.45 } else { r };
            let a = rot + std::f64::consts::TAU * i as f64 / n as f64;
            let (x, y) = (radius * a.cos(), radius * a.sin() * if class == 0 { 1.0 } else { aspect });
            (c.0 + x, c.1 + y)
        })
        .collect()
}

pub(super) fn inside(poly: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut c = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            c = !c;
        }
        j = i;
    }
    c
}

pub(super) fn bbox(poly: &[(f64, f64)]) -> [f64; 4] {
    let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    for &(x, y) in poly {
        b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
    }
    b
}

/// Fills a polygon with 4×4 supersampling (anti-aliased edges).
pub(super) fn fill(img: &mut RgbImage, poly: &[(f64, f64)], colour: [f64; 3]) {
    let b = bbox(poly);
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, y0) = ((b[0].floor() as i64).max(0), (b[1].floor() as i64).max(0));
    let (x1, y1) = ((b[2].ceil() as i64).min(w - 1), (b[3].ceil() as i64).min(h - 1));
    for py in y0..=y1 {
        for px in x0..=x1 {
            let mut hits = 0;
            for sy in 0..4 {
                for sx in 0..4 {
                    if inside(poly, px as f64 + (sx as f64 + 0.5) / 4.0, py as f64 + (sy as f64 + 0.5) / 4.0) {
                        hits += 1;
                    }
                }
            }
            if hits > 0 {
                let a = hits as f64 / 16.0;
                let p = img.get_pixel_mut(px as u32, py as u32);
                for ch in 0..3 {
                    p[ch] = (p[ch] as f64 * (1.0 - a) + colour[ch] * a).round() as u8;
                }
            }
        }
    }
}

pub(super) fn hsv(h: f64, s: f64, v: f64) -> [f64; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, g, b) = match i as i64 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [r * 255.0, g * 255.0, b * 255.0]
}

/// A textured background: a colour gradient, sinusoidal texture, pixel noise, and clutter
/// (thin lines and soft blobs that belong to no class).
pub(super) fn background(rng: &mut Rng, w: u32, h: u32) -> RgbImage {
    let c0 = hsv(rng.f64(), rng.range(0.1, 0.6), rng.range(0.3, 0.9));
    let c1 = hsv(rng.f64(), rng.range(0.1, 0.6), rng.range(0.3, 0.9));
    let (fx, fy, amp) = (rng.range(0.02, 0.3), rng.range(0.02, 0.3), rng.range(5.0, 30.0));
    let (ph, angle) = (rng.range(0.0, 6.3), rng.range(0.0, 6.3));
    let mut img = RgbImage::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let t = ((x as f64 * angle.cos() + y as f64 * angle.sin()) / (w + h) as f64 + 0.5).clamp(0.0, 1.0);
            let tex = amp * ((x as f64 * fx + ph).sin() * (y as f64 * fy).cos());
            let noise = rng.range(-12.0, 12.0);
            let px: [u8; 3] =
                std::array::from_fn(|c| (c0[c] * (1.0 - t) + c1[c] * t + tex + noise).clamp(0.0, 255.0).round() as u8);
            img.put_pixel(x, y, Rgb(px));
        }
    }
    for _ in 0..rng.int(2, 8) {
        // A thin line as a long, narrow rectangle.
        let (cx, cy) = (rng.range(0.0, w as f64), rng.range(0.0, h as f64));
        let (len, th, a) = (rng.range(10.0, w as f64), rng.range(0.6, 2.0), rng.range(0.0, 6.3));
        let (dx, dy) = (a.cos(), a.sin());
        let line = [
            (cx - dx * len / 2.0 - dy * th, cy - dy * len / 2.0 + dx * th),
            (cx + dx * len / 2.0 - dy * th, cy + dy * len / 2.0 + dx * th),
            (cx + dx * len / 2.0 + dy * th, cy + dy * len / 2.0 - dx * th),
            (cx - dx * len / 2.0 + dy * th, cy - dy * len / 2.0 - dx * th),
        ];
        fill(&mut img, &line, hsv(rng.f64(), rng.range(0.0, 0.8), rng.range(0.2, 1.0)));
    }
    for _ in 0..rng.int(0, 4) {
        // A smooth, elongated blob (aspect 2.5–4): unlike every class, which is near-round.
        let (cx, cy, r) = (rng.range(0.0, w as f64), rng.range(0.0, h as f64), rng.range(3.0, 10.0));
        let (aspect, rot, phase) = (rng.range(2.5, 4.0), rng.range(0.0, 6.3), rng.range(0.0, 6.3));
        let blob: Vec<(f64, f64)> = (0..32)
            .map(|i| {
                let a = std::f64::consts::TAU * i as f64 / 32.0;
                let wob = 1.0 + 0.08 * (2.0 * a + phase).sin();
                let (x, y) = (r * aspect * wob * a.cos(), r * wob * a.sin());
                (cx + x * rot.cos() - y * rot.sin(), cy + x * rot.sin() + y * rot.cos())
            })
            .collect();
        let mut col = hsv(rng.f64(), rng.range(0.0, 0.5), rng.range(0.3, 0.9));
        for c in col.iter_mut() {
            *c = (*c + 128.0) / 2.0;
        }
        fill(&mut img, &blob, col);
    }
    img
}

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    crate::metrics::iou_xyxy(a, b)
}

/// Fraction of `a`'s box covered by `b`'s box.
fn covered(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    iw * ih / ((a[2] - a[0]) * (a[3] - a[1])).max(1e-9)
}

/// One image and its objects, fully determined by `seed`.
pub fn image(seed: u64, cfg: &SynthConfig) -> (RgbImage, Vec<Object>) {
    let mut rng = Rng::new(seed);
    let (w, h) = (rng.int(cfg.min_side, cfg.max_side), rng.int(cfg.min_side, cfg.max_side));
    let mut img = background(&mut rng, w, h);
    let want = rng.int(1, 8) as usize;
    let mut objects: Vec<Object> = Vec::new();
    let max_obj = (w.min(h) as f64 * 0.55).max(cfg.min_object + 1.0);
    let mut tries = 0;
    while objects.len() < want && tries < 200 {
        tries += 1;
        let class = rng.int(0, CLASSES.len() as u32 - 1) as usize;
        // Uniform in √side: medium sizes most often, tiny and large ones regularly
        // (with 8 px and 88 px bounds a fifth are under 16 px).
        let (lo, hi) = (cfg.min_object.sqrt(), max_obj.sqrt());
        let side = (lo + rng.f64() * (hi - lo)).powi(2);
        let r = side / 2.0;
        let rot = rng.range(0.0, std::f64::consts::TAU);
        let aspect = rng.range(0.8, 1.25);
        let c = (rng.range(r * 1.3, w as f64 - r * 1.3), rng.range(r * 1.3, h as f64 - r * 1.3));
        let poly = polygon(class, c, r, rot, aspect);
        let b = bbox(&poly);
        if b[0] < 0.0 || b[1] < 0.0 || b[2] > w as f64 || b[3] > h as f64 || b[2] - b[0] < cfg.min_object * 0.7 {
            continue;
        }
        // Partial occlusion only: the new object may cover at most 40 % of an earlier one and
        // must not sit almost entirely on it.
        if objects.iter().any(|o| covered(&o.bbox, &b) > 0.4 || covered(&b, &o.bbox) > 0.6 || iou(&o.bbox, &b) > 0.4) {
            continue;
        }
        let colour = hsv(rng.f64(), rng.range(0.4, 1.0), rng.range(0.35, 1.0));
        fill(&mut img, &poly, colour);
        objects.push(Object { class, bbox: b });
    }
    (img, objects)
}

/// The seed of image `index` of a split: independent of how many images the other split has.
pub fn image_seed(seed: u64, split: &str, index: usize) -> u64 {
    let mut r = Rng::new(seed ^ if split == "train" { 0x7472_6169_6E00 } else { 0x7661_6C00 });
    for _ in 0..3 {
        r.next_u64();
    }
    r.next_u64() ^ (index as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// YOLO label lines for objects in a `w × h` image.
pub fn label_text(objects: &[Object], w: u32, h: u32) -> String {
    let (fw, fh) = (w as f64, h as f64);
    objects
        .iter()
        .map(|o| {
            let [x1, y1, x2, y2] = o.bbox;
            format!(
                "{} {:.6} {:.6} {:.6} {:.6}\n",
                o.class,
                (x1 + x2) / 2.0 / fw,
                (y1 + y2) / 2.0 / fh,
                (x2 - x1) / fw,
                (y2 - y1) / fh
            )
        })
        .collect()
}

/// Writes the dataset: `images/{train,val}/NNNNNN.jpg`, `labels/{train,val}/NNNNNN.txt` and
/// `data.yaml`. `progress(done, total)` is called as images are written.
///
/// `out` must not exist or be an empty folder: old and new files are never mixed. The
/// dataset is built in a temporary folder beside `out` and renamed into place, so `out` is
/// complete or absent.
pub fn generate(
    out: &Path,
    cfg: &SynthConfig,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(), DataError> {
    check_empty_output(out)?;
    crate::fsio::write_dir_via(out, |tmp| write_dataset(tmp, cfg, threads, progress))
}

/// Refuses an output that exists and is not an empty folder (old and new files are never mixed).
pub(super) fn check_empty_output(out: &Path) -> Result<(), DataError> {
    if out.exists() || out.is_symlink() {
        if !out.is_dir() {
            return Err(DataError::new(out, None, "exists and is not a folder: choose a new output folder"));
        }
        let mut entries = std::fs::read_dir(out).map_err(|e| DataError::io(out, "cannot list the folder", e))?;
        if entries.next().is_some() {
            return Err(DataError::new(
                out,
                None,
                "the output folder is not empty: choose a new folder or remove this one (synth never mixes old and new files)",
            ));
        }
    }
    Ok(())
}

/// Writes pictures 0..`train` of the train split and 0..`val` of the val split with
/// `write(split, index)` on `threads` threads; stops at the first error, which it returns.
pub(super) fn write_pictures(
    train: usize,
    val: usize,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
    write: &(dyn Fn(&str, usize) -> Result<(), DataError> + Sync),
) -> Result<(), DataError> {
    let jobs: Vec<(&str, usize)> = (0..train).map(|i| ("train", i)).chain((0..val).map(|i| ("val", i))).collect();
    let total = jobs.len();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let first_error: std::sync::Mutex<Option<DataError>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if j >= total || first_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                    break;
                }
                let (split, i) = jobs[j];
                if let Err(e) = write(split, i) {
                    if let Ok(mut slot) = first_error.lock() {
                        slot.get_or_insert(e);
                    }
                    break;
                }
                progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
            });
        }
    });
    match first_error.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_dataset(
    out: &Path,
    cfg: &SynthConfig,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(), DataError> {
    let err = |p: &Path, e: std::io::Error| DataError::io(p, "cannot write", e);
    for split in ["train", "val"] {
        for kind in ["images", "labels"] {
            let d = out.join(kind).join(split);
            std::fs::create_dir_all(&d).map_err(|e| err(&d, e))?;
        }
    }
    write_pictures(cfg.train, cfg.val, threads, progress, &|split, i| {
        let (img, objects) = image(image_seed(cfg.seed, split, i), cfg);
        let name = format!("{i:06}");
        let ip = out.join("images").join(split).join(format!("{name}.jpg"));
        let lp = out.join("labels").join(split).join(format!("{name}.txt"));
        write_jpeg(&ip, &img, cfg.jpeg_quality)?;
        std::fs::write(&lp, label_text(&objects, img.width(), img.height())).map_err(|e| err(&lp, e))
    })?;
    let names: String = CLASSES.iter().enumerate().map(|(i, n)| format!("  {i}: {n}\n")).collect();
    // No `path:`: Ultralytics resolves `path: .` against its own datasets folder; without it
    // both tools read the paths relative to this file.
    let yaml = format!(
        "# Made by: prunescope synth --train {} --val {} --seed {}\ntrain: images/train\nval: images/val\nnames:\n{names}",
        cfg.train, cfg.val, cfg.seed
    );
    let yp = out.join("data.yaml");
    std::fs::write(&yp, yaml).map_err(|e| err(&yp, e))
}

pub(super) fn write_jpeg(path: &Path, img: &RgbImage, quality: u8) -> Result<(), DataError> {
    let file = std::fs::File::create(path).map_err(|e| DataError::io(path, "cannot write", e))?;
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), quality);
    enc.encode_image(img).map_err(|e| DataError::image(path, "cannot encode", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_deterministic_and_objects_lie_inside() {
        let cfg = SynthConfig::default();
        for i in 0..30 {
            let s = image_seed(7, "val", i);
            let (a, oa) = image(s, &cfg);
            let (b, ob) = image(s, &cfg);
            assert!(a == b && oa == ob, "image {i} differs between runs");
            let (w, h) = a.dimensions();
            assert!((120..=160).contains(&w) && (120..=160).contains(&h));
            assert!((1..=8).contains(&oa.len()), "image {i}: {} objects", oa.len());
            for o in &oa {
                assert!(o.bbox[0] >= 0.0 && o.bbox[1] >= 0.0 && o.bbox[2] <= w as f64 && o.bbox[3] <= h as f64);
                assert!(o.bbox[2] - o.bbox[0] >= 5.6 && o.bbox[3] - o.bbox[1] >= 4.0);
            }
        }
        assert_ne!(image_seed(7, "val", 0), image_seed(7, "train", 0));
        assert_ne!(image_seed(7, "val", 0), image_seed(8, "val", 0));
    }

    #[test]
    fn a_shape_is_drawn_inside_its_box() {
        // A square on a flat background: every changed pixel lies within the labelled box
        // (±1 px of anti-aliasing), and the box's centre pixel carries the colour.
        let mut img = RgbImage::from_pixel(60, 60, Rgb([0, 0, 0]));
        let poly = polygon(1, (30.0, 30.0), 10.0, 0.3, 1.0);
        let b = bbox(&poly);
        fill(&mut img, &poly, [255.0, 255.0, 255.0]);
        for (x, y, p) in img.enumerate_pixels() {
            if p[0] > 0 {
                assert!(
                    x as f64 >= b[0] - 1.0
                        && x as f64 <= b[2] + 1.0
                        && y as f64 >= b[1] - 1.0
                        && y as f64 <= b[3] + 1.0
                );
            }
        }
        assert_eq!(img.get_pixel(30, 30)[0], 255);
    }
}
