//! CPU kernels for what libtorch runs slowly at the sizes pruned models have. libtorch's
//! oneDNN path costs 30–130 µs a call on a depthwise convolution whatever its size, and
//! 20–70 µs on a 1×1 convolution that a matrix product does in a few µs; an activation call
//! costs a few µs of dispatch on a tensor the loop covers in less (measured per node on the
//! fixture models; `benches/onnx_speed.rs` has the whole-model figures). The kernels work
//! on the executor's channels-last layout directly and return None where their case does
//! not apply; the caller then runs libtorch's operator. `avx512` holds the SIMD loops (dense
//! and depthwise convolutions with their weights packed once per net, SiLU), `threads`
//! splits their output pixels over libtorch's OpenMP team; a split or a fused activation
//! computes the same bits as the whole, unfused operation.

use tch::{Device, Kind, Tensor};

mod avx512;
mod threads;
use avx512::silu_in_place;
pub use avx512::{dense, PackCache};

/// A 2-D convolution's geometry, as the executor resolved it from the node.
pub struct ConvShape<'a> {
    pub kernel: &'a [i64],
    pub strides: &'a [i64],
    pub dilations: &'a [i64],
    /// (begin, end) per spatial axis.
    pub pads: &'a [(i64, i64)],
    pub group: i64,
}

/// How a 4-D float CPU tensor with unit channel stride lies in memory: element
/// `(b, c, y, x)` is at `b·image + y·row + x·pixel + c`. Channels-last tensors and the
/// channel slices a Split makes of them are such tensors.
#[derive(Clone, Copy)]
struct Nhwc {
    image: usize,
    row: usize,
    pixel: usize,
}

impl Nhwc {
    fn of(x: &Tensor) -> Option<Self> {
        if x.dim() != 4 || x.device() != Device::Cpu || x.kind() != Kind::Float {
            return None;
        }
        let (size, stride) = (x.size(), x.stride());
        let positive = stride.iter().all(|&s| s >= 0);
        (positive && (stride[1] == 1 || size[1] == 1)).then(|| Nhwc {
            image: stride[0] as usize,
            row: stride[2] as usize,
            pixel: stride[3] as usize,
        })
    }
}

/// `x · wᵀ + bias` for `x` `[N, K]` and `w` `[M, K]` (a fully connected layer) as the
/// 1×1 convolution of `N` one-pixel images, where the dense kernel takes it (see
/// [`dense`]; `bias` must be `[M]`). None otherwise.
pub fn linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cache: Option<(&PackCache, usize)>,
) -> Option<Result<Tensor, tch::TchError>> {
    let (&[n, k], &[m, k2]) = (x.size().as_slice(), w.size().as_slice()) else {
        return None;
    };
    if k != k2 || !x.is_contiguous() || !w.is_contiguous() {
        return None;
    }
    let shape = ConvShape { kernel: &[1, 1], strides: &[1, 1], dilations: &[1, 1], pads: &[(0, 0), (0, 0)], group: 1 };
    let (x4, w4) = (x.f_view([n, k, 1, 1]).ok()?, w.f_view([m, k, 1, 1]).ok()?);
    let y = dense(&x4, &w4, bias, &shape, cache, None)?;
    Some(y.and_then(|(y, _)| y.f_reshape([n, m])))
}

/// Whether `x` is stored NCHW-contiguous.
fn nchw(x: &Tensor) -> bool {
    x.dim() == 4 && x.device() == Device::Cpu && x.kind() == Kind::Float && x.is_contiguous()
}

/// A 1×1 convolution (no padding, one group) as one matrix product: over the pixels of a
/// channels-last input, `[N·H·W, C_in] × [C_in, C_out]`; per image of an NCHW one,
/// `[C_out, C_in] × [C_in, H·W]`.
pub fn pointwise(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    s: &ConvShape,
) -> Option<Result<Tensor, tch::TchError>> {
    let (n, c, _, _) = x.size4().ok()?;
    let cout = *w.size().first()?;
    let fits = s.kernel == [1, 1]
        && s.group == 1
        && s.pads.iter().all(|&p| p == (0, 0))
        && s.strides.len() == 2
        && s.strides.iter().all(|&v| v > 0)
        && w.size() == [cout, c, 1, 1]
        && w.kind() == Kind::Float
        && w.device() == Device::Cpu;
    if !fits {
        return None;
    }
    let channels_last = Nhwc::of(x).is_some();
    if !channels_last && !nchw(x) {
        return None;
    }
    let run = || -> Result<Tensor, tch::TchError> {
        let x = if s.strides == [1, 1] {
            x.shallow_clone()
        } else {
            x.f_slice(2, 0, None, s.strides[0])?.f_slice(3, 0, None, s.strides[1])?
        };
        let (oh, ow) = (x.size()[2], x.size()[3]);
        let w = w.f_reshape([cout, c])?;
        if channels_last {
            // x·Wᵀ + b over the last axis of the NHWC view: one call.
            x.f_permute([0, 2, 3, 1])?.f_linear(&w, bias)?.f_permute([0, 3, 1, 2])
        } else {
            let mut y = w.f_matmul(&x.f_reshape([n, c, oh * ow])?)?;
            if let Some(b) = bias {
                y = y.f_add_(&b.f_reshape([cout, 1])?)?;
            }
            y.f_reshape([n, cout, oh, ow])
        }
    };
    Some(run())
}

/// A depthwise convolution (one group per channel, one filter per group) computed directly
/// on the NHWC buffer: each output pixel accumulates its window's channel vectors.
pub fn depthwise(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    s: &ConvShape,
    cache: Option<(&PackCache, usize)>,
    act: Option<Activation>,
) -> Option<Result<(Tensor, bool), tch::TchError>> {
    let c = *x.size().get(1)?;
    if s.group != c || c == 1 || w.size().get(..2)? != [c, 1] {
        return None;
    }
    let g = Geometry::of(x, w, bias, s)?;
    // [C, 1, kh, kw] in memory, channels-last or not (the same order with one channel).
    if !dense_float_cpu(w) || bias.is_some_and(|b| !b.is_contiguous()) {
        return None;
    }
    avx512::depthwise(x, w, bias, &g, cache, act).or_else(|| Some(depthwise_launch(x, w, bias, &g).map(|y| (y, false))))
}

/// The geometry of one convolution over an NHWC input.
struct Geometry {
    n: usize,
    cin: usize,
    cout: usize,
    h: i64,
    w: i64,
    kh: i64,
    kw: i64,
    oh: i64,
    ow: i64,
    stride: (i64, i64),
    dilation: (i64, i64),
    pad: (i64, i64),
    layout: Nhwc,
}

impl Geometry {
    /// None where the input is not NHWC, the weights or bias not float, or the output empty.
    fn of(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, s: &ConvShape) -> Option<Self> {
        let layout = Nhwc::of(x)?;
        let (n, cin, h, wd) = x.size4().ok()?;
        let (cout, _, kh, kw) = w.size4().ok()?;
        let fits = w.kind() == Kind::Float
            && w.device() == Device::Cpu
            && bias.is_none_or(|b| b.size() == [cout] && b.kind() == Kind::Float && b.device() == Device::Cpu)
            && s.kernel == [kh, kw]
            && s.strides.iter().chain(s.dilations).all(|&v| v > 0)
            && s.strides.len() == 2
            && s.dilations.len() == 2
            && s.pads.len() == 2
            && n > 0;
        if !fits {
            return None;
        }
        let out = |i: usize, len: i64, k: i64| {
            (len + s.pads[i].0 + s.pads[i].1 - s.dilations[i] * (k - 1) - 1).div_euclid(s.strides[i]) + 1
        };
        let (oh, ow) = (out(0, h, kh), out(1, wd, kw));
        (oh > 0 && ow > 0).then_some(Geometry {
            n: n as usize,
            cin: cin as usize,
            cout: cout as usize,
            h,
            w: wd,
            kh,
            kw,
            oh,
            ow,
            stride: (s.strides[0], s.strides[1]),
            dilation: (s.dilations[0], s.dilations[1]),
            pad: (s.pads[0].0, s.pads[1].0),
            layout,
        })
    }

    /// The taps of a window that fall inside the input along one axis, and where it starts.
    fn inside(o: i64, stride: i64, pad: i64, dilation: i64, k: i64, len: i64) -> (std::ops::Range<i64>, i64) {
        let start = o * stride - pad;
        let first = if start >= 0 { 0 } else { (-start + dilation - 1) / dilation };
        let last = if start + (k - 1) * dilation < len { k } else { (len - 1 - start).div_euclid(dilation) + 1 };
        (first..last.max(first), start)
    }
}

/// The depthwise convolution of `x`, its buffers read in place.
fn depthwise_launch(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, g: &Geometry) -> Result<Tensor, tch::TchError> {
    let out = Tensor::f_empty([g.n as i64, g.oh, g.ow, g.cout as i64], (Kind::Float, Device::Cpu))?;
    // The input is a strided view: its elements span up to the last one's offset.
    let span =
        (g.n - 1) * g.layout.image + (g.h - 1) as usize * g.layout.row + (g.w - 1) as usize * g.layout.pixel + g.cin;
    // SAFETY: `x` holds `span` floats from its data pointer (its strides, checked by
    // `Nhwc::of`); `w` and the bias are dense float CPU tensors of `numel` floats (checked
    // by the caller); all live for the whole call and `out` is fresh, so not aliased.
    unsafe {
        let xs = std::slice::from_raw_parts(x.data_ptr() as *const f32, span);
        let ws = std::slice::from_raw_parts(w.data_ptr() as *const f32, w.numel());
        let bs = bias.map(|b| std::slice::from_raw_parts(b.data_ptr() as *const f32, b.numel()));
        // Taps as [kh·kw, C]: the inner loop then reads weights and pixels contiguously.
        let kk = (g.kh * g.kw) as usize;
        let mut taps = vec![0f32; kk * g.cin];
        for (ch, filter) in ws.chunks_exact(kk).enumerate() {
            for (tap, &v) in filter.iter().enumerate() {
                taps[tap * g.cin + ch] = v;
            }
        }
        let pixels = g.n * (g.oh * g.ow) as usize;
        let os = avx512::Shared(out.data_ptr() as *mut f32);
        let part = |i: usize, parts: usize| {
            let range = threads::range(pixels, i, parts);
            // SAFETY: `out` is fresh and dense `[n, oh, ow, C]`; the parts' pixel ranges
            // are disjoint.
            let os = std::slice::from_raw_parts_mut(os.get().add(range.start * g.cin), range.len() * g.cin);
            depthwise_nhwc(xs, &taps, bs, os, g, range.start);
        };
        threads::run(pixels * g.cin * kk >= avx512::SPLIT_MACS, &part);
    }
    out.f_permute([0, 3, 1, 2])
}

/// Whether the CPU has AVX2 and FMA (checked once).
fn simd() -> bool {
    static SIMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SIMD.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        return false;
    })
}

/// [`depthwise_rows`] built for AVX-512 or AVX2 and FMA where the CPU has them, the
/// portable one elsewhere (every build computes each output with the same fused
/// multiply-adds in the same order, whatever its vector width).
fn depthwise_nhwc(x: &[f32], taps: &[f32], bias: Option<&[f32]>, out: &mut [f32], g: &Geometry, first: usize) {
    if simd() {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn wide(x: &[f32], taps: &[f32], bias: Option<&[f32]>, out: &mut [f32], g: &Geometry, first: usize) {
                depthwise_rows::<true>(x, taps, bias, out, g, first)
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn build(
                x: &[f32],
                taps: &[f32],
                bias: Option<&[f32]>,
                out: &mut [f32],
                g: &Geometry,
                first: usize,
            ) {
                depthwise_rows::<true>(x, taps, bias, out, g, first)
            }
            // SAFETY: `simd` says the CPU has AVX2 and FMA, `avx512` AVX-512F.
            return unsafe {
                if avx512::available() {
                    wide(x, taps, bias, out, g, first)
                } else {
                    build(x, taps, bias, out, g, first)
                }
            };
        }
    }
    depthwise_rows::<false>(x, taps, bias, out, g, first)
}

/// `a + v·t`, fused where the CPU has FMA (a library call without it, hence separate on the
/// portable path).
#[inline(always)]
fn madd<const FMA: bool>(v: f32, t: f32, a: f32) -> f32 {
    if FMA {
        v.mul_add(t, a)
    } else {
        a + v * t
    }
}

/// Channels per register block: two AVX2 registers.
const BLOCK: usize = 16;

/// Runs `$body` with `$n` a constant, for blocks of `$total` channels from `$c0`:
/// [`BLOCK`]-wide ones, then halving ones.
macro_rules! blocks {
    ($total:expr, |$c0:ident, $n:ident| $body:expr) => {{
        let total = $total;
        let mut $c0 = 0;
        while $c0 + BLOCK <= total {
            {
                const $n: usize = BLOCK;
                $body;
            }
            $c0 += BLOCK;
        }
        if $c0 + 8 <= total {
            {
                const $n: usize = 8;
                $body;
            }
            $c0 += 8;
        }
        if $c0 + 4 <= total {
            {
                const $n: usize = 4;
                $body;
            }
            $c0 += 4;
        }
        if $c0 + 2 <= total {
            {
                const $n: usize = 2;
                $body;
            }
            $c0 += 2;
        }
        if $c0 < total {
            {
                const $n: usize = 1;
                $body;
            }
        }
    }};
}

/// The depthwise loop: per output pixel, blocks of channels accumulated over the window in
/// registers.
#[inline(always)]
fn depthwise_rows<const FMA: bool>(
    x: &[f32],
    taps: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    g: &Geometry,
    first: usize,
) {
    let c = g.cin;
    let (oh, ow) = (g.oh as usize, g.ow as usize);
    for (i, pixel) in out.chunks_exact_mut(c).enumerate() {
        let at = first + i;
        let (b, oy, ox) = (at / (oh * ow), (at / ow % oh) as i64, (at % ow) as i64);
        let image = &x[b * g.layout.image..];
        {
            let (ky, y0) = Geometry::inside(oy, g.stride.0, g.pad.0, g.dilation.0, g.kh, g.h);
            {
                let (kx, x0) = Geometry::inside(ox, g.stride.1, g.pad.1, g.dilation.1, g.kw, g.w);
                blocks!(c, |c0, N| {
                    let mut acc = [0f32; N];
                    if let Some(bias) = bias {
                        acc.copy_from_slice(&bias[c0..c0 + N]);
                    }
                    for ky in ky.clone() {
                        let row = (y0 + ky * g.dilation.0) as usize * g.layout.row;
                        for kx in kx.clone() {
                            let at = row + (x0 + kx * g.dilation.1) as usize * g.layout.pixel + c0;
                            let tap = (ky * g.kw + kx) as usize * c + c0;
                            let v: &[f32; N] = image[at..at + N].try_into().expect("N values");
                            let t: &[f32; N] = taps[tap..tap + N].try_into().expect("N values");
                            for i in 0..N {
                                acc[i] = madd::<FMA>(v[i], t[i], acc[i]);
                            }
                        }
                    }
                    pixel[c0..c0 + N].copy_from_slice(&acc);
                });
            }
        }
    }
}

/// An elementwise arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

/// `a op b` on float CPU tensors below libtorch's grain size where that is one loop: the
/// same sizes and layout, or a per-channel operand (`[N or 1, C, 1, 1]`) against a
/// channels-last `[N, C, H, W]` one (squeeze-excitation's scale). Each element is one IEEE
/// operation, as in libtorch, so the values are libtorch's bit for bit; the call costs less
/// than its dispatch. None otherwise.
pub fn binary(op: Binary, a: &Tensor, b: &Tensor) -> Option<Result<Tensor, tch::TchError>> {
    let cpu_float = |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float;
    if !cpu_float(a) || !cpu_float(b) || a.numel() >= GRAIN || a.numel() == 0 {
        return None;
    }
    // SAFETY (both cases): dense float CPU tensors of `numel` elements from their data
    // pointers (per-channel operand: `C` contiguous floats per image), alive for the call;
    // `out` is fresh.
    if a.size() == b.size() && a.stride() == b.stride() && dense_float_cpu(a) {
        let out = match a.f_empty_like() {
            Ok(o) if o.stride() == a.stride() => o,
            Ok(_) => return None,
            Err(e) => return Some(Err(e)),
        };
        let n = a.numel();
        unsafe {
            let (x, y) = (slice(a, n), slice(b, n));
            let o = std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, n);
            elementwise(op, Operands::Same { x, y }, o);
        }
        return Some(Ok(out));
    }
    // Which operand is per channel, and whether it comes first.
    let (map, scale, scale_first) = if per_channel(b, a) {
        (a, b, false)
    } else if per_channel(a, b) {
        (b, a, true)
    } else {
        return None;
    };
    let (n, c, h, w) = map.size4().ok()?;
    let (n, c, hw) = (n as usize, c as usize, (h * w) as usize);
    let out = match Tensor::f_empty([n as i64, h, w, c as i64], (Kind::Float, Device::Cpu)) {
        Ok(o) => o,
        Err(e) => return Some(Err(e)),
    };
    let per_image = if scale.size()[0] == 1 { 0 } else { scale.stride()[0] as usize };
    unsafe {
        let x = slice(map, n * hw * c);
        let s = slice(scale, (scale.size()[0] as usize - 1) * per_image + c);
        let o = std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, n * hw * c);
        for (i, (o, x)) in o.chunks_exact_mut(hw * c).zip(x.chunks_exact(hw * c)).enumerate() {
            let s = &s[i * per_image..i * per_image + c];
            elementwise(op, Operands::PerChannel { x, s, scale_first }, o);
        }
    }
    Some(out.f_permute([0, 3, 1, 2]))
}

/// The operands of [`elementwise`].
enum Operands<'a> {
    /// `x[i] op y[i]`.
    Same { x: &'a [f32], y: &'a [f32] },
    /// `x[p·C + c] op s[c]` (or `s[c] op x[p·C + c]` where `scale_first`) for the pixels
    /// `p` of one channels-last image.
    PerChannel { x: &'a [f32], s: &'a [f32], scale_first: bool },
}

/// `o = a op b` in a loop the compiler vectorises (to AVX2 where the CPU has it): one IEEE
/// operation per element whatever the vector width.
fn elementwise(op: Binary, operands: Operands, o: &mut [f32]) {
    #[inline(always)]
    fn go(op: Binary, operands: &Operands, o: &mut [f32]) {
        #[inline(always)]
        fn with(operands: &Operands, o: &mut [f32], f: impl Fn(f32, f32) -> f32) {
            match *operands {
                Operands::Same { x, y } => o.iter_mut().zip(x).zip(y).for_each(|((o, &x), &y)| *o = f(x, y)),
                Operands::PerChannel { x, s, scale_first } => {
                    for (o, x) in o.chunks_exact_mut(s.len()).zip(x.chunks_exact(s.len())) {
                        if scale_first {
                            o.iter_mut().zip(x).zip(s).for_each(|((o, &x), &s)| *o = f(s, x));
                        } else {
                            o.iter_mut().zip(x).zip(s).for_each(|((o, &x), &s)| *o = f(x, s));
                        }
                    }
                }
            }
        }
        match op {
            Binary::Add => with(operands, o, |a, b| a + b),
            Binary::Sub => with(operands, o, |a, b| a - b),
            Binary::Mul => with(operands, o, |a, b| a * b),
            Binary::Div => with(operands, o, |a, b| a / b),
        }
    }
    if simd() {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn build(op: Binary, operands: &Operands, o: &mut [f32]) {
                go(op, operands, o)
            }
            // SAFETY: `simd` says the CPU has AVX2 and FMA.
            return unsafe { build(op, &operands, o) };
        }
    }
    go(op, &operands, o)
}

/// Whether `s` is `[N or 1, C, 1, 1]` with its channels contiguous, against `x`, a dense
/// channels-last `[N, C, H, W]`.
fn per_channel(s: &Tensor, x: &Tensor) -> bool {
    let (Ok(xs), Ok(ss)) = (x.size4(), s.size4()) else { return false };
    dense_nhwc(x)
        && (ss.0 == xs.0 || ss.0 == 1)
        && ss.1 == xs.1
        && ss.2 == 1
        && ss.3 == 1
        && (ss.1 == 1 || s.stride()[1] == 1)
}

/// The `n` floats from `t`'s data pointer.
///
/// # Safety
/// `t` must be a float CPU tensor with `n` floats from its data pointer, alive while the
/// slice is.
unsafe fn slice(t: &Tensor, n: usize) -> &[f32] {
    std::slice::from_raw_parts(t.data_ptr() as *const f32, n)
}

/// The concatenation of float CPU tensors along `axis` where they are all stored densely
/// in one order of their axes (channels-last feature maps, or the head's `[N, C, A]` views
/// of them): in that order the concatenation is a copy of whole runs per outer index, into
/// an output stored in the same order. The elements are the inputs', copied; libtorch's
/// `cat` takes a strided path for such layouts. None otherwise.
pub fn concat(xs: &[&Tensor], axis: usize) -> Option<Result<Tensor, tch::TchError>> {
    let first = xs.first()?;
    let (size, rank) = (first.size(), first.dim());
    if axis >= rank || xs.iter().any(|t| t.device() != Device::Cpu || t.kind() != Kind::Float || t.dim() != rank) {
        return None;
    }
    if rank == 4 && axis == 1 {
        if let Some(y) = concat_channels(xs) {
            return Some(y);
        }
    }
    // Memory order of the first input (outermost first); sizes must agree off `axis`.
    let stride = first.stride();
    let mut order: Vec<usize> = (0..rank).collect();
    order.sort_by_key(|&d| (std::cmp::Reverse(stride[d]), d));
    let dense_in_order = |t: &Tensor| {
        let (sz, st) = (t.size(), t.stride());
        let mut want = 1;
        let dense = order.iter().rev().all(|&d| {
            let ok = sz[d] == 1 || st[d] == want;
            want *= sz[d];
            ok
        });
        (dense || t.numel() == 0) && sz.iter().zip(&size).enumerate().all(|(d, (a, b))| d == axis || a == b)
    };
    if !xs.iter().all(|t| dense_in_order(t)) {
        return None;
    }
    let at = order.iter().position(|&d| d == axis)?;
    let outer: i64 = order[..at].iter().map(|&d| size[d]).product();
    let inner: i64 = order[at + 1..].iter().map(|&d| size[d]).product();
    let runs: Vec<usize> = xs.iter().map(|t| (t.size()[axis] * inner) as usize).collect();
    let total: usize = runs.iter().sum();
    let mut out_size = size.clone();
    out_size[axis] = xs.iter().map(|t| t.size()[axis]).sum();
    // Allocated in memory order, then viewed in the graph's order of axes.
    let stored: Vec<i64> = order.iter().map(|&d| out_size[d]).collect();
    let out = match Tensor::f_empty(stored.as_slice(), (Kind::Float, Device::Cpu)) {
        Ok(o) => o,
        Err(e) => return Some(Err(e)),
    };
    let mut back = vec![0i64; rank];
    for (i, &d) in order.iter().enumerate() {
        back[d] = i as i64;
    }
    let outer = outer as usize;
    if outer * total == 0 {
        return Some(out.f_permute(back.as_slice()));
    }
    // SAFETY: every input is a dense float CPU tensor of `outer · run` floats from its data
    // pointer (checked above); `out` is fresh, `outer · total` floats.
    unsafe {
        let o = std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, outer * total);
        let srcs: Vec<&[f32]> =
            xs.iter().zip(&runs).map(|(t, &r)| if outer * r == 0 { &[][..] } else { slice(t, outer * r) }).collect();
        let mut at = 0;
        for (src, &r) in srcs.iter().zip(&runs) {
            if r >= 64 {
                for (o, src) in o.chunks_exact_mut(total).zip(src.chunks_exact(r)) {
                    o[at..at + r].copy_from_slice(src);
                }
            } else if r > 0 {
                // Short runs (a few channels a pixel): a loop, not a memcpy call per run.
                for (o, src) in o.chunks_exact_mut(total).zip(src.chunks_exact(r)) {
                    o[at..at + r].iter_mut().zip(src).for_each(|(o, &v)| *o = v);
                }
            }
            at += r;
        }
    }
    Some(out.f_permute(back.as_slice()))
}

/// [`concat`] along the channels of NHWC maps ([`Nhwc`]: a Split's channel slices too)
/// into a dense channels-last output: per pixel, each input's channels in turn.
fn concat_channels(xs: &[&Tensor]) -> Option<Result<Tensor, tch::TchError>> {
    let (n, _, h, w) = xs[0].size4().ok()?;
    let mut inputs = Vec::with_capacity(xs.len());
    for x in xs {
        let (xn, c, xh, xw) = x.size4().ok()?;
        if (xn, xh, xw) != (n, h, w) {
            return None;
        }
        inputs.push((Nhwc::of(x)?, c as usize, x.data_ptr() as *const f32));
    }
    let total: usize = inputs.iter().map(|i| i.1).sum();
    let out = match Tensor::f_empty([n, h, w, total as i64], (Kind::Float, Device::Cpu)) {
        Ok(o) => o,
        Err(e) => return Some(Err(e)),
    };
    let (n, h, w) = (n as usize, h as usize, w as usize);
    if n * h * w * total > 0 {
        // SAFETY: each input holds its pixels' `c` floats at `image·b + row·y + pixel·x`
        // from its data pointer (`Nhwc::of`, with its sizes); `out` is fresh and dense,
        // `n·h·w·total` floats.
        unsafe {
            let o = std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, n * h * w * total);
            let mut at = 0;
            for &(l, c, ptr) in &inputs {
                let mut pixels = o.chunks_exact_mut(total);
                for b in 0..n {
                    for y in 0..h {
                        let row = ptr.add(b * l.image + y * l.row);
                        for (x, o) in (0..w).zip(pixels.by_ref()) {
                            let src = std::slice::from_raw_parts(row.add(x * l.pixel), c);
                            o[at..at + c].iter_mut().zip(src).for_each(|(o, &v)| *o = v);
                        }
                    }
                }
                at += c;
            }
        }
    }
    Some(out.f_permute([0, 3, 1, 2]))
}

/// The mean over H and W of a channels-last float CPU `[N, C, H, W]` (GlobalAveragePool,
/// ReduceMean over axes 2 and 3), as `[N, C, 1, 1]`: per image, the pixels' channel vectors
/// summed in order, divided by H·W. None for other tensors.
pub fn spatial_mean(x: &Tensor) -> Option<Result<Tensor, tch::TchError>> {
    let (n, c, h, w) = x.size4().ok()?;
    if x.device() != Device::Cpu || x.kind() != Kind::Float || !dense_nhwc(x) || h * w == 0 {
        return None;
    }
    let (c, hw) = (c as usize, (h * w) as usize);
    let out = match Tensor::f_zeros([n, c as i64, 1, 1], (Kind::Float, Device::Cpu)) {
        Ok(o) => o,
        Err(e) => return Some(Err(e)),
    };
    // SAFETY: `x` is dense channels-last, `n·hw·c` floats; `out` fresh, `n·c` floats.
    unsafe {
        let xs = slice(x, n as usize * hw * c);
        let o = std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, n as usize * c);
        for (o, image) in o.chunks_exact_mut(c).zip(xs.chunks_exact(hw * c)) {
            sum_pixels(image, o);
            for o in o.iter_mut() {
                *o /= hw as f32;
            }
        }
    }
    Some(Ok(out))
}

/// Adds the pixels of a channels-last image (`C = o.len()` floats each) to `o`, in order,
/// in a loop the compiler vectorises across the channels.
fn sum_pixels(image: &[f32], o: &mut [f32]) {
    #[inline(always)]
    fn go(image: &[f32], o: &mut [f32]) {
        for pixel in image.chunks_exact(o.len()) {
            o.iter_mut().zip(pixel).for_each(|(o, &v)| *o += v);
        }
    }
    if simd() {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn build(image: &[f32], o: &mut [f32]) {
                go(image, o)
            }
            // SAFETY: `simd` says the CPU has AVX2 and FMA.
            return unsafe { build(image, o) };
        }
    }
    go(image, o)
}

/// An elementwise activation, which the executor runs in its own loop on the CPU where
/// that is faster: libtorch spends a few µs a call on dispatch alone.
/// In-place and out-of-place runs compute each element with the same function, so a run
/// that keeps every tensor and one that keeps only outputs agree bit for bit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu(f32),
    HardSwish,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// Bounds as given (±∞ where absent).
    Clip {
        lo: f64,
        hi: f64,
    },
    Sigmoid,
    /// `x · sigmoid(x)`, what an Ultralytics Sigmoid + Mul pair computes.
    Silu,
}

impl Activation {
    /// `self` on `x`: our loop for dense float CPU tensors, in place where `in_place` (the
    /// caller owns `x` and nothing else reads its storage); libtorch's ops otherwise.
    pub fn apply(self, x: Tensor, in_place: bool) -> Result<Tensor, tch::TchError> {
        // Ours at every size, so that the convolutions can fuse it and a separate one
        // computes the same bits: below libtorch's grain size its call costs more than the
        // loop, past it both split the work over the intra-op threads.
        if !self.fusable() || !dense_float_cpu(&x) {
            return self.torch(&x);
        }
        let n = x.numel();
        let out = if in_place { x.shallow_clone() } else { x.f_empty_like()? };
        if out.stride() != x.stride() {
            return self.torch(&x);
        }
        let to = avx512::Shared(out.data_ptr() as *mut f32);
        let from = (!in_place).then(|| avx512::Shared(x.data_ptr() as *mut f32));
        let part = |i: usize, parts: usize| {
            let r = threads::range(n, i, parts);
            // SAFETY: `x` and `out` are dense float CPU tensors of `n` elements laid out
            // alike: the same tensor (in place: owned by this call, read by nothing else),
            // or `out` is fresh. The parts' ranges are disjoint and inside both.
            let (src, dst) = unsafe {
                (
                    from.as_ref().map(|p| std::slice::from_raw_parts(p.get().add(r.start) as *const f32, r.len())),
                    std::slice::from_raw_parts_mut(to.get().add(r.start), r.len()),
                )
            };
            if self == Activation::Silu {
                silu_in_place(src, dst);
            } else {
                each(self, src, dst);
            }
        };
        threads::run(n >= SPLIT, &part);
        Ok(out)
    }

    /// Whether a kernel may apply `self` as it stores its outputs: where a separate
    /// [`Activation::apply`] on them runs our own function (so both give the same bits).
    /// SiLU is ours where the CPU has AVX-512; Sigmoid stays libtorch's.
    pub fn fusable(self) -> bool {
        match self {
            Activation::Silu => avx512::available(),
            Activation::Sigmoid => false,
            _ => true,
        }
    }

    /// libtorch's ops, for other devices, kinds and layouts.
    fn torch(self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        match self {
            Activation::Relu => x.f_relu(),
            // max(x, αx): two kernels instead of four, the same values.
            Activation::LeakyRelu(alpha) if (0.0..=1.0).contains(&alpha) => x.f_maximum(&x.f_mul_scalar(alpha as f64)?),
            Activation::LeakyRelu(alpha) => {
                let negative = x.f_clamp_max(0.0)?.f_mul_scalar(alpha as f64)?;
                x.f_clamp_min(0.0)?.f_add(&negative)
            }
            Activation::HardSwish => x.f_hardswish(),
            Activation::HardSigmoid { alpha, beta } => {
                x.f_mul_scalar(alpha as f64)?.f_add_scalar(beta as f64)?.f_clamp(0.0, 1.0)
            }
            Activation::Clip { lo, hi } => {
                let t = if lo > f64::NEG_INFINITY { x.f_clamp_min(lo)? } else { x.shallow_clone() };
                if hi < f64::INFINITY {
                    t.f_clamp_max(hi)
                } else {
                    Ok(t)
                }
            }
            Activation::Sigmoid => x.f_sigmoid(),
            Activation::Silu => x.f_silu(),
        }
    }
}

/// Elements past which an activation is split over the intra-op threads.
const SPLIT: usize = 1 << 16;

/// libtorch's `at::internal::GRAIN_SIZE`: the elements below which its CPU ops run on one
/// thread.
pub(crate) const GRAIN: usize = 32768;

/// Whether `x` is a float CPU tensor whose elements fill its storage span without gaps or
/// overlaps (contiguous, or channels-last contiguous).
fn dense_float_cpu(x: &Tensor) -> bool {
    x.device() == Device::Cpu && x.kind() == Kind::Float && (x.is_contiguous() || dense_nhwc(x))
}

/// Whether `x` is a 4-D tensor stored channels-last without gaps (what
/// `permute([0, 2, 3, 1]).is_contiguous()` says, without making the view).
fn dense_nhwc(x: &Tensor) -> bool {
    let (Ok((n, c, h, w)), stride) = (x.size4(), x.stride()) else { return false };
    // Axes of size 1 may have any stride.
    [(n, stride[0], h * w * c), (h, stride[2], w * c), (w, stride[3], c), (c, stride[1], 1)]
        .iter()
        .all(|&(size, stride, want)| size == 1 || stride == want)
}

/// `act` on every element: from `src` into `dst`, or on `dst` in place.
fn each(act: Activation, src: Option<&[f32]>, dst: &mut [f32]) {
    if simd() {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn build(act: Activation, src: Option<&[f32]>, dst: &mut [f32]) {
                each_with(act, src, dst)
            }
            // SAFETY: `simd` says the CPU has AVX2 and FMA.
            return unsafe { build(act, src, dst) };
        }
    }
    each_with(act, src, dst)
}

/// One loop per activation, so that each vectorises (to the width of the caller's build).
#[inline(always)]
fn each_with(act: Activation, src: Option<&[f32]>, dst: &mut [f32]) {
    #[inline(always)]
    fn map(src: Option<&[f32]>, dst: &mut [f32], f: impl Fn(f32) -> f32) {
        match src {
            Some(src) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = f(s)),
            None => dst.iter_mut().for_each(|d| *d = f(*d)),
        }
    }
    match act {
        Activation::Relu => map(src, dst, |x| if x < 0.0 { 0.0 } else { x }),
        Activation::LeakyRelu(alpha) => map(src, dst, |x| if x < 0.0 { x * alpha } else { x }),
        Activation::HardSwish => map(src, dst, |x| x * clamp(x + 3.0, 0.0, 6.0) / 6.0),
        Activation::HardSigmoid { alpha, beta } => map(src, dst, |x| clamp(alpha * x + beta, 0.0, 1.0)),
        Activation::Clip { lo, hi } => {
            let (lo, hi) = (lo as f32, hi as f32);
            map(src, dst, |x| clamp(x, lo, hi))
        }
        Activation::Sigmoid | Activation::Silu => unreachable!("libtorch's (see `Activation::apply`)"),
    }
}

/// `x` within `[lo, hi]`; NaN stays NaN, as in libtorch.
#[inline(always)]
fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ir::exec::channels_last;

    /// Every activation with the parameters the tests use (the kernels' tests too).
    pub(super) const ACTIVATIONS: [Activation; 9] = [
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::LeakyRelu(1.5),
        Activation::HardSwish,
        Activation::HardSigmoid { alpha: 0.2, beta: 0.5 },
        Activation::Clip { lo: 0.0, hi: 6.0 },
        Activation::Clip { lo: f64::NEG_INFINITY, hi: 1.0 },
        Activation::Sigmoid,
        Activation::Silu,
    ];

    /// libtorch's convolution, with asymmetric pads applied explicitly.
    fn reference(x: &Tensor, w: &Tensor, b: Option<&Tensor>, s: &ConvShape) -> Tensor {
        let flat: Vec<i64> = s.pads.iter().rev().flat_map(|&(a, e)| [a, e]).collect();
        let x = x.contiguous().constant_pad_nd(flat.as_slice());
        x.conv2d(&w.contiguous(), b, s.strides, [0, 0], s.dilations, s.group)
    }

    fn close(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.size(), b.size());
        (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1.0)
    }

    /// Inputs as the executor sees them: channels-last, a channel slice of a channels-last
    /// tensor (a Split's output), and NCHW-contiguous (which only `pointwise` takes).
    fn layouts(n: i64, c: i64, h: i64, w: i64) -> Vec<Tensor> {
        let x = Tensor::randn([n, c, h, w], (Kind::Float, Device::Cpu));
        let wide = channels_last(&Tensor::randn([n, c + 5, h, w], (Kind::Float, Device::Cpu)));
        vec![channels_last(&x), wide.narrow(1, 2, c), x]
    }

    #[test]
    fn depthwise_equals_libtorch() {
        tch::manual_seed(1);
        let mut checked = 0;
        for (c, k, stride, dilation, pads) in [
            (16, 3, 1, 1, [(1, 1), (1, 1)]),
            (21, 3, 2, 1, [(1, 1), (1, 1)]),
            (40, 5, 2, 1, [(2, 2), (2, 2)]),
            (7, 3, 1, 2, [(2, 2), (2, 2)]),
            (35, 3, 2, 1, [(0, 1), (1, 0)]),
            (24, 5, 1, 1, [(0, 0), (3, 4)]),
        ] {
            let s = ConvShape {
                kernel: &[k, k],
                strides: &[stride, stride],
                dilations: &[dilation, dilation],
                pads: &pads,
                group: c,
            };
            let w = channels_last(&Tensor::randn([c, 1, k, k], (Kind::Float, Device::Cpu)));
            let b = Tensor::randn([c], (Kind::Float, Device::Cpu));
            for x in &layouts(3, c, 11, 9)[..2] {
                for bias in [Some(&b), None] {
                    let want = reference(x, &w, bias, &s);
                    let (ours, _) = depthwise(x, &w, bias, &s, None, None).expect("a depthwise case").unwrap();
                    assert!(close(&ours, &want) < 1e-5, "c {c} k {k} s {stride} d {dilation} {pads:?}");
                    // Packed once and kept: the same bits.
                    let cache = PackCache::default();
                    for _ in 0..2 {
                        let (cached, _) = depthwise(x, &w, bias, &s, Some((&cache, 0)), None).unwrap().unwrap();
                        assert!(cached.equal(&ours));
                    }
                    // An activation applied as outputs are stored: the bits of a separate one.
                    for act in [Activation::HardSwish, Activation::Relu, Activation::Silu] {
                        let (fused, done) = depthwise(x, &w, bias, &s, None, Some(act)).unwrap().unwrap();
                        let separate = act.apply(ours.copy(), false).unwrap();
                        assert!(fused.equal(&if done { separate } else { ours.copy() }), "{act:?}");
                        assert_eq!(done, avx512::available(), "{act:?}");
                    }
                    // The AVX2 build (what a CPU without AVX-512 runs) and the portable one.
                    let g = Geometry::of(x, &w, bias, &s).unwrap();
                    let avx2 = depthwise_launch(x, &w, bias, &g).unwrap();
                    assert!(close(&avx2, &want) < 1e-5, "avx2: c {c} k {k} s {stride} d {dilation} {pads:?}");
                    let taps = w.reshape([c, k * k]).transpose(0, 1).contiguous();
                    let ours = Tensor::empty([3, g.oh, g.ow, c], (Kind::Float, Device::Cpu));
                    let span = 2 * g.layout.image + 10 * g.layout.row + 8 * g.layout.pixel + c as usize;
                    // SAFETY: as in `depthwise_launch`.
                    unsafe {
                        let xs = std::slice::from_raw_parts(x.data_ptr() as *const f32, span);
                        let ts = std::slice::from_raw_parts(taps.data_ptr() as *const f32, taps.numel());
                        let bs = bias.map(|b| std::slice::from_raw_parts(b.data_ptr() as *const f32, b.numel()));
                        let os = std::slice::from_raw_parts_mut(ours.data_ptr() as *mut f32, ours.numel());
                        depthwise_rows::<false>(xs, ts, bs, os, &g, 0);
                    }
                    let ours = ours.permute([0, 3, 1, 2]);
                    assert!(close(&ours, &want) < 1e-5, "portable: c {c} k {k} s {stride} d {dilation} {pads:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 24);
    }

    #[test]
    fn binary_ops_equal_libtorch_bit_for_bit() {
        tch::manual_seed(4);
        let x = channels_last(&Tensor::randn([2, 24, 5, 7], (Kind::Float, Device::Cpu)));
        let y = channels_last(&Tensor::randn([2, 24, 5, 7], (Kind::Float, Device::Cpu)));
        let scale = Tensor::randn([2, 24, 1, 1], (Kind::Float, Device::Cpu));
        let shared = Tensor::randn([1, 24, 1, 1], (Kind::Float, Device::Cpu));
        type Torch = fn(&Tensor, &Tensor) -> Tensor;
        let ops: [(Binary, Torch); 4] = [
            (Binary::Add, |a, b| a + b),
            (Binary::Sub, |a, b| a - b),
            (Binary::Mul, |a, b| a * b),
            (Binary::Div, |a, b| a / b),
        ];
        for (op, torch) in ops {
            for (a, b) in [(&x, &y), (&x, &scale), (&scale, &x), (&shared, &x), (&x, &shared)] {
                let ours = binary(op, a, b).expect("a case of ours").unwrap();
                assert!(ours.equal(&torch(a, b)), "{op:?} {:?} {:?}", a.size(), b.size());
                assert_eq!(ours.stride(), x.stride(), "{op:?}: channels-last out");
            }
        }
        // Left to libtorch: other broadcasts, NCHW against per channel, other kinds, large.
        let row = Tensor::randn([7], (Kind::Float, Device::Cpu));
        assert!(binary(Binary::Add, &x, &row).is_none());
        assert!(binary(Binary::Mul, &x.contiguous(), &scale).is_none());
        assert!(binary(Binary::Mul, &x.to_kind(Kind::Double), &y.to_kind(Kind::Double)).is_none());
        let big = Tensor::randn([GRAIN as i64], (Kind::Float, Device::Cpu));
        assert!(binary(Binary::Add, &big, &big).is_none());
    }

    #[test]
    fn linear_equals_libtorch() {
        if !avx512::available() {
            return;
        }
        tch::manual_seed(5);
        let cache = PackCache::default();
        // Few rows and many outputs (split by output blocks), and the other way round.
        for (n, k, m) in [(2, 576, 1024), (1, 7, 3), (40, 24, 20)] {
            let x = Tensor::randn([n, k], (Kind::Float, Device::Cpu));
            let w = Tensor::randn([m, k], (Kind::Float, Device::Cpu));
            let b = Tensor::randn([m], (Kind::Float, Device::Cpu));
            let want = x.matmul(&w.tr()) + &b;
            for cache in [None, Some((&cache, 1)), Some((&cache, 1))] {
                let ours = linear(&x, &w, Some(&b), cache).expect("a case of ours").unwrap();
                assert_eq!(ours.size(), [n, m]);
                let err = (&ours - &want).abs().max().double_value(&[]);
                assert!(err < 1e-4 * want.abs().max().double_value(&[]).max(1.0), "{n}×{k}→{m}: {err}");
            }
            assert!(linear(&x, &w, None, None).unwrap().unwrap().allclose(&x.matmul(&w.tr()), 1e-4, 1e-4, false));
        }
        // Transposed weights, a bias of another shape, mismatched sizes: libtorch's.
        let (x, w) =
            (Tensor::randn([2, 8], (Kind::Float, Device::Cpu)), Tensor::randn([8, 4], (Kind::Float, Device::Cpu)));
        assert!(linear(&x, &w.tr(), None, None).is_none());
        assert!(
            linear(&x, &w.tr().contiguous(), Some(&Tensor::randn([1, 4], (Kind::Float, Device::Cpu))), None).is_none()
        );
        assert!(linear(&x, &w, None, None).is_none());
    }

    #[test]
    fn concat_equals_libtorch() {
        let randn = |s: &[i64]| Tensor::randn(s, (Kind::Float, Device::Cpu));
        // Channels-last maps along the channels, and along H; contiguous tensors along
        // every axis; the detect head's [N, C, H·W] views of channels-last maps along the
        // anchors; empty inputs.
        let maps: Vec<Tensor> = [3, 5, 8].iter().map(|&c| channels_last(&randn(&[2, c, 4, 6]))).collect();
        let rows: Vec<Tensor> = [1, 3].iter().map(|&h| channels_last(&randn(&[2, 5, h, 6]))).collect();
        let flat: Vec<Tensor> = [2, 7].iter().map(|&k| randn(&[k, 3, 4])).collect();
        let head: Vec<Tensor> = [(20, 20), (10, 10), (5, 5)]
            .iter()
            .map(|&(h, w)| channels_last(&randn(&[1, 64, h, w])).reshape([1, 64, -1]))
            .collect();
        let empty = vec![randn(&[2, 0, 3]), randn(&[2, 4, 3])];
        let wide = channels_last(&randn(&[2, 16, 5, 3]));
        let slices =
            [wide.narrow(1, 0, 8), wide.narrow(1, 8, 8), maps[2].narrow(0, 0, 2).narrow(2, 0, 4).narrow(3, 0, 3)];
        let slices = vec![slices[0].narrow(2, 0, 4), slices[1].narrow(2, 0, 4), slices[2].shallow_clone()];
        let cases: Vec<(&Vec<Tensor>, usize)> =
            vec![(&maps, 1), (&rows, 2), (&flat, 0), (&head, 2), (&empty, 1), (&slices, 1)];
        for (xs, axis) in cases {
            let refs: Vec<&Tensor> = xs.iter().collect();
            let ours = concat(&refs, axis).expect("a case of ours").unwrap();
            assert!(ours.equal(&Tensor::cat(&refs, axis as i64)), "{:?} along {axis}", xs[0].size());
        }
        let along = |xs: &[Tensor], axis| concat(&xs.iter().collect::<Vec<_>>(), axis);
        for axis in 1..3 {
            let xs: Vec<Tensor> = (0..2).map(|_| randn(&[2, 3, 4])).collect();
            assert!(along(&xs, axis).unwrap().unwrap().equal(&Tensor::cat(&xs, axis as i64)));
        }
        // Layouts that differ, other kinds: libtorch's.
        assert!(along(&[channels_last(&randn(&[1, 3, 4, 4])), randn(&[1, 3, 4, 4])], 2).is_none());
        assert!(along(&[Tensor::from_slice(&[1i64, 2]), Tensor::from_slice(&[3i64])], 0).is_none());
    }

    #[test]
    fn spatial_mean_equals_libtorch() {
        let x = channels_last(&(Tensor::randn([3, 40, 6, 9], (Kind::Float, Device::Cpu)) + 2.0));
        let ours = spatial_mean(&x).expect("channels-last").unwrap();
        let want = x.mean_dim([2i64, 3].as_slice(), true, None);
        assert!(close(&ours, &want) < 1e-6);
        assert!(spatial_mean(&x.contiguous()).is_none());
    }

    #[test]
    fn pointwise_equals_libtorch() {
        tch::manual_seed(2);
        for (cin, cout, stride) in [(16, 24, 1), (3, 8, 2), (64, 5, 1), (1, 4, 1)] {
            let s = ConvShape {
                kernel: &[1, 1],
                strides: &[stride, stride],
                dilations: &[1, 1],
                pads: &[(0, 0), (0, 0)],
                group: 1,
            };
            let w = channels_last(&Tensor::randn([cout, cin, 1, 1], (Kind::Float, Device::Cpu)));
            let b = Tensor::randn([cout], (Kind::Float, Device::Cpu));
            for x in &layouts(2, cin, 7, 10) {
                for bias in [Some(&b), None] {
                    let ours = pointwise(x, &w, bias, &s).expect("a 1×1 case").unwrap();
                    assert!(
                        close(&ours, &reference(x, &w, bias, &s)) < 1e-5,
                        "{cin}→{cout} stride {stride} {:?}",
                        x.stride()
                    );
                }
            }
        }
    }

    #[test]
    fn other_cases_are_left_to_libtorch() {
        let x = channels_last(&Tensor::randn([1, 8, 6, 6], (Kind::Float, Device::Cpu)));
        let dense = Tensor::randn([8, 8, 3, 3], (Kind::Float, Device::Cpu));
        let pads = [(1, 1), (1, 1)];
        let s = ConvShape { kernel: &[3, 3], strides: &[1, 1], dilations: &[1, 1], pads: &pads, group: 1 };
        assert!(pointwise(&x, &dense, None, &s).is_none() && depthwise(&x, &dense, None, &s, None, None).is_none());
        // A zero stride (a corrupt file) is libtorch's to refuse, not a division here.
        let dw = Tensor::randn([8, 1, 3, 3], (Kind::Float, Device::Cpu));
        let s = ConvShape { kernel: &[3, 3], strides: &[0, 1], dilations: &[1, 1], pads: &pads, group: 8 };
        assert!(depthwise(&x, &dw, None, &s, None, None).is_none());
        let s = ConvShape { kernel: &[1, 1], strides: &[0, 0], dilations: &[1, 1], pads: &[(0, 0), (0, 0)], group: 1 };
        assert!(pointwise(&x, &Tensor::randn([4, 8, 1, 1], (Kind::Float, Device::Cpu)), None, &s).is_none());
        // Doubles are libtorch's too.
        let s = ConvShape { kernel: &[3, 3], strides: &[1, 1], dilations: &[1, 1], pads: &pads, group: 8 };
        assert!(depthwise(&x.to_kind(Kind::Double), &dw.to_kind(Kind::Double), None, &s, None, None).is_none());
    }

    #[test]
    fn activations_equal_libtorch_in_place_or_not() {
        tch::manual_seed(3);
        // Values across the range, the exponential's clamp bounds and past them, NaN.
        let x = Tensor::randn([2, 24, 9, 7], (Kind::Float, Device::Cpu)) * 6.0;
        assert!(x.numel() < GRAIN);
        let x = Tensor::cat(
            &[x.flatten(0, -1), Tensor::from_slice(&[-100f32, -87.5, 88.5, 100.0, 0.0, -0.0, f32::NAN])],
            0,
        );
        for act in ACTIVATIONS {
            let want = act.torch(&x).unwrap();
            let ours = act.apply(x.shallow_clone(), false).unwrap();
            let nan = want.isnan();
            assert!(ours.isnan().equal(&nan), "{act:?}: NaN where libtorch has NaN");
            let (o, w) = (ours.masked_fill(&nan, 0.0), want.masked_fill(&nan, 0.0));
            let error = ((&o - &w).abs() / w.abs().clamp_min(1e-30)).masked_fill(&w.eq(0.0), 0.0);
            assert!(error.max().double_value(&[]) < 1e-6, "{act:?}: {}", error.max().double_value(&[]));
            assert!((&o - &w).abs().masked_fill(&w.ne(0.0), 0.0).max().double_value(&[]) < 1e-30, "{act:?} at 0");
            // In place: the same bits, in the same storage.
            let owned = x.copy();
            let ptr = owned.data_ptr();
            let again = act.apply(owned, true).unwrap();
            if act != Activation::Sigmoid && (act != Activation::Silu || avx512::available()) {
                assert_eq!(again.data_ptr(), ptr, "{act:?} in place");
            }
            assert!(again.masked_fill(&nan, 0.0).equal(&o), "{act:?} in place");
            // Channels-last input keeps its layout.
            let cl = channels_last(&x.narrow(0, 0, 2 * 24 * 9 * 7).reshape([2, 24, 9, 7]));
            let y = act.apply(cl.shallow_clone(), false).unwrap();
            assert_eq!(y.stride(), cl.stride());
            let dense = act.apply(cl.contiguous(), false).unwrap();
            // libtorch's vector loop and its scalar tail round its exponential differently,
            // and which elements fall in the tail depends on the layout; ours computes every
            // element alike.
            match act {
                Activation::Sigmoid | Activation::Silu => assert!(y.allclose(&dense, 1e-6, 1e-7, false)),
                _ => assert!(y.equal(&dense), "{act:?}: channels-last"),
            }
        }
        // Past the grain size, ours too (Sigmoid aside), split over the threads past SPLIT:
        // libtorch's values, and each element computed alike whatever the size.
        for act in ACTIVATIONS.into_iter().filter(|&a| a != Activation::Sigmoid) {
            for n in [GRAIN, SPLIT + 1001] {
                let big = Tensor::randn([n as i64], (Kind::Float, Device::Cpu)) * 8.0;
                let y = act.apply(big.shallow_clone(), false).unwrap();
                assert!(y.allclose(&act.torch(&big).unwrap(), 1e-5, 1e-6, false), "{act:?} at {n}");
                let tail = big.narrow(0, n as i64 - 100, 100).copy();
                assert!(y.narrow(0, n as i64 - 100, 100).equal(&act.apply(tail, false).unwrap()), "{act:?} at {n}");
            }
        }
        // Not dense (every other column).
        let strided = Tensor::randn([4, 6], (Kind::Float, Device::Cpu)).slice(1, 0, None, 2);
        let y = Activation::Silu.apply(strided.shallow_clone(), false).unwrap();
        assert!(y.allclose(&strided.silu(), 1e-6, 1e-7, false));
    }
}
