//! Letterboxing: resize keeping the aspect ratio, pad to a square with grey (114), and map
//! boxes back to original pixels (the Ultralytics convention).

use image::RgbImage;

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

/// Largest letterbox side: a 16384² input is already 3 GiB of floats per image.
pub const MAX_SIZE: u32 = 16384;

/// Why an image cannot be letterboxed (the caller names the image).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LetterboxError {
    /// A model size no image can be letterboxed to.
    #[error("image size {size}: expected 1..={MAX_SIZE} pixels")]
    Size { size: u32 },
    /// An image without pixels.
    #[error("the image is {width}x{height} pixels: expected a non-empty image")]
    EmptyImage { width: u32, height: u32 },
    /// A buffer that cannot be allocated.
    #[error("image size {size}: the letterboxed image does not fit in memory")]
    OutOfMemory { size: u32 },
}

/// Refuses a model size no image can be resized to, and an image without pixels.
pub(super) fn check(img: &RgbImage, size: u32) -> Result<(), LetterboxError> {
    if size == 0 || size > MAX_SIZE {
        return Err(LetterboxError::Size { size });
    }
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(LetterboxError::EmptyImage { width: w, height: h });
    }
    Ok(())
}

/// A `size`×`size` CHW buffer filled with the padding grey, and its plane size; an error
/// where it cannot be allocated.
fn padded(size: u32) -> Result<(usize, Vec<f32>), LetterboxError> {
    let too_big = || LetterboxError::OutOfMemory { size };
    let plane = (size as usize).checked_mul(size as usize).ok_or_else(too_big)?;
    let len = plane.checked_mul(3).ok_or_else(too_big)?;
    let mut data: Vec<f32> = Vec::new();
    data.try_reserve_exact(len).map_err(|_| too_big())?;
    data.resize(len, PAD_VALUE as f32 / 255.0);
    Ok((plane, data))
}

/// Resizes `img` to fit a `size`×`size` square keeping its aspect ratio, centred on grey
/// padding, as CHW floats in [0, 1]; an error for a size of 0 or above [`MAX_SIZE`], an empty
/// image, or a buffer that cannot be allocated.
pub fn try_letterbox(img: &RgbImage, size: u32) -> Result<Letterboxed, LetterboxError> {
    check(img, size)?;
    let (w, h) = img.dimensions();
    let ratio = (size as f64 / w as f64).min(size as f64 / h as f64);
    let nw = ((w as f64 * ratio).round() as u32).clamp(1, size);
    let nh = ((h as f64 * ratio).round() as u32).clamp(1, size);
    let dw = (size - nw) as f64 / 2.0;
    let dh = (size - nh) as f64 / 2.0;
    let left = (dw - 0.1).round().max(0.0) as u32;
    let top = (dh - 0.1).round().max(0.0) as u32;
    let (plane, mut data) = padded(size)?;
    // Source coordinate of each output column/row: lower index and weight of the upper one.
    let taps = |n_out: u32, n_in: u32| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f64 / n_out as f64;
        (0..n_out)
            .map(|o| {
                let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(n_in as usize - 1);
                let i1 = (i0 + 1).min(n_in as usize - 1);
                (i0, i1, (src - i0 as f64) as f32)
            })
            .collect()
    };
    let xs = taps(nw, w);
    let ys = taps(nh, h);
    let raw = img.as_raw();
    let stride = 3 * w as usize;
    const INV: f32 = 1.0 / 255.0;
    for (oy, &(y0, y1, wy)) in ys.iter().enumerate() {
        let (r0, r1) = (&raw[y0 * stride..(y0 + 1) * stride], &raw[y1 * stride..(y1 + 1) * stride]);
        let row = (oy as u32 + top) as usize * size as usize + left as usize;
        for (ox, &(x0, x1, wx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let (a, b) = (r0[3 * x0 + c] as f32, r0[3 * x1 + c] as f32);
                let (cc, d) = (r1[3 * x0 + c] as f32, r1[3 * x1 + c] as f32);
                let top_v = a + (b - a) * wx;
                let bottom_v = cc + (d - cc) * wx;
                data[c * plane + row + ox] = (top_v + (bottom_v - top_v) * wy) * INV;
            }
        }
    }
    Ok(Letterboxed { data, size, original: (w, h), ratio, pad: (left, top) })
}

/// Ultralytics' validation letterbox (8.3/8.4, `BaseDataset.load_image` then
/// `LetterBox(scaleup=False)`): the long side resized to `size` with OpenCV's INTER_LINEAR
/// ([`resize_linear_u8`]), the new sizes rounded up (`math.ceil`, at most `size`), then centred
/// on grey 114, as CHW floats of the 8-bit values / 255. Boxes map back as its validator maps
/// them: through the height ratio h / h0 and the padding.
pub fn letterbox_ultralytics(img: &RgbImage, size: u32) -> Result<Letterboxed, LetterboxError> {
    check(img, size)?;
    let (w0, h0) = img.dimensions();
    let r = size as f64 / w0.max(h0) as f64;
    let (w, h) = if r != 1.0 {
        (((w0 as f64 * r).ceil() as u32).clamp(1, size), ((h0 as f64 * r).ceil() as u32).clamp(1, size))
    } else {
        (w0, h0)
    };
    let resized;
    let img = if (w, h) == (w0, h0) {
        img
    } else {
        resized = resize_linear_u8(img, w, h);
        &resized
    };
    let left = ((size - w) as f64 / 2.0 - 0.1).round().max(0.0) as u32;
    let top = ((size - h) as f64 / 2.0 - 0.1).round().max(0.0) as u32;
    let (plane, mut data) = padded(size)?;
    for (x, y, p) in img.enumerate_pixels() {
        let at = (y + top) as usize * size as usize + (x + left) as usize;
        for c in 0..3 {
            data[c * plane + at] = p[c] as f32 / 255.0;
        }
    }
    Ok(Letterboxed { data, size, original: (w0, h0), ratio: h as f64 / h0 as f64, pad: (left, top) })
}

/// OpenCV's `cv::resize(…, INTER_LINEAR)` of an 8-bit image, bit for bit (OpenCV 4.x/5.x on
/// x86): source positions (d + 0.5)·scale − 0.5 in single precision, coefficients rounded to
/// 11 bits, the horizontal pass exact in integers, the vertical one as its SIMD kernel rounds
/// it (each product shifted to 16 bits, their sum rounded by 2 bits), columns clamped at the
/// edges, rows clipped.
pub fn resize_linear_u8(img: &RgbImage, dw: u32, dh: u32) -> RgbImage {
    const ONE: f32 = 2048.0;
    let (sw, sh) = img.dimensions();
    // (source index, weight of it, weight of the next) per output index.
    let taps = |d_len: u32, s_len: u32, clamp: bool| -> Vec<(i64, i32, i32)> {
        let scale = 1.0 / (d_len as f64 / s_len as f64);
        (0..d_len)
            .map(|d| {
                let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
                let mut s = f.floor() as i64;
                let mut f = f - s as f32;
                if clamp && s < 0 {
                    (f, s) = (0.0, 0);
                }
                if clamp && s >= s_len as i64 - 1 {
                    (f, s) = (0.0, s_len as i64 - 1);
                }
                (s, ((1.0 - f) * ONE).round_ties_even() as i32, (f * ONE).round_ties_even() as i32)
            })
            .collect()
    };
    let xs = taps(dw, sw, true);
    let ys = taps(dh, sh, false);
    let raw = img.as_raw();
    let stride = 3 * sw as usize;
    // The horizontal pass of every source row, ×2048.
    let row = |y: usize| -> Vec<i32> {
        let r = &raw[y * stride..(y + 1) * stride];
        let mut out = Vec::with_capacity(3 * dw as usize);
        for &(sx, a0, a1) in &xs {
            let sx = sx as usize;
            for c in 0..3 {
                let v0 = r[3 * sx + c] as i32;
                out.push(if sx + 1 >= sw as usize {
                    v0 * ONE as i32
                } else {
                    v0 * a0 + r[3 * (sx + 1) + c] as i32 * a1
                });
            }
        }
        out
    };
    let rows: Vec<Vec<i32>> = (0..sh as usize).map(row).collect();
    let clip = |y: i64| y.clamp(0, sh as i64 - 1) as usize;
    let mul_hi = |v: i32, b: i32| (((v >> 4).clamp(-32768, 32767)) * b) >> 16;
    let mut out = RgbImage::new(dw, dh);
    let buf: &mut [u8] = &mut out;
    for (dy, &(sy, b0, b1)) in ys.iter().enumerate() {
        let (s0, s1) = (&rows[clip(sy)], &rows[clip(sy + 1)]);
        let dst = &mut buf[dy * 3 * dw as usize..(dy + 1) * 3 * dw as usize];
        for (x, d) in dst.iter_mut().enumerate() {
            *d = ((mul_hi(s0[x], b0) + mul_hi(s1[x], b1) + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_out_of_range_are_errors_not_panics() {
        let img = RgbImage::from_pixel(7, 5, image::Rgb([1, 2, 3]));
        for size in [0, MAX_SIZE + 1, 65536, u32::MAX] {
            let e = try_letterbox(&img, size).unwrap_err();
            assert_eq!(e, LetterboxError::Size { size });
            assert!(e.to_string().contains(&format!("image size {size}")), "{e}");
        }
        assert_eq!(
            try_letterbox(&RgbImage::new(0, 3), 32).unwrap_err(),
            LetterboxError::EmptyImage { width: 0, height: 3 }
        );
        assert_eq!(try_letterbox(&img, 1).unwrap().data.len(), 3);
    }

    #[test]
    fn bilinear_resize_matches_half_pixel_centres() {
        // A 4x1 ramp 0, 100, 200, 255 halved to 2x1 (padded into 2x2): output pixel 0 samples
        // source x = (0 + 0.5)·2 − 0.5 = 0.5 -> 50; pixel 1 samples 2.5 -> 227.5.
        let img = RgbImage::from_fn(4, 1, |x, _| image::Rgb([[0, 100, 200, 255][x as usize]; 3]));
        let lb = try_letterbox(&img, 2).unwrap();
        assert_eq!((lb.ratio, lb.pad), (0.5, (0, 0)));
        assert!((lb.data[0] * 255.0 - 50.0).abs() < 1e-4);
        assert!((lb.data[1] * 255.0 - 227.5).abs() < 1e-4);
        // Same size: the pixels are copied exactly.
        let img = RgbImage::from_fn(3, 2, |x, y| image::Rgb([(10 * x + y) as u8, 0, 0]));
        let lb = try_letterbox(&img, 3).unwrap();
        assert_eq!(lb.pad, (0, 0)); // (3 - 2)/2 = 0.5 -> round(0.4) = 0 on top
        assert_eq!(lb.data[3] * 255.0, 1.0); // row 0 of the image, x 0, y 1 -> value 1
    }

    #[test]
    fn wide_image_is_padded_top_and_bottom_and_boxes_map_back() {
        // 200x100 into 160: ratio 0.8 -> 160x80, padding (160-80)/2 = 40 on top.
        let img = RgbImage::from_pixel(200, 100, image::Rgb([255, 0, 0]));
        let lb = try_letterbox(&img, 160).unwrap();
        assert_eq!((lb.ratio, lb.pad), (0.8, (0, 40)));
        let plane = 160 * 160;
        assert_eq!(lb.data[0], PAD_VALUE as f32 / 255.0); // top-left is padding
        assert_eq!(lb.data[40 * 160], 1.0); // first image row, red channel
        assert_eq!(lb.data[plane + 40 * 160], 0.0); // green
                                                    // A box covering the whole picture maps back to the whole original.
        assert_eq!(lb.to_original([0.0, 40.0, 160.0, 120.0]), [0.0, 0.0, 200.0, 100.0]);
    }
}
