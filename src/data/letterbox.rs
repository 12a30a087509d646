//! Letterboxing: resize keeping the aspect ratio, pad to a square with grey (114), and map
//! boxes back to original pixels (the Ultralytics convention).

use image::{imageops::FilterType, RgbImage};

/// A letterboxed image as CHW floats in [0, 1], with what is needed to map boxes back.
#[derive(Debug, Clone)]
pub struct Letterboxed {
    pub data: Vec<f32>,
    pub size: u32,
    /// Original width and height.
    pub original: (u32, u32),
    /// Scale from original to model pixels.
    pub ratio: f64,
    /// Left and top padding in model pixels.
    pub pad: (u32, u32),
}

impl Letterboxed {
    /// Maps an (x1, y1, x2, y2) box from model input pixels to original pixels, clipped.
    pub fn to_original(&self, b: [f32; 4]) -> [f64; 4] {
        let (w, h) = (self.original.0 as f64, self.original.1 as f64);
        let (px, py) = (self.pad.0 as f64, self.pad.1 as f64);
        [
            ((b[0] as f64 - px) / self.ratio).clamp(0.0, w),
            ((b[1] as f64 - py) / self.ratio).clamp(0.0, h),
            ((b[2] as f64 - px) / self.ratio).clamp(0.0, w),
            ((b[3] as f64 - py) / self.ratio).clamp(0.0, h),
        ]
    }
}

/// Grey of the padding, 114/255 as in Ultralytics.
pub const PAD_VALUE: u8 = 114;

/// Resizes `img` (bilinear) into a `size × size` square, centred, padded with grey.
pub fn letterbox(img: &RgbImage, size: u32) -> Letterboxed {
    let (w, h) = img.dimensions();
    let ratio = (size as f64 / w as f64).min(size as f64 / h as f64);
    let nw = ((w as f64 * ratio).round() as u32).clamp(1, size);
    let nh = ((h as f64 * ratio).round() as u32).clamp(1, size);
    let resized;
    let src = if (nw, nh) == (w, h) {
        img
    } else {
        resized = image::imageops::resize(img, nw, nh, FilterType::Triangle);
        &resized
    };
    let dw = (size - nw) as f64 / 2.0;
    let dh = (size - nh) as f64 / 2.0;
    let left = (dw - 0.1).round().max(0.0) as u32;
    let top = (dh - 0.1).round().max(0.0) as u32;
    let plane = (size * size) as usize;
    let mut data = vec![PAD_VALUE as f32 / 255.0; 3 * plane];
    for (x, y, p) in src.enumerate_pixels() {
        let idx = ((y + top) * size + (x + left)) as usize;
        for c in 0..3 {
            data[c * plane + idx] = p[c] as f32 / 255.0;
        }
    }
    Letterboxed { data, size, original: (w, h), ratio, pad: (left, top) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_image_is_padded_top_and_bottom_and_boxes_map_back() {
        // 200x100 into 160: ratio 0.8 -> 160x80, padding (160-80)/2 = 40 on top.
        let img = RgbImage::from_pixel(200, 100, image::Rgb([255, 0, 0]));
        let lb = letterbox(&img, 160);
        assert_eq!((lb.ratio, lb.pad), (0.8, (0, 40)));
        let plane = 160 * 160;
        assert_eq!(lb.data[0], PAD_VALUE as f32 / 255.0); // top-left is padding
        assert_eq!(lb.data[40 * 160], 1.0); // first image row, red channel
        assert_eq!(lb.data[plane + 40 * 160], 0.0); // green
                                                    // A box covering the whole picture maps back to the whole original.
        assert_eq!(lb.to_original([0.0, 40.0, 160.0, 120.0]), [0.0, 0.0, 200.0, 100.0]);
    }
}
