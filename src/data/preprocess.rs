//! How a picture becomes a model input; part of the model's description, recorded in runs and
//! plans. Detectors letterbox ([`super::letterbox`]: PyTorch-YOLOv3's for Darknet models,
//! Ultralytics' validation pipeline for its exports); classifiers resize the shorter side, crop
//! the centre and normalise, with one of two presets:
//! - `torchvision`: torchvision's ImageNet evaluation transform: the shorter side resized to
//!   floor(size / 0.875) (bilinear), a centred size × size crop, /255, ImageNet mean and std.
//! - `ultralytics`: Ultralytics' `classify_transforms` (8.x): the shorter side resized to the
//!   size (crop fraction 1, bilinear), a centred crop, /255, mean 0 and std 1.
//!
//! The bilinear filter is the `image` crate's triangle filter, which widens with the scale
//! when shrinking as PIL's does; its rounding differs from PIL's by at most one grey level.

use super::letterbox::{letterbox_ultralytics, try_letterbox, LetterboxError, Letterboxed, MAX_SIZE};
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// A classifier's input transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassifyPreset {
    Torchvision,
    Ultralytics,
}

impl crate::quantity::Named for ClassifyPreset {
    const ALL: &'static [Self] = &[ClassifyPreset::Torchvision, ClassifyPreset::Ultralytics];
    fn name(self) -> &'static str {
        match self {
            ClassifyPreset::Torchvision => "torchvision",
            ClassifyPreset::Ultralytics => "ultralytics",
        }
    }
}

/// ImageNet channel means and standard deviations (torchvision's).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl ClassifyPreset {
    /// The shorter side before the crop.
    pub fn resize_side(self, size: u32) -> u32 {
        match self {
            ClassifyPreset::Torchvision => (size as f64 / 0.875).floor() as u32,
            ClassifyPreset::Ultralytics => size,
        }
    }

    fn mean_std(self) -> ([f32; 3], [f32; 3]) {
        match self {
            ClassifyPreset::Torchvision => (IMAGENET_MEAN, IMAGENET_STD),
            ClassifyPreset::Ultralytics => ([0.0; 3], [1.0; 3]),
        }
    }

    /// `img` as the classifier's input: CHW floats, `size` × `size`.
    pub fn apply(self, img: &RgbImage, size: u32) -> Result<Vec<f32>, LetterboxError> {
        super::letterbox::check(img, size)?;
        let (w, h) = img.dimensions();
        let short = self.resize_side(size);
        // torchvision: the shorter side set, the longer one scaled and truncated.
        let (nw, nh) = if w <= h {
            (short, ((short as u64 * h as u64) / w as u64).max(1) as u32)
        } else {
            (((short as u64 * w as u64) / h as u64).max(1) as u32, short)
        };
        if nw > MAX_SIZE * 4 || nh > MAX_SIZE * 4 {
            return Err(LetterboxError::OutOfMemory { size });
        }
        let resized = if (nw, nh) == (w, h) {
            img.clone()
        } else {
            image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle)
        };
        // torchvision's center_crop: int(round((H - size) / 2)), Python's round (ties to even).
        let top = ((nh as f64 - size as f64) / 2.0).round_ties_even() as u32;
        let left = ((nw as f64 - size as f64) / 2.0).round_ties_even() as u32;
        let (mean, std) = self.mean_std();
        let plane = size as usize * size as usize;
        let mut out = Vec::new();
        out.try_reserve_exact(3 * plane).map_err(|_| LetterboxError::OutOfMemory { size })?;
        out.resize(3 * plane, 0.0);
        for y in 0..size {
            for x in 0..size {
                let p = resized.get_pixel(left + x, top + y);
                for c in 0..3 {
                    out[c * plane + (y * size + x) as usize] = (p[c] as f32 / 255.0 - mean[c]) / std[c];
                }
            }
        }
        Ok(out)
    }
}

/// How a picture becomes a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", tag = "kind", content = "preset")]
pub enum Preprocess {
    /// Darknet detectors: [`try_letterbox`] (PyTorch-YOLOv3's: bilinear in floats, sizes
    /// rounded); boxes are mapped back through its geometry.
    #[default]
    Letterbox,
    /// Ultralytics' detectors: [`letterbox_ultralytics`] (its validation pipeline: OpenCV's
    /// INTER_LINEAR on 8-bit pixels, sizes rounded up, centred, grey 114).
    #[serde(rename = "letterbox-ultralytics")]
    LetterboxUltralytics,
    /// Classifiers.
    Classify(ClassifyPreset),
}

impl Preprocess {
    /// A model's transform: detectors letterbox (Ultralytics' exports as its validator
    /// does); classifiers use `preset`, by default Ultralytics' transform for its exports
    /// (`by_ultralytics`) and torchvision's otherwise.
    pub fn choose(classifier: bool, by_ultralytics: bool, preset: Option<ClassifyPreset>) -> Self {
        match (classifier, by_ultralytics) {
            (true, _) => Preprocess::Classify(preset.unwrap_or(if by_ultralytics {
                ClassifyPreset::Ultralytics
            } else {
                ClassifyPreset::Torchvision
            })),
            (false, true) => Preprocess::LetterboxUltralytics,
            (false, false) => Preprocess::Letterbox,
        }
    }

    /// `img` as an input of side `size`, with the geometry a detector maps boxes back through
    /// (a classifier's is the identity: it has no boxes).
    pub fn apply(self, img: &RgbImage, size: u32) -> Result<Letterboxed, LetterboxError> {
        match self {
            Preprocess::Letterbox => try_letterbox(img, size),
            Preprocess::LetterboxUltralytics => letterbox_ultralytics(img, size),
            Preprocess::Classify(p) => {
                Ok(Letterboxed { data: p.apply(img, size)?, size, original: img.dimensions(), ratio: 1.0, pad: (0, 0) })
            }
        }
    }

    /// What reports print: `letterbox`, `torchvision`, `ultralytics`.
    pub fn name(self) -> &'static str {
        use crate::quantity::Named;
        match self {
            Preprocess::Letterbox => "letterbox",
            Preprocess::LetterboxUltralytics => "letterbox-ultralytics",
            Preprocess::Classify(p) => p.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At the model size with the Ultralytics preset the input is the picture /255, CHW; a
    /// torchvision crop of a 4:3 picture takes the centre (derived by hand: 128×96 → shorter
    /// side 73 → 97×73, crop 64 at left round(16.5) = 16, top round(4.5) = 4).
    #[test]
    fn presets_resize_crop_and_normalise() {
        let img = RgbImage::from_fn(8, 8, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 7]));
        let got = ClassifyPreset::Ultralytics.apply(&img, 8).unwrap();
        assert_eq!(got[3], 90.0 / 255.0);
        assert_eq!(got[64 + 2 * 8], 60.0 / 255.0);
        assert_eq!(got[128 + 63], 7.0 / 255.0);
        let flat = RgbImage::from_pixel(128, 96, image::Rgb([255, 128, 0]));
        let t = ClassifyPreset::Torchvision.apply(&flat, 64).unwrap();
        assert_eq!(ClassifyPreset::Torchvision.resize_side(64), 73);
        assert_eq!(ClassifyPreset::Torchvision.resize_side(224), 256);
        assert_eq!(t.len(), 3 * 64 * 64);
        let want = [(1.0 - 0.485) / 0.229, (128.0 / 255.0 - 0.456) / 0.224, (0.0 - 0.406) / 0.225];
        for c in 0..3 {
            assert!((t[c * 4096 + 100] - want[c]).abs() < 1e-5, "channel {c}");
        }
        assert!(ClassifyPreset::Torchvision.apply(&RgbImage::new(0, 3), 64).is_err());
        assert!(ClassifyPreset::Torchvision.apply(&flat, 0).is_err());
    }
}
