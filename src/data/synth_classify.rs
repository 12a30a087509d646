//! A deterministic synthetic image-classification set ("polygons"): one large rotated shape per
//! picture on the textured, cluttered backgrounds of the shapes set, in 20 classes chosen to be
//! hard to tell apart (a heptagon, an octagon, a nonagon and a circle differ in a few pixels; a
//! blunt star is a star with shallow notches), written as image folders
//! (`train/CLASS/NNNNNN.jpg`, `val/CLASS/…`). The same seed gives byte-identical files.

use super::synth::{background, fill, hsv, image_seed, write_jpeg, write_pictures, Rng};
use super::DataError;
use image::RgbImage;
use std::path::Path;

/// Class names, in label order (sorted, as image folders list them).
pub const CLASSES: [&str; 20] = [
    "blunt-star4",
    "blunt-star5",
    "blunt-star6",
    "blunt-star7",
    "blunt-star8",
    "blunt-star9",
    "circle",
    "heptagon",
    "hexagon",
    "nonagon",
    "octagon",
    "pentagon",
    "square",
    "star4",
    "star5",
    "star6",
    "star7",
    "star8",
    "star9",
    "triangle",
];

/// Generation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifyConfig {
    /// Images per class.
    pub train_per_class: usize,
    pub val_per_class: usize,
    pub seed: u64,
    /// Square picture side in pixels.
    pub side: u32,
    pub jpeg_quality: u8,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        Self { train_per_class: 150, val_per_class: 30, seed: 0, side: 96, jpeg_quality: 92 }
    }
}

/// Outline of class `class` (an index into [`CLASSES`]) centred at `c`, circumradius `r`.
fn outline(class: usize, c: (f64, f64), r: f64, rot: f64, aspect: f64) -> Vec<(f64, f64)> {
    // (corners, inner radius of a star's notches as a fraction of r; 1 for a polygon)
    let (corners, inner) = match CLASSES[class] {
        "circle" => (64, 1.0),
        "triangle" => (3, 1.0),
        "square" => (4, 1.0),
        "pentagon" => (5, 1.0),
        "hexagon" => (6, 1.0),
        "heptagon" => (7, 1.0),
        "octagon" => (8, 1.0),
        "nonagon" => (9, 1.0),
        name => {
            let n: usize = name.trim_start_matches(|ch: char| !ch.is_ascii_digit()).parse().unwrap_or(5);
            (n, if name.starts_with("blunt") { 0.72 } else { 0.45 })
        }
    };
    let points = if inner < 1.0 { 2 * corners } else { corners };
    (0..points)
        .map(|i| {
            let radius = if inner < 1.0 && i % 2 == 1 { r * inner } else { r };
            let a = rot + std::f64::consts::TAU * i as f64 / points as f64;
            (c.0 + radius * a.cos(), c.1 + radius * a.sin() * aspect)
        })
        .collect()
}

/// One picture of class `class`, fully determined by `seed`.
pub fn image(seed: u64, class: usize, side: u32) -> RgbImage {
    let mut rng = Rng::new(seed);
    let mut img = background(&mut rng, side, side);
    let s = side as f64;
    let r = rng.range(0.26, 0.40) * s;
    let c = (rng.range(r * 1.05, s - r * 1.05), rng.range(r * 1.05, s - r * 1.05));
    let poly = outline(class, c, r, rng.range(0.0, std::f64::consts::TAU), rng.range(0.85, 1.15));
    fill(&mut img, &poly, hsv(rng.f64(), rng.range(0.4, 1.0), rng.range(0.35, 1.0)));
    img
}

/// Writes `train/CLASS/NNNNNN.jpg` and `val/CLASS/NNNNNN.jpg` (balanced classes).
/// `out` must not exist or be an empty folder; it is complete or absent afterwards.
pub fn generate(
    out: &Path,
    cfg: &ClassifyConfig,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(), DataError> {
    super::synth::check_empty_output(out)?;
    crate::fsio::write_dir_via(out, |tmp| write_dataset(tmp, cfg, threads, progress))
}

fn write_dataset(
    out: &Path,
    cfg: &ClassifyConfig,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(), DataError> {
    let n = CLASSES.len();
    for split in ["train", "val"] {
        for class in CLASSES {
            let d = out.join(split).join(class);
            std::fs::create_dir_all(&d).map_err(|e| DataError::io(&d, "cannot write", e))?;
        }
    }
    // Image i of a split is of class i mod 20.
    write_pictures(cfg.train_per_class * n, cfg.val_per_class * n, threads, progress, &|split, i| {
        let class = i % n;
        let img = image(image_seed(cfg.seed, split, i), class, cfg.side);
        write_jpeg(&out.join(split).join(CLASSES[class]).join(format!("{i:06}.jpg")), &img, cfg.jpeg_quality)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_sorted_and_outlines_have_their_corners() {
        let mut sorted = CLASSES.to_vec();
        sorted.sort();
        assert_eq!(sorted, CLASSES, "image folders list classes sorted: labels must follow that order");
        let corners = |name: &str| outline(CLASSES.iter().position(|c| *c == name).unwrap(), (0.0, 0.0), 1.0, 0.0, 1.0);
        assert_eq!(corners("triangle").len(), 3);
        assert_eq!(corners("nonagon").len(), 9);
        assert_eq!(corners("star7").len(), 14);
        assert_eq!(corners("blunt-star4").len(), 8);
        // A star's notches are deeper than a blunt star's.
        let inner = |name: &str| corners(name).iter().map(|p| (p.0 * p.0 + p.1 * p.1).sqrt()).fold(1.0, f64::min);
        assert!((inner("star5") - 0.45).abs() < 1e-9 && (inner("blunt-star5") - 0.72).abs() < 1e-9);
    }

    #[test]
    fn pictures_are_deterministic() {
        for class in 0..CLASSES.len() {
            let s = image_seed(3, "val", class);
            let a = image(s, class, 96);
            assert_eq!(a, image(s, class, 96));
            assert_eq!(a.dimensions(), (96, 96));
        }
    }
}
