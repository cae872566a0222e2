//! Pillow's `Image.resize((w, h), Image.BICUBIC)` for 8-bit RGB, bit for bit.
//!
//! Same arithmetic as Pillow's `libImaging/Resample.c` (own Rust code): a separable convolution with the
//! bicubic kernel (a = -0.5, support 2 widened by the downscale factor, i.e. antialiased), weights
//! computed in f64 per output pixel, normalised to sum 1, rounded to fixed point with 22 fractional bits
//! (`PRECISION_BITS = 32 - 8 - 2`), accumulated in i32 starting from one half, and clipped to 0..=255
//! with an arithmetic shift. The horizontal pass runs first and its result is stored as 8-bit, then the
//! vertical pass; a pass is skipped when its dimension is unchanged (exactly like Pillow, and an unchanged
//! axis would be the identity anyway).
//!
//! Work is split over rayon in strips of output rows; each strip runs the horizontal pass on just the
//! source rows its vertical taps need (every intermediate row is computed by the same formula, so the
//! result does not depend on the split) and keeps that strip buffer under a memory budget, so very thin
//! or tall images need no full-height intermediate. Vertical weights are computed per output row, which
//! keeps the coefficient memory proportional to one row's taps.

use rayon::prelude::*;

use super::{check_dims, ImageError, RgbImage, MEMORY_NAME};

const PRECISION_BITS: u32 = 32 - 8 - 2;
const HALF: i32 = 1 << (PRECISION_BITS - 1);
/// Upper bound for one strip's intermediate buffer (at least one output row is always processed).
const STRIP_BUDGET: f64 = (16 << 20) as f64;

/// Resizes like Pillow's `img.resize((width, height), Image.BICUBIC)` (the default filter of
/// `Image.resize` for RGB). Sizes must be non-zero and within [`super::MAX_SIDE`] / [`super::MAX_PIXELS`].
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage, ImageError> {
    check_dims(MEMORY_NAME, img.width() as u64, img.height() as u64)?;
    check_dims("resize output", width as u64, height as u64)?;
    let out = resize_rgb8(img.as_raw(), img.width() as usize, img.height() as usize, width as usize, height as usize);
    Ok(RgbImage::from_raw(width, height, out).expect("buffer size matches"))
}

/// Pillow's `bicubic_filter` (a = -0.5), same operation order.
#[inline]
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `precompute_coeffs` for one axis, evaluated per output index.
struct Axis {
    in_size: usize,
    scale: f64,
    filterscale: f64,
    support: f64,
    ksize: usize,
}

impl Axis {
    fn new(in_size: usize, out_size: usize) -> Self {
        // Pillow receives the source box as C floats and computes `(double)(in1 - in0) / outSize`.
        let scale = (in_size as f32 - 0.0f32) as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = 2.0 * filterscale;
        Axis { in_size, scale, filterscale, support, ksize: support.ceil() as usize * 2 + 1 }
    }

    fn center(&self, xx: usize) -> f64 {
        (xx as f64 + 0.5) * self.scale
    }

    /// `(first source index, number of taps)` for output index `xx`.
    fn bounds(&self, xx: usize) -> (usize, usize) {
        let center = self.center(xx);
        // C `(int)` conversions truncate toward zero, as `as i64` does.
        let xmin = ((center - self.support + 0.5) as i64).max(0);
        let xmax = ((center + self.support + 0.5) as i64).min(self.in_size as i64);
        (xmin as usize, (xmax - xmin).max(0) as usize)
    }

    /// Fixed-point weights of output index `xx` into `out[..taps]`; returns `(first, taps)`.
    fn coeffs(&self, xx: usize, scratch: &mut Vec<f64>, out: &mut [i32]) -> (usize, usize) {
        let center = self.center(xx);
        let (xmin, taps) = self.bounds(xx);
        let ss = 1.0 / self.filterscale;
        scratch.clear();
        let mut ww = 0.0;
        for x in 0..taps {
            let w = bicubic(((x + xmin) as f64 - center + 0.5) * ss);
            scratch.push(w);
            ww += w;
        }
        for (o, &w) in out.iter_mut().zip(scratch.iter()) {
            let k = if ww != 0.0 { w / ww } else { w };
            let scaled = k * (1u32 << PRECISION_BITS) as f64;
            *o = if k < 0.0 { (-0.5 + scaled) as i32 } else { (0.5 + scaled) as i32 };
        }
        (xmin, taps)
    }
}

/// Precomputed horizontal weights (shared by all rows).
struct Horizontal {
    bounds: Vec<(usize, usize)>,
    kk: Vec<i32>,
    ksize: usize,
}

impl Horizontal {
    fn new(in_w: usize, out_w: usize) -> Self {
        let axis = Axis::new(in_w, out_w);
        let ksize = axis.ksize;
        let mut kk = vec![0i32; out_w * ksize];
        let mut scratch = Vec::with_capacity(ksize);
        let bounds = kk.chunks_exact_mut(ksize).enumerate().map(|(xx, k)| axis.coeffs(xx, &mut scratch, k)).collect();
        Horizontal { bounds, kk, ksize }
    }

    fn run_row(&self, src: &[u8], dst: &mut [u8]) {
        for (xx, o) in dst.chunks_exact_mut(3).enumerate() {
            let (xmin, taps) = self.bounds[xx];
            let k = &self.kk[xx * self.ksize..xx * self.ksize + taps];
            let px = &src[xmin * 3..(xmin + taps) * 3];
            let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
            for (p, &c) in px.chunks_exact(3).zip(k) {
                s0 += p[0] as i32 * c;
                s1 += p[1] as i32 * c;
                s2 += p[2] as i32 * c;
            }
            o[0] = clip8(s0);
            o[1] = clip8(s1);
            o[2] = clip8(s2);
        }
    }
}

/// Resizes packed RGB8 `src` (`in_w * in_h * 3` bytes) to `out_w x out_h`, Pillow-exact.
pub(crate) fn resize_rgb8(src: &[u8], in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    assert_eq!(src.len(), in_w * in_h * 3, "source buffer size");
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    if !need_h && !need_v {
        return src.to_vec();
    }
    let horiz = need_h.then(|| Horizontal::new(in_w, out_w));
    let row_out = out_w * 3;
    let mut out = vec![0u8; out_h * row_out];
    if !need_v {
        let h = horiz.expect("horizontal pass needed");
        out.par_chunks_mut(row_out).zip(src.par_chunks(in_w * 3)).for_each(|(o, s)| h.run_row(s, o));
        return out;
    }

    let vert = Axis::new(in_h, out_h);
    let vbounds: Vec<(usize, usize)> = (0..out_h).map(|y| vert.bounds(y)).collect();
    let rows = strip_rows(out_h, row_out, &vert);
    out.par_chunks_mut(rows * row_out).enumerate().for_each(|(s, strip)| {
        let r0 = s * rows;
        let n = strip.len() / row_out;
        let first = vbounds[r0].0;
        let last = vbounds[r0..r0 + n].iter().map(|&(a, t)| a + t).max().unwrap_or(first);
        // Intermediate rows `first..last` (width out_w), or the source rows when no horizontal pass.
        let owned;
        let temp: &[u8] = match &horiz {
            Some(h) => {
                let mut t = vec![0u8; (last - first) * row_out];
                for (y, trow) in t.chunks_exact_mut(row_out).enumerate() {
                    let sy = first + y;
                    h.run_row(&src[sy * in_w * 3..(sy + 1) * in_w * 3], trow);
                }
                owned = t;
                &owned
            }
            None => &src[first * row_out..last * row_out],
        };
        let mut acc = vec![0i32; row_out];
        let mut scratch = Vec::with_capacity(vert.ksize);
        let mut k = vec![0i32; vert.ksize];
        for (r, orow) in strip.chunks_exact_mut(row_out).enumerate() {
            let (ymin, taps) = vert.coeffs(r0 + r, &mut scratch, &mut k);
            acc.fill(HALF);
            for (t, &c) in k[..taps].iter().enumerate() {
                let trow = &temp[(ymin + t - first) * row_out..(ymin + t - first + 1) * row_out];
                // Integer sums are exact, so summing tap by tap equals Pillow's per-pixel loop.
                for (a, &p) in acc.iter_mut().zip(trow) {
                    *a += p as i32 * c;
                }
            }
            for (o, &a) in orow.iter_mut().zip(&acc) {
                *o = clip8(a);
            }
        }
    });
    out
}

/// Output rows per strip: enough strips to keep the threads busy, each strip's intermediate under budget.
fn strip_rows(out_h: usize, row_bytes: usize, vert: &Axis) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let mut rows = out_h.div_ceil(threads * 4).max(16).min(out_h);
    let temp_bytes = |rows: usize| (rows as f64 * vert.scale + 2.0 * vert.support + 2.0) * row_bytes as f64;
    while rows > 1 && temp_bytes(rows) > STRIP_BUDGET {
        rows = rows.div_ceil(2);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_axis_is_exact() {
        let src: Vec<u8> = (0..5 * 4 * 3).map(|v| (v * 37 % 256) as u8).collect();
        assert_eq!(resize_rgb8(&src, 5, 4, 5, 4), src);
    }

    #[test]
    fn kernel_values() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(1.0), 0.0);
        assert_eq!(bicubic(2.0), 0.0);
        assert_eq!(bicubic(0.5), 0.5625);
        assert_eq!(bicubic(1.5), -0.0625);
    }
}
