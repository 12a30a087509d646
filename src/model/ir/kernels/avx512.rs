//! prunescope's AVX-512 kernels for the layers of pruned detectors and classifiers, where
//! oneDNN spends 10–50 µs a call mostly on set-up: dense (one group) convolutions up to a
//! few million multiply-adds, depthwise convolutions, and SiLU (fused into the dense
//! convolution's stores, or alone with the same function). All work on the executor's NHWC
//! layout and split their output pixels over libtorch's intra-op threads (see `threads`).
//!
//! Dense: each output pixel's vector of 16 output channels accumulates
//! `x[pixel + tap, ci] · w[tap, ci, co..co+16]` in a register; a tile of pixels and one or
//! two vectors of channels stay in registers over the whole window. Depthwise: a tile of
//! pixels' vectors of 16 channels accumulates `x[pixel + tap, c..c+16] · w[tap, c..c+16]`.

use super::{dense_float_cpu, Activation, ConvShape, Geometry};
use tch::{Device, Kind, Tensor};

/// Output channels per vector.
const LANES: usize = 16;

/// The most multiply-adds per image this loop takes on; past it oneDNN's blocked kernels
/// are faster (measured on the fixture models and the Darknet sample at batch 8).
const MAX_MACS: usize = 20_000_000;

/// Whether the CPU has AVX-512F (checked once).
pub fn available() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        return false;
    })
}

/// Weights packed for a loop, and the bias padded alike (zero past `cout`). Dense: per
/// block of 16 output channels, `[kh][kw][ci][16]`. Depthwise: `[kh·kw][C]`, channels
/// padded to whole vectors.
struct Packed {
    depthwise: bool,
    weights: Vec<f32>,
    bias: Vec<f32>,
    cout: usize,
    cin: usize,
    kernel: (usize, usize),
}

impl Packed {
    /// Packs a float CPU weight `[C_out, C_in, kh, kw]` (any strides) and its bias.
    fn new(w: &Tensor, bias: Option<&Tensor>) -> Option<Packed> {
        let (cout, cin, kh, kw) = w.size4().ok()?;
        let (cout, cin, kh, kw) = (cout as usize, cin as usize, kh as usize, kw as usize);
        if w.kind() != Kind::Float || w.device() != Device::Cpu || !dense_float_cpu(w) {
            return None;
        }
        let bias_ok = bias.is_none_or(|b| {
            b.size() == [cout as i64] && b.kind() == Kind::Float && b.device() == Device::Cpu && b.is_contiguous()
        });
        if !bias_ok || cout == 0 || cin == 0 {
            return None;
        }
        let stride: Vec<usize> = w.stride().iter().map(|&s| s as usize).collect();
        let blocks = cout.div_ceil(LANES);
        let per_block = kh * kw * cin * LANES;
        let mut weights = vec![0f32; blocks * per_block];
        // SAFETY: `w` is a dense float CPU tensor (checked above): every index below is
        // inside its storage span, and it lives for the whole call.
        let src = unsafe { std::slice::from_raw_parts(w.data_ptr() as *const f32, w.numel()) };
        for co in 0..cout {
            let (block, lane) = (co / LANES, co % LANES);
            for y in 0..kh {
                for x in 0..kw {
                    for ci in 0..cin {
                        let at = co * stride[0] + ci * stride[1] + y * stride[2] + x * stride[3];
                        weights[block * per_block + ((y * kw + x) * cin + ci) * LANES + lane] = src[at];
                    }
                }
            }
        }
        let mut padded = vec![0f32; blocks * LANES];
        if let Some(b) = bias {
            // SAFETY: a contiguous float CPU tensor of `cout` elements (checked above).
            padded[..cout].copy_from_slice(unsafe { std::slice::from_raw_parts(b.data_ptr() as *const f32, cout) });
        }
        Some(Packed { depthwise: false, weights, bias: padded, cout, cin, kernel: (kh, kw) })
    }

    /// Packs a depthwise weight `[C, 1, kh, kw]` (dense: that order in memory whatever its
    /// strides) and its bias; the caller checked both are dense float CPU tensors.
    fn depthwise(w: &Tensor, bias: Option<&Tensor>) -> Option<Packed> {
        let (c, _, kh, kw) = w.size4().ok()?;
        let (c, kh, kw) = (c as usize, kh as usize, kw as usize);
        let (kk, cp) = (kh * kw, c.div_ceil(LANES) * LANES);
        // SAFETY: dense float CPU tensors of `c·kk` and `c` floats, alive for the call.
        let (ws, bs) = unsafe {
            (
                std::slice::from_raw_parts(w.data_ptr() as *const f32, c * kk),
                bias.map(|b| std::slice::from_raw_parts(b.data_ptr() as *const f32, c)),
            )
        };
        let mut weights = vec![0f32; kk * cp];
        for (ch, filter) in ws.chunks_exact(kk).enumerate() {
            for (tap, &v) in filter.iter().enumerate() {
                weights[tap * cp + ch] = v;
            }
        }
        let mut padded = vec![0f32; cp];
        if let Some(b) = bs {
            padded[..c].copy_from_slice(b);
        }
        Some(Packed { depthwise: true, weights, bias: padded, cout: c, cin: 1, kernel: (kh, kw) })
    }
}

/// Packed weights of a net's convolutions by node, made at first use and kept while the
/// node's weight and bias are the tensors they were made from (held here, so that a
/// replaced weight cannot reuse their address). Packing costs about as much as the
/// convolution itself on a low-resolution layer.
#[derive(Default)]
pub struct PackCache {
    entries: std::sync::Mutex<std::collections::HashMap<usize, Entry>>,
}

struct Entry {
    weight: Tensor,
    bias: Option<Tensor>,
    packed: Packed,
}

impl std::fmt::Debug for PackCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        write!(f, "PackCache({n} convolutions)")
    }
}

/// Whether `a` and `b` are one tensor: the same memory, sizes and strides.
fn same(a: &Tensor, b: &Tensor) -> bool {
    a.data_ptr() == b.data_ptr() && a.size() == b.size() && a.stride() == b.stride() && a.kind() == b.kind()
}

impl PackCache {
    /// `f` on node `node`'s packed weights `w` and `bias`, packed now if they are not yet.
    /// None where they cannot be packed.
    fn with<R>(
        &self,
        node: usize,
        w: &Tensor,
        bias: Option<&Tensor>,
        depthwise: bool,
        f: impl FnOnce(&Packed) -> R,
    ) -> Option<R> {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = entries.get(&node).is_some_and(|e| {
            e.packed.depthwise == depthwise
                && same(&e.weight, w)
                && match (&e.bias, bias) {
                    (Some(a), Some(b)) => same(a, b),
                    (None, None) => true,
                    _ => false,
                }
        });
        if !current {
            let packed = if depthwise { Packed::depthwise(w, bias)? } else { Packed::new(w, bias)? };
            entries.insert(node, Entry { weight: w.shallow_clone(), bias: bias.map(Tensor::shallow_clone), packed });
        }
        entries.get(&node).map(|e| f(&e.packed))
    }
}

/// The convolution of `x` (NHWC, see [`Geometry`]) with packed weights where this loop
/// applies: AVX-512, one group, at most [`MAX_MACS`] per image. None otherwise.
/// `cache`: where the weights are the net's own (not a pruned layer's trial weights), its
/// pack cache and the node. `act`: applied to each output as it is stored where
/// [`Activation::fusable`] (the second value says whether it was), with the function a
/// separate [`Activation::apply`] computes, so the two agree bit for bit.
pub fn dense(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    s: &ConvShape,
    cache: Option<(&PackCache, usize)>,
    act: Option<Activation>,
) -> Option<Result<(Tensor, bool), tch::TchError>> {
    if !available() || s.group != 1 {
        return None;
    }
    let g = Geometry::of(x, w, bias, s)?;
    let macs = (g.oh * g.ow * g.kh * g.kw) as usize * g.cin * g.cout;
    if w.size()[1] as usize != g.cin || macs > MAX_MACS {
        return None;
    }
    let act = act.filter(|a| a.fusable());
    let y = match cache {
        Some((cache, node)) => cache.with(node, w, bias, false, |p| launch(x, p, &g, act)),
        None => Some(launch(x, &Packed::new(w, bias)?, &g, act)),
    };
    y.map(|y| y.map(|y| (y, act.is_some())))
}

fn launch(x: &Tensor, p: &Packed, g: &Geometry, act: Option<Activation>) -> Result<Tensor, tch::TchError> {
    debug_assert!(p.cin == g.cin && p.cout == g.cout && p.kernel == (g.kh as usize, g.kw as usize));
    let out = Tensor::f_empty([g.n as i64, g.oh, g.ow, g.cout as i64], (Kind::Float, Device::Cpu))?;
    // The input's elements span up to the last one's offset (it may be a strided view).
    let l = g.layout;
    let span = (g.n - 1) * l.image + (g.h - 1) as usize * l.row + (g.w - 1) as usize * l.pixel + g.cin;
    // SAFETY: `x` holds `span` floats from its data pointer (its strides, checked by
    // `Nhwc::of`) and lives for the whole call.
    let xs = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, span) };
    let padded = Padded::of(xs, g);
    let out_ptr = Shared(out.data_ptr() as *mut f32);
    let pixels = g.n * (g.oh * g.ow) as usize;
    let macs = pixels * (g.kh * g.kw) as usize * g.cin * g.cout;
    // Parts share out the pixels, or, where the weights outweigh the inputs (more output
    // channels than pixels: a classifier's head, a Gemm), the pairs of output blocks, so
    // that each thread reads only its share of the weights.
    let pairs = g.cout.div_ceil(2 * LANES);
    let by_pairs = g.cout > pixels && pairs > 1;
    let part = |i: usize, parts: usize| {
        let (range, pairs) = if by_pairs {
            (0..pixels, super::threads::range(pairs, i, parts))
        } else {
            (super::threads::range(pixels, i, parts), 0..pairs)
        };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (checked by `dense`); `padded` covers every window
        // of `g`'s output; `out` is fresh and dense `[n, oh, ow, cout]`, each part writes
        // its own pixels' channels of its own pairs of blocks; all live for the call.
        unsafe {
            x86::image_loop(&padded, out_ptr.get(), p, g, act, range, pairs)
        };
    };
    super::threads::run(macs >= SPLIT_MACS, &part);
    out.f_permute([0, 3, 1, 2])
}

/// The output buffer, written by several threads at disjoint pixels.
pub(super) struct Shared(pub(super) *mut f32);
// SAFETY: the parts of `launch` write disjoint elements through it.
unsafe impl Sync for Shared {}

impl Shared {
    pub(super) fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Multiply-adds past which a convolution is split over the intra-op threads (waking them
/// costs a few µs).
pub(super) const SPLIT_MACS: usize = 100_000;

/// The input with its zero padding made real, so that every window lies inside it; the
/// input itself where the convolution has no padding.
struct Padded<'a> {
    data: std::borrow::Cow<'a, [f32]>,
    image: usize,
    row: usize,
    pixel: usize,
}

impl<'a> Padded<'a> {
    fn of(x: &'a [f32], g: &Geometry) -> Padded<'a> {
        let l = g.layout;
        let (top, left) = (g.pad.0 as usize, g.pad.1 as usize);
        // The rows and columns the windows reach past the input's end.
        let reach =
            |o: i64, s: i64, k: i64, d: i64, pad: i64, len: i64| ((o - 1) * s + (k - 1) * d + 1 - pad - len).max(0);
        let bottom = reach(g.oh, g.stride.0, g.kh, g.dilation.0, g.pad.0, g.h) as usize;
        let right = reach(g.ow, g.stride.1, g.kw, g.dilation.1, g.pad.1, g.w) as usize;
        if top + left + bottom + right == 0 {
            return Padded { data: std::borrow::Cow::Borrowed(x), image: l.image, row: l.row, pixel: l.pixel };
        }
        let (h, w, c) = (g.h as usize, g.w as usize, g.cin);
        let (ph, pw) = (h + top + bottom, w + left + right);
        let mut data = vec![0f32; g.n * ph * pw * c];
        for n in 0..g.n {
            for y in 0..h {
                let dst = &mut data[((n * ph + y + top) * pw + left) * c..][..w * c];
                let src = &x[n * l.image + y * l.row..];
                if l.pixel == c {
                    dst.copy_from_slice(&src[..w * c]);
                } else {
                    for (i, d) in dst.chunks_exact_mut(c).enumerate() {
                        d.copy_from_slice(&src[i * l.pixel..][..c]);
                    }
                }
            }
        }
        Padded { data: std::borrow::Cow::Owned(data), image: ph * pw * c, row: pw * c, pixel: c }
    }
}

/// The depthwise convolution (one filter per channel) of `x` (NHWC, see [`Geometry`]) with
/// `w` (`[C, 1, kh, kw]`, dense, checked by the caller) where the CPU has AVX-512; None
/// otherwise. `cache` as for [`dense`].
pub fn depthwise(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: &Geometry,
    cache: Option<(&PackCache, usize)>,
    act: Option<Activation>,
) -> Option<Result<(Tensor, bool), tch::TchError>> {
    if !available() {
        return None;
    }
    let act = act.filter(|a| a.fusable());
    let y = match cache {
        Some((cache, node)) => cache.with(node, w, bias, true, |p| depthwise_launch(x, p, g, act)),
        None => Some(depthwise_launch(x, &Packed::depthwise(w, bias)?, g, act)),
    };
    y.map(|y| y.map(|y| (y, act.is_some())))
}

fn depthwise_launch(x: &Tensor, p: &Packed, g: &Geometry, act: Option<Activation>) -> Result<Tensor, tch::TchError> {
    let c = g.cin;
    let out = Tensor::f_empty([g.n as i64, g.oh, g.ow, c as i64], (Kind::Float, Device::Cpu))?;
    let l = g.layout;
    let span = (g.n - 1) * l.image + (g.h - 1) as usize * l.row + (g.w - 1) as usize * l.pixel + c;
    // SAFETY: `x` holds `span` floats from its data pointer (`Nhwc::of`).
    let xs = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, span) };
    let out_ptr = Shared(out.data_ptr() as *mut f32);
    let pixels = g.n * (g.oh * g.ow) as usize;
    let part = |i: usize, parts: usize| {
        let range = super::threads::range(pixels, i, parts);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F (checked by `depthwise`); the loop reads only windows' taps
        // inside `xs`; `out` is fresh and dense `[n, oh, ow, C]`, each part writes its own
        // pixels.
        unsafe {
            x86::depthwise_loop(xs, out_ptr.get(), p, g, act, range)
        };
    };
    super::threads::run(pixels * c * (g.kh * g.kw) as usize >= SPLIT_MACS, &part);
    out.f_permute([0, 3, 1, 2])
}

/// SiLU over a dense buffer (from `src` where given, else in place), on the CPU's AVX-512
/// with the very function [`dense`] fuses; false (nothing done) without AVX-512.
pub fn silu_in_place(src: Option<&[f32]>, dst: &mut [f32]) -> bool {
    if !available() || src.is_some_and(|s| s.len() != dst.len()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512F; `src`, where given, is as long as `dst`.
    unsafe {
        x86::activate_slice(Activation::Silu, src, dst)
    };
    true
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Activation, Geometry, Packed, Padded, LANES};
    use std::arch::x86_64::*;

    /// What every tile of one image and block pair shares.
    struct Pass {
        /// The (padded) input image.
        x: *const f32,
        /// Floats between window rows and between window columns.
        row: usize,
        column: usize,
        cin: usize,
        kh: usize,
        kw: usize,
        /// The packed weights of the first block, and the floats to the next.
        w: *const f32,
        block: usize,
        bias: *const f32,
        masks: [__mmask16; 2],
        /// Floats between output pixels.
        cout: usize,
    }

    /// Computes the output pixels `range` (of the whole batch) × the pairs of blocks of 16
    /// output channels `pairs`: tiles of pixels in row-major order (across row ends) × one
    /// or two blocks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn image_loop(
        x: &Padded,
        out: *mut f32,
        p: &Packed,
        g: &Geometry,
        act: Option<Activation>,
        range: std::ops::Range<usize>,
        pairs: std::ops::Range<usize>,
    ) {
        let per_block = g.kh as usize * g.kw as usize * g.cin * LANES;
        let blocks = g.cout.div_ceil(LANES);
        let (oh, ow) = (g.oh as usize, g.ow as usize);
        let pixels = oh * ow;
        // Where each output pixel's window starts in the padded image.
        let starts: Vec<isize> = (0..pixels)
            .map(|i| ((i / ow) * g.stride.0 as usize * x.row + (i % ow) * g.stride.1 as usize * x.pixel) as isize)
            .collect();
        // The images `range` (pixels of the whole batch) touches.
        let (first, last) = (range.start / pixels.max(1), range.end.div_ceil(pixels.max(1)));
        for n in first..last {
            let from = range.start.max(n * pixels) - n * pixels;
            let to = range.end.min((n + 1) * pixels) - n * pixels;
            let out_image = out.add(n * pixels * g.cout);
            for b in (2 * pairs.start..blocks.min(2 * pairs.end)).step_by(2) {
                let pair = b + 1 < blocks;
                let pass = Pass {
                    x: x.data.as_ptr().add(n * x.image),
                    row: g.dilation.0 as usize * x.row,
                    column: g.dilation.1 as usize * x.pixel,
                    cin: g.cin,
                    kh: g.kh as usize,
                    kw: g.kw as usize,
                    w: p.weights.as_ptr().add(b * per_block),
                    block: per_block,
                    bias: p.bias.as_ptr().add(b * LANES),
                    masks: [mask(g.cout, b), mask(g.cout, b + 1)],
                    cout: g.cout,
                };
                let mut i = from;
                while i < to {
                    let o = out_image.add(i * g.cout + b * LANES);
                    let rest = &starts[i..to];
                    i += if pair { tiles::<2>(&pass, rest, o) } else { tiles::<1>(&pass, rest, o) };
                }
            }
        }
        if let Some(act) = act {
            // While the part's outputs are still in cache.
            let (from, to) = (2 * pairs.start * LANES, g.cout.min(2 * pairs.end * LANES));
            if from == 0 && to == g.cout {
                let part = std::slice::from_raw_parts_mut(out.add(range.start * g.cout), range.len() * g.cout);
                activate_slice(act, None, part);
            } else if from < to {
                for i in range {
                    activate_slice(act, None, std::slice::from_raw_parts_mut(out.add(i * g.cout + from), to - from));
                }
            }
        }
    }

    /// The depthwise convolution's output pixels `range` (of the whole batch), output row by
    /// output row: up to eight neighbouring pixels with the same in-bounds taps × up to four
    /// vectors of 16 channels accumulate the window's taps in order (the same order for
    /// every pixel, whatever it is grouped with), and `act` is applied in the registers.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn depthwise_loop(
        x: &[f32],
        out: *mut f32,
        p: &Packed,
        g: &Geometry,
        act: Option<Activation>,
        range: std::ops::Range<usize>,
    ) {
        let c = g.cin;
        let blocks = c.div_ceil(LANES);
        let (oh, ow) = (g.oh as usize, g.ow as usize);
        let l = g.layout;
        let rows: Vec<_> =
            (0..g.oh).map(|o| Geometry::inside(o, g.stride.0, g.pad.0, g.dilation.0, g.kh, g.h)).collect();
        let cols: Vec<_> =
            (0..g.ow).map(|o| Geometry::inside(o, g.stride.1, g.pad.1, g.dilation.1, g.kw, g.w)).collect();
        // Floats from a window's origin (tap 0, 0, which may lie in the padding) to tap
        // (ky, kx): ky·tap_row + kx·tap_col.
        let (tap_row, tap_col) = ((g.dilation.0 as usize * l.row) as isize, (g.dilation.1 as usize * l.pixel) as isize);
        let mut i = range.start;
        while i < range.end {
            let (n, oy, first) = (i / (oh * ow), i / ow % oh, i % ow);
            let last = ow.min(first + (range.end - i));
            let (ky, y0) = rows[oy].clone();
            let row = x.as_ptr().wrapping_offset(n as isize * l.image as isize + y0 as isize * l.row as isize);
            let mut ox = first;
            while ox < last {
                let kx = cols[ox].0.clone();
                let mut run = 1;
                while run < 8 && ox + run < last && cols[ox + run].0 == kx {
                    run += 1;
                }
                let t = match run {
                    8 => 8,
                    4.. => 4,
                    2.. => 2,
                    _ => 1,
                };
                let origin: [*const f32; 8] = std::array::from_fn(|k| {
                    row.wrapping_offset(cols[(ox + k).min(ow - 1)].1 as isize * l.pixel as isize)
                });
                let tile = Tile { origin, ky: ky.clone(), kx, tap_row, tap_col, c, act };
                let o = out.add((i + ox - first) * c);
                let mut b = 0;
                while b < blocks {
                    b += match (t, blocks - b) {
                        (8, _) => depthwise_tile::<8, 1>(&tile, p, b, o),
                        (4, 2..) => depthwise_tile::<4, 2>(&tile, p, b, o),
                        (4, _) => depthwise_tile::<4, 1>(&tile, p, b, o),
                        (2, 4..) => depthwise_tile::<2, 4>(&tile, p, b, o),
                        (2, 3) => depthwise_tile::<2, 3>(&tile, p, b, o),
                        (2, 2) => depthwise_tile::<2, 2>(&tile, p, b, o),
                        (2, _) => depthwise_tile::<2, 1>(&tile, p, b, o),
                        (_, 4..) => depthwise_tile::<1, 4>(&tile, p, b, o),
                        (_, 3) => depthwise_tile::<1, 3>(&tile, p, b, o),
                        (_, 2) => depthwise_tile::<1, 2>(&tile, p, b, o),
                        _ => depthwise_tile::<1, 1>(&tile, p, b, o),
                    };
                }
                ox += t;
            }
            i += last - first;
        }
    }

    /// Neighbouring output pixels of one row whose windows have the same in-bounds taps
    /// `ky` × `kx`; pixel `t`'s window has its tap (0, 0) at `origin[t]` (perhaps in the
    /// padding: only in-bounds taps are read).
    struct Tile {
        origin: [*const f32; 8],
        ky: std::ops::Range<i64>,
        kx: std::ops::Range<i64>,
        tap_row: isize,
        tap_col: isize,
        c: usize,
        act: Option<Activation>,
    }

    /// `T` pixels × vectors `b..b + NB` of 16 channels; returns `NB`.
    #[inline(always)]
    unsafe fn depthwise_tile<const T: usize, const NB: usize>(tile: &Tile, p: &Packed, b: usize, o: *mut f32) -> usize {
        let (cp, c) = (p.bias.len(), tile.c);
        let kw = p.kernel.1;
        let masks: [__mmask16; NB] = std::array::from_fn(|k| {
            let left = (c - (b + k) * LANES).min(LANES);
            ((1u32 << left) - 1) as __mmask16
        });
        let bias: [__m512; NB] = std::array::from_fn(|k| _mm512_loadu_ps(p.bias.as_ptr().add((b + k) * LANES)));
        let mut acc = [bias; T];
        for ky in tile.ky.clone() {
            for kx in tile.kx.clone() {
                let wp = p.weights.as_ptr().add((ky as usize * kw + kx as usize) * cp + b * LANES);
                let w: [__m512; NB] = std::array::from_fn(|k| _mm512_loadu_ps(wp.add(k * LANES)));
                let tap = ky as isize * tile.tap_row + kx as isize * tile.tap_col + (b * LANES) as isize;
                for (t, acc) in acc.iter_mut().enumerate() {
                    let xp = tile.origin[t].wrapping_offset(tap);
                    for k in 0..NB {
                        let v = _mm512_maskz_loadu_ps(masks[k], xp.add(k * LANES));
                        acc[k] = _mm512_fmadd_ps(v, w[k], acc[k]);
                    }
                }
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            for k in 0..NB {
                let v = match tile.act {
                    Some(act) => activate(act, acc[k]),
                    None => acc[k],
                };
                _mm512_mask_storeu_ps(o.add(t * c + (b + k) * LANES), masks[k], v);
            }
        }
        NB
    }

    /// `e^-x` per lane as 2^n · p(r) (Cephes' expf polynomial, within 2 ulp), the argument
    /// clamped where the result is 0 or ∞ anyway.
    #[inline(always)]
    unsafe fn exp_neg(x: __m512) -> __m512 {
        let a = _mm512_sub_ps(_mm512_setzero_ps(), x);
        let a = _mm512_max_ps(_mm512_min_ps(a, _mm512_set1_ps(100.0)), _mm512_set1_ps(-100.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
            a,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), a);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut y = _mm512_set1_ps(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c));
        }
        let y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0)));
        _mm512_scalef_ps(y, n)
    }

    /// `x · sigmoid(x) = x / (1 + e^-x)` per lane. NaN stays NaN (it is the numerator).
    #[inline(always)]
    pub(super) unsafe fn silu(x: __m512) -> __m512 {
        _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), exp_neg(x)))
    }

    /// `x` within `[lo, hi]` as the scalar loop's `clamp` (below `lo` first; NaN stays).
    #[inline(always)]
    unsafe fn clamp(x: __m512, lo: f32, hi: f32) -> __m512 {
        let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, lo);
        let above = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, hi) & !below;
        _mm512_mask_mov_ps(_mm512_mask_mov_ps(x, above, hi), below, lo)
    }

    /// `act` per lane: the same operations in the same order as the executor's scalar loop
    /// (`each_with`) and [`silu`], so fused and separate activations give the same bits.
    #[inline(always)]
    pub(super) unsafe fn activate(act: Activation, x: __m512) -> __m512 {
        let zero = _mm512_setzero_ps();
        match act {
            Activation::Relu => _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, zero), zero),
            Activation::LeakyRelu(alpha) => {
                _mm512_mask_mul_ps(x, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, zero), x, _mm512_set1_ps(alpha))
            }
            Activation::HardSwish => {
                let t = clamp(_mm512_add_ps(x, _mm512_set1_ps(3.0)), 0.0, 6.0);
                _mm512_div_ps(_mm512_mul_ps(x, t), _mm512_set1_ps(6.0))
            }
            Activation::HardSigmoid { alpha, beta } => {
                clamp(_mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(alpha), x), _mm512_set1_ps(beta)), 0.0, 1.0)
            }
            Activation::Clip { lo, hi } => clamp(x, lo as f32, hi as f32),
            Activation::Sigmoid => _mm512_div_ps(_mm512_set1_ps(1.0), _mm512_add_ps(_mm512_set1_ps(1.0), exp_neg(x))),
            Activation::Silu => silu(x),
        }
    }

    /// [`activate`] over `dst` (from `src` where given).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn activate_slice(act: Activation, src: Option<&[f32]>, dst: &mut [f32]) {
        let n = dst.len();
        let to = dst.as_mut_ptr();
        let from = src.map_or(to as *const f32, <[f32]>::as_ptr);
        let mut i = 0;
        while i < n {
            let m: __mmask16 = if n - i >= LANES { 0xFFFF } else { ((1u32 << (n - i)) - 1) as __mmask16 };
            let v = _mm512_maskz_loadu_ps(m, from.add(i));
            _mm512_mask_storeu_ps(to.add(i), m, activate(act, v));
            i += LANES;
        }
    }

    /// The lanes of block `b` that are output channels.
    fn mask(cout: usize, b: usize) -> __mmask16 {
        let left = cout.saturating_sub(b * LANES).min(LANES);
        ((1u32 << left) - 1) as __mmask16
    }

    /// Runs the largest tile that fits the pixels starting at `starts`; returns how many
    /// it did.
    #[target_feature(enable = "avx512f")]
    unsafe fn tiles<const NB: usize>(p: &Pass, starts: &[isize], o: *mut f32) -> usize {
        macro_rules! go {
            ($t:literal) => {{
                tile::<$t, NB>(p, starts[..$t].try_into().expect("a full tile"), o);
                $t
            }};
        }
        // Accumulators: T·NB of the 32 registers, the rest for weights and inputs.
        if NB == 2 {
            match starts.len() {
                6.. => go!(6),
                4.. => go!(4),
                2.. => go!(2),
                _ => go!(1),
            }
        } else {
            match starts.len() {
                8.. => go!(8),
                4.. => go!(4),
                2.. => go!(2),
                _ => go!(1),
            }
        }
    }

    /// `T` output pixels (windows starting at `starts`) × `NB` blocks of 16 output
    /// channels, accumulated over the whole window in registers.
    #[inline(always)]
    unsafe fn tile<const T: usize, const NB: usize>(p: &Pass, starts: &[isize; T], o: *mut f32) {
        let mut acc = [[_mm512_setzero_ps(); NB]; T];
        for b in 0..NB {
            let bias = _mm512_loadu_ps(p.bias.add(b * LANES));
            for acc in acc.iter_mut() {
                acc[b] = bias;
            }
        }
        let mut w = p.w;
        for y in 0..p.kh {
            for k in 0..p.kw {
                let tap = p.x.add(y * p.row + k * p.column);
                let xs: [*const f32; T] = std::array::from_fn(|t| tap.offset(starts[t]));
                for ci in 0..p.cin {
                    let mut wv = [_mm512_setzero_ps(); NB];
                    for (b, v) in wv.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(w.add(b * p.block));
                    }
                    for (t, acc) in acc.iter_mut().enumerate() {
                        let xv = _mm512_set1_ps(*xs[t].add(ci));
                        for (b, acc) in acc.iter_mut().enumerate() {
                            *acc = _mm512_fmadd_ps(xv, wv[b], *acc);
                        }
                    }
                    w = w.add(LANES);
                }
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            for (b, &acc) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(o.add(t * p.cout + b * LANES), p.masks[b], acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::ACTIVATIONS;
    use super::super::{ConvShape, Geometry};
    use super::*;
    use crate::model::ir::exec::channels_last;

    fn randn(shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (Kind::Float, Device::Cpu))
    }

    /// libtorch's convolution (explicit padding, so asymmetric pads work too).
    fn reference(x: &Tensor, w: &Tensor, b: Option<&Tensor>, s: &ConvShape) -> Tensor {
        let flat: Vec<i64> = s.pads.iter().rev().flat_map(|&(a, e)| [a, e]).collect();
        x.contiguous().constant_pad_nd(flat).conv2d(&w.contiguous(), b, s.strides, [0, 0], s.dilations, s.group)
    }

    fn close(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.size(), b.size());
        (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1.0)
    }

    #[test]
    fn dense_equals_libtorch_fused_cached_or_not() {
        if !available() {
            return;
        }
        tch::manual_seed(3);
        let mut checked = 0;
        for (cin, cout, k, stride, dilation, pads) in [
            (8, 4, 3, 1, 1, [(1, 1), (1, 1)]),
            (3, 16, 3, 2, 1, [(1, 1), (1, 1)]),
            (1, 8, 3, 1, 1, [(1, 1), (1, 1)]),
            (16, 40, 3, 2, 1, [(1, 1), (1, 1)]),
            (5, 33, 3, 1, 2, [(2, 2), (2, 2)]),
            (32, 16, 1, 1, 1, [(0, 0), (0, 0)]),
            (24, 17, 1, 2, 1, [(0, 0), (0, 0)]),
            (12, 20, 5, 1, 1, [(0, 1), (2, 0)]),
            (6, 64, 3, 2, 1, [(0, 0), (0, 0)]),
        ] {
            let s = ConvShape {
                kernel: &[k, k],
                strides: &[stride, stride],
                dilations: &[dilation, dilation],
                pads: &pads,
                group: 1,
            };
            let w = channels_last(&randn(&[cout, cin, k, k]));
            let b = randn(&[cout]);
            let x = randn(&[3, cin, 11, 9]);
            let wide = channels_last(&randn(&[3, cin + 5, 11, 9]));
            // What `dense` takes: channels-last, and a Split's channel slice of it.
            for x in [channels_last(&x), wide.narrow(1, 2, cin)] {
                for bias in [Some(&b), None] {
                    let want = reference(&x, &w, bias, &s);
                    let (ours, _) = dense(&x, &w, bias, &s, None, None).expect("a dense case").unwrap();
                    assert!(close(&ours, &want) < 1e-5, "{cin}→{cout} k {k} s {stride} d {dilation} {pads:?}");
                    // Fused activations: the bits of separate ones.
                    for act in ACTIVATIONS.into_iter().filter(|a| a.fusable()) {
                        let (fused, done) = dense(&x, &w, bias, &s, None, Some(act)).unwrap().unwrap();
                        assert!(done, "{act:?}");
                        let separate = act.apply(ours.copy(), false).unwrap();
                        assert!(fused.equal(&separate), "{cin}→{cout}: fused {act:?}");
                    }
                    // Packed once and kept, and packed again for another weight.
                    let cache = PackCache::default();
                    for _ in 0..2 {
                        assert!(dense(&x, &w, bias, &s, Some((&cache, 7)), None).unwrap().unwrap().0.equal(&ours));
                    }
                    let w2 = &w * 2.0;
                    let (twice, _) = dense(&x, &w2, bias, &s, Some((&cache, 7)), None).unwrap().unwrap();
                    assert!(close(&twice, &reference(&x, &w2, bias, &s)) < 1e-5);
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 36);
    }

    #[test]
    fn dense_leaves_other_cases_to_libtorch() {
        let s =
            |group| ConvShape { kernel: &[3, 3], strides: &[1, 1], dilations: &[1, 1], pads: &[(1, 1), (1, 1)], group };
        let x = channels_last(&randn(&[1, 16, 8, 8]));
        // Grouped, NCHW-contiguous input, too many multiply-adds, doubles.
        assert!(dense(&x, &channels_last(&randn(&[16, 8, 3, 3])), None, &s(2), None, None).is_none());
        assert!(dense(&x.contiguous(), &randn(&[8, 16, 3, 3]), None, &s(1), None, None).is_none());
        let big = channels_last(&randn(&[1, 64, 96, 96]));
        assert!(dense(&big, &randn(&[64, 64, 3, 3]), None, &s(1), None, None).is_none());
        let w = randn(&[8, 16, 3, 3]).to_kind(Kind::Double);
        assert!(dense(&x.to_kind(Kind::Double), &w, None, &s(1), None, None).is_none());
    }

    /// Split over threads, each part computes what the whole computes: the same bits
    /// whatever the thread count.
    #[test]
    fn parts_compute_what_the_whole_computes() {
        if !available() {
            return;
        }
        let s = ConvShape { kernel: &[3, 3], strides: &[1, 1], dilations: &[1, 1], pads: &[(1, 1), (1, 1)], group: 1 };
        let x = channels_last(&randn(&[2, 12, 7, 5]));
        // 40 output channels: three blocks, two pairs.
        let w = randn(&[40, 12, 3, 3]);
        let b = randn(&[40]);
        let g = Geometry::of(&x, &w, Some(&b), &s).unwrap();
        let p = Packed::new(&w, Some(&b)).unwrap();
        let span = x.numel();
        // SAFETY: a dense channels-last tensor of `span` floats.
        let xs = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, span) };
        let padded = Padded::of(xs, &g);
        let pixels = 2 * 7 * 5;
        // Cuts of the pixels, or of the pairs of blocks.
        let run = |cuts: &[usize], by_pairs: bool| {
            let mut out = vec![0f32; pixels * 40];
            for cut in cuts.windows(2) {
                let (range, pairs) = if by_pairs { (0..pixels, cut[0]..cut[1]) } else { (cut[0]..cut[1], 0..2) };
                // SAFETY: AVX-512 (checked above); `out` is dense [2, 7, 5, 40].
                unsafe { x86::image_loop(&padded, out.as_mut_ptr(), &p, &g, Some(Activation::Silu), range, pairs) };
            }
            out
        };
        let whole = run(&[0, pixels], false);
        for cuts in [vec![0, 1, pixels], vec![0, 13, 35, 36, pixels], vec![0, 34, 35, pixels]] {
            let parts = run(&cuts, false);
            assert!(whole.iter().zip(&parts).all(|(a, b)| a.to_bits() == b.to_bits()), "{cuts:?}");
        }
        let parts = run(&[0, 1, 2], true);
        assert!(whole.iter().zip(&parts).all(|(a, b)| a.to_bits() == b.to_bits()), "by pairs");
        // The depthwise loop alike.
        let wd = randn(&[12, 1, 3, 3]);
        let gd = Geometry::of(&x, &wd, None, &ConvShape { group: 12, ..s }).unwrap();
        let pd = Packed::depthwise(&wd.contiguous(), None).unwrap();
        let run = |cuts: &[usize]| {
            let mut out = vec![0f32; pixels * 12];
            for pair in cuts.windows(2) {
                // SAFETY: as above; `out` is dense [2, 7, 5, 12].
                unsafe {
                    x86::depthwise_loop(xs, out.as_mut_ptr(), &pd, &gd, Some(Activation::HardSwish), pair[0]..pair[1])
                };
            }
            out
        };
        let whole = run(&[0, pixels]);
        let parts = run(&[0, 17, 18, pixels]);
        assert!(whole.iter().zip(&parts).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
