//! Linear layers: `out = x · wᵀ` over memory-mapped weights of any supported type.
//!
//! Work is split over the caller's rayon pool by output tiles (a block of weight rows × a chunk of input
//! rows), so every thread streams its own weight rows once per chunk and no weight is copied. Q8_0 and Q4_0
//! weights take ggml's integer path: activations are quantized to Q8_0 blocks and each block contributes
//! `d_w · d_x · Σ q_w q_x`, so results agree with llama.cpp to float rounding; Q4_K/Q5_K/Q6_K weights
//! likewise against Q8_K activations. Other types are converted to f32 one block of rows at a time, reused
//! for every input row of the chunk (f16 rows of a single input are converted in registers instead).

use rayon::prelude::*;

use super::kquants::{quantize_q8_k_activations, Q8KBlock};
use super::scalar::{quantize_q8_0_activations, Q8Block};
use crate::tensor::{Matrix, WeightError};
use crate::GgmlType;

/// Weight rows per work item (a multiple of the 8-row tiles).
const ROW_BLOCK: usize = 64;
/// Input rows per work item: bounds the activations a tile revisits to what the caches hold.
const COL_BLOCK: usize = 64;

/// `out[n × w.rows] = x[n × w.cols] · wᵀ`: a linear layer without bias.
pub fn matmul(x: &[f32], n: usize, w: &Matrix<'_>, out: &mut [f32]) -> Result<(), WeightError> {
    let (k, m) = (w.cols, w.rows);
    assert_eq!(x.len(), n * k, "matmul input for {}", w.name);
    assert_eq!(out.len(), n * m, "matmul output for {}", w.name);
    if n == 0 || m == 0 {
        return Ok(());
    }
    match w.ty {
        GgmlType::Q8_0 | GgmlType::Q4_0 => {
            let xq: Vec<Q8Block> = if n == 1 {
                // One row: not worth a parallel region of its own.
                quantize_q8_0_activations(x)
            } else {
                x.par_chunks(k).flat_map_iter(quantize_q8_0_activations).collect()
            };
            let xs = Int8Activations::new(&xq, k / 32);
            tiled(n, m, out, |r0, r1, c0, c1, local| {
                int8_tile(w, r0, r1, &xs, c0, c1, local);
                Ok(())
            })
        }
        GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => {
            // ggml's K-quant path: activations in Q8_K blocks of 256; interleaved 8-row tiles for batches
            // where there are some, else one integer dot per (row, input row).
            let xq: Vec<Q8KBlock> = if n == 1 {
                quantize_q8_k_activations(x)
            } else {
                x.par_chunks(k).flat_map_iter(quantize_q8_k_activations).collect()
            };
            let kb = k / 256;
            let dot = match w.ty {
                GgmlType::Q4K => super::dot_q4_k,
                GgmlType::Q5K => super::dot_q5_k,
                _ => super::dot_q6_k,
            };
            tiled(n, m, out, |r0, r1, c0, c1, local| {
                if let Some(packed) = w.repacked() {
                    k_x8_tile(w, packed, r0, r1, &xq, kb, c0, c1, local);
                    return Ok(());
                }
                let rows = r1 - r0;
                let done = kquant_tiles(w, r0, r1, &xq, kb, c0, c1, local);
                for r in r0 + done..r1 {
                    let wrow = w.rows_bytes(r, r + 1);
                    for (ci, i) in (c0..c1).enumerate() {
                        local[ci * rows + (r - r0)] = dot(wrow, &xq[i * kb..(i + 1) * kb]);
                    }
                }
                Ok(())
            })
        }
        // One input row: f16 weights are read in place (converted in registers), not copied to f32.
        GgmlType::F16 if n == 1 => tiled(n, m, out, |r0, r1, _, _, local| {
            for r in r0..r1 {
                local[r - r0] = super::dot_f16(w.rows_bytes(r, r + 1), x);
            }
            Ok(())
        }),
        _ => tiled(n, m, out, |r0, r1, c0, c1, local| {
            let mut wf = Vec::new();
            w.rows_f32(r0, r1, &mut wf)?;
            let rows = r1 - r0;
            for (ci, i) in (c0..c1).enumerate() {
                let xi = &x[i * k..(i + 1) * k];
                for j in 0..rows {
                    local[ci * rows + j] = super::dot(xi, &wf[j * k..(j + 1) * k]);
                }
            }
            Ok(())
        }),
    }
}

/// `outs[j][n × ws[j].rows] = x · ws[j]ᵀ` for several weights that share their input (q, k and v; gate
/// and up). For one input row with weights of one activation format, the activations are quantized once
/// and the row blocks of every weight go through a single parallel loop: decoding's small matrices then
/// cost one fork-join instead of one each. Otherwise it is [`matmul`] per weight. Same results either way.
pub fn matmul_shared(x: &[f32], n: usize, ws: &[&Matrix<'_>], outs: &mut [&mut [f32]]) -> Result<(), WeightError> {
    assert_eq!(ws.len(), outs.len(), "matmul_shared: one output per weight");
    let int8 = |t: GgmlType| matches!(t, GgmlType::Q8_0 | GgmlType::Q4_0);
    let kquant = |t: GgmlType| matches!(t, GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K);
    let k = x.len() / n.max(1);
    let same = |f: &dyn Fn(GgmlType) -> bool| ws.iter().all(|w| f(w.ty) && w.cols == k);
    if n != 1 || ws.is_empty() || !(same(&int8) || same(&kquant)) {
        for (w, out) in ws.iter().zip(outs.iter_mut()) {
            matmul(x, n, w, out)?;
        }
        return Ok(());
    }
    for (w, out) in ws.iter().zip(outs.iter()) {
        assert_eq!(out.len(), w.rows, "matmul output for {}", w.name);
    }
    // Every weight's output in row blocks: (weight, first row, its outputs).
    let items: Vec<(usize, usize, &mut [f32])> = outs
        .iter_mut()
        .enumerate()
        .flat_map(|(j, o)| o.chunks_mut(ROW_BLOCK).enumerate().map(move |(b, c)| (j, b * ROW_BLOCK, c)))
        .collect();
    if int8(ws[0].ty) {
        let xq = quantize_q8_0_activations(x);
        let xs = Int8Activations::new(&xq, k / 32);
        items.into_par_iter().for_each(|(j, r0, o)| int8_tile(ws[j], r0, r0 + o.len(), &xs, 0, 1, o));
    } else {
        let xq = quantize_q8_k_activations(x);
        let kb = k / 256;
        items.into_par_iter().for_each(|(j, r0, o)| {
            if let Some(packed) = ws[j].repacked() {
                return k_x8_tile(ws[j], packed, r0, r0 + o.len(), &xq, kb, 0, 1, o);
            }
            let dot = match ws[j].ty {
                GgmlType::Q4K => super::dot_q4_k,
                GgmlType::Q5K => super::dot_q5_k,
                _ => super::dot_q6_k,
            };
            for (r, v) in o.iter_mut().enumerate() {
                *v = dot(ws[j].rows_bytes(r0 + r, r0 + r + 1), &xq);
            }
        });
    }
    Ok(())
}

/// Run `tile(r0, r1, c0, c1, local)` over every (row block, input chunk) in parallel; `local` is
/// `[(c1 - c0) × (r1 - r0)]`, copied into its place in `out` by the same worker. A single input row writes
/// `out` in place.
fn tiled<F>(n: usize, m: usize, out: &mut [f32], tile: F) -> Result<(), WeightError>
where
    F: Fn(usize, usize, usize, usize, &mut [f32]) -> Result<(), WeightError> + Sync,
{
    if n == 1 {
        return out
            .par_chunks_mut(ROW_BLOCK)
            .enumerate()
            .try_for_each(|(b, o)| tile(b * ROW_BLOCK, b * ROW_BLOCK + o.len(), 0, 1, o));
    }
    let (rb, cb) = (m.div_ceil(ROW_BLOCK), n.div_ceil(COL_BLOCK));
    let dst = OutTiles { ptr: out.as_mut_ptr(), len: out.len() };
    (0..rb * cb).into_par_iter().try_for_each(|t| {
        // Consecutive items share an input chunk, so its activations stay warm in the shared cache.
        let (c, r) = (t / rb, t % rb);
        let (r0, r1) = (r * ROW_BLOCK, ((r + 1) * ROW_BLOCK).min(m));
        let (c0, c1) = (c * COL_BLOCK, ((c + 1) * COL_BLOCK).min(n));
        let mut local = vec![0f32; (r1 - r0) * (c1 - c0)];
        tile(r0, r1, c0, c1, &mut local)?;
        // Each tile owns out[i·m + r0 .. i·m + r1] for its inputs i: written here, by this thread.
        for (ci, row) in local.chunks(r1 - r0).enumerate() {
            dst.write((c0 + ci) * m + r0, row);
        }
        Ok(())
    })
}

/// `out` shared by the tiles of [`tiled`], each writing only its own (input rows × weight rows) block.
struct OutTiles {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the tiles write disjoint ranges (see `tiled`), and `out` outlives the parallel loop.
unsafe impl Sync for OutTiles {}

impl OutTiles {
    fn write(&self, at: usize, values: &[f32]) {
        assert!(at + values.len() <= self.len);
        // SAFETY: in bounds (asserted); no other tile writes this range and nothing reads it meanwhile.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr.add(at), values.len()) };
    }
}

/// The interleaved 8-row tiles for Q4_K/Q6_K batches over as many rows as they cover (bit-identical to
/// the single dots); returns that count (0 where there are none: other paths, single inputs).
#[allow(clippy::too_many_arguments)]
fn kquant_tiles(
    w: &Matrix<'_>,
    r0: usize,
    r1: usize,
    xq: &[Q8KBlock],
    kb: usize,
    c0: usize,
    c1: usize,
    local: &mut [f32],
) -> usize {
    if !matches!(w.ty, GgmlType::Q4K | GgmlType::Q6K) || c1 - c0 < 2 {
        return 0;
    }
    let (q4k, x) = (w.ty == GgmlType::Q4K, &xq[c0 * kb..c1 * kb]);
    #[cfg(target_arch = "x86_64")]
    if matches!(super::isa(), super::Isa::Avx2 | super::Isa::Avx2Vnni) {
        use super::x86::tiles::{rows8_q4k, rows8_q6k, KSource};
        let step = super::x86::Step::for_isa(super::isa());
        return each_rows8(w, r0, r1, c1 - c0, local, |wr, out| match q4k {
            true => rows8_q4k(KSource::Rows(wr), x, kb, out, step),
            false => rows8_q6k(KSource::Rows(wr), x, kb, out, step),
        });
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(tier) = super::aarch64::Tier::of(super::isa()) {
        use super::aarch64::ktiles::{rows8_q4k, rows8_q6k, KSource};
        return each_rows8(w, r0, r1, c1 - c0, local, |wr, out| match q4k {
            true => rows8_q4k(KSource::Rows(wr), x, kb, out, tier),
            false => rows8_q6k(KSource::Rows(wr), x, kb, out, tier),
        });
    }
    let _ = (q4k, x, r0, r1, local);
    0
}

/// `tile(rows, out8)` on every whole group of 8 of the weight rows `r0 .. r1` against `ncols` inputs, each
/// tile's outputs put into `local` (`[ncols × rows]`); returns the rows covered.
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
fn each_rows8(
    w: &Matrix<'_>,
    r0: usize,
    r1: usize,
    ncols: usize,
    local: &mut [f32],
    mut tile: impl FnMut([&[u8]; 8], &mut [f32]),
) -> usize {
    let (rows, mut out8) = (r1 - r0, vec![0f32; ncols * 8]);
    let done = rows / 8 * 8;
    for g in (0..done).step_by(8) {
        tile(std::array::from_fn(|j| w.rows_bytes(r0 + g + j, r0 + g + j + 1)), &mut out8);
        put_rows8(local, rows, g, &out8);
    }
    done
}

/// `tile(group, out8)` on every interleaved group (`group_bytes` each) of `groups` against `ncols` inputs,
/// each tile's outputs put into `local` (`[ncols × rows]`, group `g` at rows `8g ..`).
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
fn each_group8(
    groups: &[u8],
    group_bytes: usize,
    ncols: usize,
    local: &mut [f32],
    mut tile: impl FnMut(&[u8], &mut [f32]),
) {
    let (rows, mut out8) = (groups.len() / group_bytes * 8, vec![0f32; ncols * 8]);
    for (g, group) in groups.chunks_exact(group_bytes).enumerate() {
        tile(group, &mut out8);
        put_rows8(local, rows, g * 8, &out8);
    }
}

/// Put an 8-row tile's outputs (`out8[c · 8 + j]`, row `j` against input `c`) into `local` (`[inputs ×
/// rows]`) at rows `g .. g + 8`.
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
fn put_rows8(local: &mut [f32], rows: usize, g: usize, out8: &[f32]) {
    for (ci, o) in out8.chunks_exact(8).enumerate() {
        local[ci * rows + g..ci * rows + g + 8].copy_from_slice(o);
    }
}

/// Quantized activations, each block's Σq (the offset the x86 kernels' unsigned weights carry) and scale.
struct Int8Activations<'a> {
    q: &'a [Q8Block],
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    sums: Vec<i32>,
    /// The blocks' scales side by side.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    d: Vec<f32>,
    /// Blocks per row.
    kb: usize,
}

impl<'a> Int8Activations<'a> {
    fn new(q: &'a [Q8Block], kb: usize) -> Self {
        // Only the x86 kernels read the block sums and the side-by-side scales.
        let x86 = cfg!(target_arch = "x86_64");
        let sums = if x86 { super::scalar::block_sums(q) } else { Vec::new() };
        let d = if x86 { q.iter().map(|b| b.d).collect() } else { Vec::new() };
        Int8Activations { q, sums, d, kb }
    }

    fn row(&self, i: usize) -> &'a [Q8Block] {
        &self.q[i * self.kb..(i + 1) * self.kb]
    }
}

/// `local[(i - c0) × rows + (r - r0)] = w[r] · x[i]` for a Q8_0/Q4_0 weight tile.
fn int8_tile(w: &Matrix<'_>, r0: usize, r1: usize, xs: &Int8Activations<'_>, c0: usize, c1: usize, local: &mut [f32]) {
    if let Some(packed) = w.repacked() {
        return int8_x8_tile(w, packed, r0, r1, xs, c0, c1, local);
    }
    let rows = r1 - r0;
    let done = match super::isa() {
        #[cfg(target_arch = "x86_64")]
        super::Isa::Avx2 | super::Isa::Avx2Vnni => avx2_tiles(w, r0, r1, xs, c0, c1, local),
        #[cfg(target_arch = "aarch64")]
        super::Isa::I8mm => i8mm_tiles(w, r0, r1, xs, c0, c1, local),
        _ => 0,
    };
    // Rows the tiles left (all of them on other paths): one dot per pair.
    for r in r0 + done..r1 {
        let wrow = w.rows_bytes(r, r + 1);
        for (ci, i) in (c0..c1).enumerate() {
            local[ci * rows + (r - r0)] = match w.ty {
                GgmlType::Q8_0 => super::dot_q8_0(wrow, xs.row(i)),
                _ => super::dot_q4_0(wrow, xs.row(i)),
            };
        }
    }
}

/// [`int8_tile`] for a Q4_0 or Q8_0 weight with its repacked rows attached: one input row runs the interleaved
/// kernel on whole groups (the tiles' rows start at multiples of [`ROW_BLOCK`] and the matrix has whole
/// groups); batches take the 8-row tiles straight from the groups on x86 and aarch64, and elsewhere put the
/// groups back into rows for the row kernels, so the original rows are never read either way.
#[allow(clippy::too_many_arguments)]
fn int8_x8_tile(
    w: &Matrix<'_>,
    packed: &[u8],
    r0: usize,
    r1: usize,
    xs: &Int8Activations<'_>,
    c0: usize,
    c1: usize,
    local: &mut [f32],
) {
    use super::interleaved::{deinterleave_x8, X8_ROWS};
    assert!(r0.is_multiple_of(X8_ROWS) && r1.is_multiple_of(X8_ROWS), "{}: tiles of whole groups", w.name);
    let (kb, rb) = (xs.kb, w.row_bytes());
    let groups = &packed[r0 * rb..r1 * rb];
    if c1 - c0 == 1 {
        let x = xs.row(c0);
        match super::isa() {
            #[cfg(target_arch = "x86_64")]
            super::Isa::Avx2 | super::Isa::Avx2Vnni => {
                let sums = &xs.sums[c0 * kb..(c0 + 1) * kb];
                let step = super::x86::Step::for_isa(super::isa());
                super::x86::interleaved::gemv_int8_x8(w.ty, groups, x, sums, kb, local, step)
            }
            #[cfg(target_arch = "aarch64")]
            isa @ (super::Isa::Neon | super::Isa::Dotprod | super::Isa::I8mm) => {
                use super::aarch64::interleaved::{gemv_int8_x8, Tier};
                let tier = Tier::of(isa).expect("an aarch64 path");
                gemv_int8_x8(w.ty, groups, x, kb, local, tier)
            }
            _ => super::interleaved::gemv_int8_x8(w.ty, groups, x, kb, local),
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if matches!(super::isa(), super::Isa::Avx2 | super::Isa::Avx2Vnni) {
        use super::x86::tiles::IntWeights;
        let step = super::x86::Step::for_isa(super::isa());
        let ty = if w.ty == GgmlType::Q8_0 { IntWeights::Q8_0 } else { IntWeights::Q4_0 };
        let (x, sums) = (&xs.q[c0 * kb..c1 * kb], &xs.sums[c0 * kb..c1 * kb]);
        return each_group8(groups, X8_ROWS * rb, c1 - c0, local, |group, out| {
            super::x86::tiles::packed8(ty, group, x, sums, kb, out, step)
        });
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(tier) = super::aarch64::Tier::of(super::isa()) {
        use super::aarch64::interleaved::{packed8, packed8_paired, pair_inputs, Tier};
        let x = &xs.q[c0 * kb..c1 * kb];
        // i8mm: the inputs paired into smmla's operand order once for every group of the tile.
        let pairs = if tier == Tier::I8mm { pair_inputs(x, kb) } else { Vec::new() };
        return each_group8(groups, X8_ROWS * rb, c1 - c0, local, |group, out| match tier {
            Tier::I8mm => packed8_paired(w.ty, group, x, &pairs, kb, out),
            _ => packed8(w.ty, group, x, kb, out, tier),
        });
    }
    let mut rows = vec![0u8; groups.len()];
    for (g, r) in groups.chunks_exact(X8_ROWS * rb).zip(rows.chunks_exact_mut(X8_ROWS * rb)) {
        deinterleave_x8(w.ty, g, kb, r);
    }
    let plain = Matrix::from_bytes(w.name, w.ty, r1 - r0, w.cols, &rows).expect("same shape as the tile's rows");
    int8_tile(&plain, 0, r1 - r0, xs, c0, c1, local);
}

/// The K-quant tile of a Q4_K or Q6_K weight with its repacked rows attached (like [`int8_x8_tile`]): one
/// input row runs the interleaved kernel, batches the 8-row tiles straight from the groups on x86 and
/// aarch64, and elsewhere the row dots on groups put back into rows.
#[allow(clippy::too_many_arguments)]
fn k_x8_tile(
    w: &Matrix<'_>,
    packed: &[u8],
    r0: usize,
    r1: usize,
    xq: &[Q8KBlock],
    kb: usize,
    c0: usize,
    c1: usize,
    local: &mut [f32],
) {
    use super::interleaved::{deinterleave_x8, X8_ROWS};
    assert!(matches!(w.ty, GgmlType::Q4K | GgmlType::Q6K), "{}: no interleaved K-quant layout", w.name);
    assert!(r0.is_multiple_of(X8_ROWS) && r1.is_multiple_of(X8_ROWS), "{}: tiles of whole groups", w.name);
    let rb = w.row_bytes();
    let groups = &packed[r0 * rb..r1 * rb];
    let (ncols, rows, q4k) = (c1 - c0, r1 - r0, w.ty == GgmlType::Q4K);
    let x = &xq[c0 * kb..c1 * kb];
    #[cfg(target_arch = "x86_64")]
    if matches!(super::isa(), super::Isa::Avx2 | super::Isa::Avx2Vnni) {
        use super::x86::tiles::{rows8_q4k, rows8_q6k, KSource};
        let step = super::x86::Step::for_isa(super::isa());
        if ncols == 1 {
            return super::x86::interleaved::gemv_k_x8(w.ty, groups, x, kb, local, step);
        }
        return each_group8(groups, X8_ROWS * rb, ncols, local, |group, out| match q4k {
            true => rows8_q4k(KSource::Packed(group), x, kb, out, step),
            false => rows8_q6k(KSource::Packed(group), x, kb, out, step),
        });
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(tier) = super::aarch64::Tier::of(super::isa()) {
        use super::aarch64::ktiles::{gemv_k_x8, rows8_q4k, rows8_q6k, KSource};
        if ncols == 1 {
            return gemv_k_x8(w.ty, groups, x, kb, local, tier);
        }
        return each_group8(groups, X8_ROWS * rb, ncols, local, |group, out| match q4k {
            true => rows8_q4k(KSource::Packed(group), x, kb, out, tier),
            false => rows8_q6k(KSource::Packed(group), x, kb, out, tier),
        });
    }
    if ncols == 1 {
        return super::interleaved::gemv_k_x8(w.ty, groups, x, kb, local);
    }
    let mut plain = vec![0u8; groups.len()];
    for (g, r) in groups.chunks_exact(X8_ROWS * rb).zip(plain.chunks_exact_mut(X8_ROWS * rb)) {
        deinterleave_x8(w.ty, g, kb, r);
    }
    let dot = if w.ty == GgmlType::Q4K { super::dot_q4_k } else { super::dot_q6_k };
    for r in 0..rows {
        for ci in 0..ncols {
            local[ci * rows + r] = dot(&plain[r * rb..(r + 1) * rb], &x[ci * kb..(ci + 1) * kb]);
        }
    }
}

/// The i8mm 2×2 tiles (two weight rows × two input rows per `smmla` pass) over as many rows as they
/// cover; returns that count. An odd last input row goes through the single dot.
#[cfg(target_arch = "aarch64")]
fn i8mm_tiles(
    w: &Matrix<'_>,
    r0: usize,
    r1: usize,
    xs: &Int8Activations<'_>,
    c0: usize,
    c1: usize,
    local: &mut [f32],
) -> usize {
    use super::aarch64::{tile_q4_0_i8mm, tile_q8_0_i8mm};
    let rows = r1 - r0;
    let full = rows / 2 * 2;
    let tile = if w.ty == GgmlType::Q8_0 { tile_q8_0_i8mm } else { tile_q4_0_i8mm };
    for g in (0..full).step_by(2) {
        let (wa, wb) = (w.rows_bytes(r0 + g, r0 + g + 1), w.rows_bytes(r0 + g + 1, r0 + g + 2));
        let mut i = c0;
        while i + 1 < c1 {
            let [aa, ab, ba, bb] = tile(wa, wb, xs.row(i), xs.row(i + 1));
            let (ci, cj) = (i - c0, i + 1 - c0);
            local[ci * rows + g] = aa;
            local[cj * rows + g] = ab;
            local[ci * rows + g + 1] = ba;
            local[cj * rows + g + 1] = bb;
            i += 2;
        }
        if i < c1 {
            let dot = if w.ty == GgmlType::Q8_0 { super::dot_q8_0 } else { super::dot_q4_0 };
            local[(i - c0) * rows + g] = dot(wa, xs.row(i));
            local[(i - c0) * rows + g + 1] = dot(wb, xs.row(i));
        }
    }
    full
}

/// The AVX2 tiles over as many rows as they cover; returns that count.
#[cfg(target_arch = "x86_64")]
fn avx2_tiles(
    w: &Matrix<'_>,
    r0: usize,
    r1: usize,
    xs: &Int8Activations<'_>,
    c0: usize,
    c1: usize,
    local: &mut [f32],
) -> usize {
    use super::x86::tiles::{row1, rows8, IntWeights};
    let ty = if w.ty == GgmlType::Q8_0 { IntWeights::Q8_0 } else { IntWeights::Q4_0 };
    let (rows, kb) = (r1 - r0, xs.kb);
    let row = |r: usize| w.rows_bytes(r, r + 1);
    let step = super::x86::Step::for_isa(super::isa());
    if c1 - c0 == 1 {
        let (x, sums, d) = (xs.row(c0), &xs.sums[c0 * kb..(c0 + 1) * kb], &xs.d[c0 * kb..(c0 + 1) * kb]);
        for (r, o) in local.iter_mut().enumerate() {
            *o = row1(ty, row(r0 + r), x, d, sums, kb, step);
        }
        return rows;
    }
    let ncols = c1 - c0;
    let (x, sums) = (&xs.q[c0 * kb..c1 * kb], &xs.sums[c0 * kb..c1 * kb]);
    // Groups of 8 interleaved rows; the rest (fewer than 8) take the single dots.
    let eights = rows / 8 * 8;
    let mut out = vec![0f32; ncols * 8];
    for g in (0..eights).step_by(8) {
        rows8(ty, std::array::from_fn(|j| row(r0 + g + j)), x, sums, kb, &mut out, step);
        put_rows8(local, rows, g, &out);
    }
    eights
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::kernels::{kquants, scalar};
    use crate::quant;

    fn weights(rng: &mut SmallRng, ty: GgmlType, m: usize, k: usize) -> Vec<u8> {
        let wf: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut bytes = vec![0u8; ty.row_size(k).unwrap() * m];
        quant::quantize_rows(ty, &wf, k, &mut bytes).unwrap();
        bytes
    }

    /// Whatever the path (tiles, i8mm, single dots) and however the work is split, every output equals
    /// the scalar reference dot of its (weight row, input row) pair bit for bit (single Q8_0/Q4_0 inputs:
    /// within the bound of a reordered float sum, see inside): row counts that leave
    /// remainders for the 8-, 4- and 2-row tiles, input counts that are odd or span several chunks.
    #[test]
    fn integer_matmul_equals_scalar_dots_bit_for_bit() {
        let mut rng = SmallRng::seed_from_u64(9);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
            // 9 blocks of 32: one full 8-block step of the single-row kernels and a tail.
            let k = if ty.block_size() == 256 { 512 } else { 288 };
            for (m, n) in [(1usize, 1usize), (37, 1), (70, 3), (13, 67), (8, 2)] {
                let bytes = weights(&mut rng, ty, m, k);
                let w = Matrix::from_bytes("w", ty, m, k, &bytes).unwrap();
                let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
                let mut out = vec![0f32; n * m];
                matmul(&x, n, &w, &mut out).unwrap();
                for i in 0..n {
                    let xi = &x[i * k..(i + 1) * k];
                    for r in 0..m {
                        let wr = w.rows_bytes(r, r + 1);
                        let want = match ty {
                            GgmlType::Q8_0 => scalar::dot_q8_0(wr, &quantize_q8_0_activations(xi)),
                            GgmlType::Q4_0 => scalar::dot_q4_0(wr, &quantize_q8_0_activations(xi)),
                            GgmlType::Q4K => kquants::dot_q4_k(wr, &quantize_q8_k_activations(xi)),
                            GgmlType::Q5K => kquants::dot_q5_k(wr, &quantize_q8_k_activations(xi)),
                            _ => kquants::dot_q6_k(wr, &quantize_q8_k_activations(xi)),
                        };
                        let got = out[i * m + r];
                        if n == 1 && matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0) {
                            // Single-input Q8_0/Q4_0 rows may add their block products in 8 lanes (x86
                            // row1): two orders of kb sums, each within (kb − 1)·2⁻²⁴·Σ|p_b| of the exact.
                            let xq = quantize_q8_0_activations(xi);
                            let mag = scalar::dot_magnitude(wr, &xq, ty == GgmlType::Q4_0);
                            let bound = 2.0 * (k / 32) as f64 * 2f64.powi(-24) * mag;
                            let diff = (got as f64 - want as f64).abs();
                            assert!(diff <= bound, "{ty} m={m} n={n} row {r}: {got} vs {want} (bound {bound})");
                            continue;
                        }
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{ty} m={m} n={n} row {r} input {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// A Q4_0, Q8_0, Q4_K or Q6_K weight with its repacked rows attached gives the scalar row dots bit for bit, one
    /// input row (the interleaved kernels) or several (the 8-row tiles on the groups, or rows put back),
    /// alone or sharing its input, whole matrices and row slices.
    #[test]
    fn repacked_weights_equal_scalar_dots_bit_for_bit() {
        use crate::kernels::interleaved::interleave_x8;
        let mut rng = SmallRng::seed_from_u64(16);
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K] {
            let (m, k) = (136usize, if ty.block_size() == 256 { 512 } else { 288 });
            let kb = k / ty.block_size();
            let bytes = weights(&mut rng, ty, m, k);
            let group = 8 * kb * ty.type_size();
            let mut packed = vec![0u8; bytes.len()];
            for (src, dst) in bytes.chunks(group).zip(packed.chunks_mut(group)) {
                interleave_x8(ty, src, kb, dst);
            }
            let full = Matrix::from_bytes("w", ty, m, k, &bytes).unwrap().with_repacked(&packed).unwrap();
            let scalar_dot = |r: usize, xi: &[f32]| match ty {
                GgmlType::Q4K => kquants::dot_q4_k(full.rows_bytes(r, r + 1), &quantize_q8_k_activations(xi)),
                GgmlType::Q6K => kquants::dot_q6_k(full.rows_bytes(r, r + 1), &quantize_q8_k_activations(xi)),
                GgmlType::Q8_0 => scalar::dot_q8_0(full.rows_bytes(r, r + 1), &quantize_q8_0_activations(xi)),
                _ => scalar::dot_q4_0(full.rows_bytes(r, r + 1), &quantize_q8_0_activations(xi)),
            };
            for (r0, r1) in [(0usize, m), (16, 80)] {
                let w = full.slice_rows(r0, r1);
                assert!(w.repacked().is_some(), "whole groups keep the repacked rows");
                let rows = r1 - r0;
                for n in [1usize, 2, 67] {
                    let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
                    let mut out = vec![0f32; n * rows];
                    matmul(&x, n, &w, &mut out).unwrap();
                    let mut shared = vec![0f32; n * rows];
                    matmul_shared(&x, n, &[&w], &mut [&mut shared]).unwrap();
                    for i in 0..n {
                        for r in 0..rows {
                            let want = scalar_dot(r0 + r, &x[i * k..(i + 1) * k]);
                            let (got, sh) = (out[i * rows + r], shared[i * rows + r]);
                            assert_eq!(got.to_bits(), want.to_bits(), "{ty} rows {r0}..{r1} n={n} row {r} input {i}");
                            assert_eq!(sh.to_bits(), want.to_bits(), "{ty} shared n={n} row {r} input {i}");
                        }
                    }
                }
            }
            assert!(full.slice_rows(4, 20).repacked().is_none(), "a slice across groups falls back to the rows");
        }
        let k = 288;
        let q5 = weights(&mut rng, GgmlType::Q5_0, 8, k);
        let q5 = Matrix::from_bytes("q5", GgmlType::Q5_0, 8, k, &q5).unwrap();
        let same_size = vec![0u8; q5.data.len()];
        assert!(q5.with_repacked(&same_size).is_err(), "Q5_0 has no repacked layout");
    }

    /// Weights sharing an input give what separate products give, bit for bit: one input row (one
    /// parallel loop over all of them) and several (one product each), integer and K-quant formats, and a
    /// mix of formats (separate products).
    #[test]
    fn shared_input_matmul_equals_separate_ones() {
        let mut rng = SmallRng::seed_from_u64(15);
        for tys in [
            [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_0],
            [GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q5K],
            [GgmlType::Q4_0, GgmlType::Q6K, GgmlType::F16],
        ] {
            let k = 512;
            let ms = [70usize, 9, 130];
            let bytes: Vec<Vec<u8>> = tys.iter().zip(ms).map(|(&t, m)| weights(&mut rng, t, m, k)).collect();
            let ws: Vec<Matrix<'_>> =
                (0..3).map(|j| Matrix::from_bytes("w", tys[j], ms[j], k, &bytes[j]).unwrap()).collect();
            for n in [1usize, 3] {
                let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
                let mut shared: Vec<Vec<f32>> = ms.iter().map(|&m| vec![0f32; n * m]).collect();
                {
                    let mut outs: Vec<&mut [f32]> = shared.iter_mut().map(|o| o.as_mut_slice()).collect();
                    let wr: Vec<&Matrix<'_>> = ws.iter().collect();
                    matmul_shared(&x, n, &wr, &mut outs).unwrap();
                }
                for j in 0..3 {
                    let mut alone = vec![0f32; n * ms[j]];
                    matmul(&x, n, &ws[j], &mut alone).unwrap();
                    let same = alone.iter().zip(&shared[j]).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{:?} n={n} weight {j}", tys);
                }
            }
        }
    }

    /// Float weights (f32, f16 — one input row and several): f32 dots of k products, each within
    /// k·2⁻²⁴·Σ|w·x| of the exact sum (two different summation orders: twice that).
    #[test]
    fn float_matmul_matches_f64_within_rounding() {
        let mut rng = SmallRng::seed_from_u64(10);
        for ty in [GgmlType::F32, GgmlType::F16] {
            let (m, k) = (70usize, 100usize);
            let bytes = weights(&mut rng, ty, m, k);
            let w = Matrix::from_bytes("w", ty, m, k, &bytes).unwrap();
            let mut wf = Vec::new();
            w.rows_f32(0, m, &mut wf).unwrap();
            for n in [1usize, 5] {
                let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
                let mut out = vec![0f32; n * m];
                matmul(&x, n, &w, &mut out).unwrap();
                for i in 0..n {
                    for r in 0..m {
                        let (xi, wr) = (&x[i * k..(i + 1) * k], &wf[r * k..(r + 1) * k]);
                        let exact: f64 = xi.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
                        let mag: f64 = xi.iter().zip(wr).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                        let bound = 2.0 * k as f64 * 2f64.powi(-24) * mag;
                        let got = out[i * m + r] as f64;
                        assert!((got - exact).abs() <= bound, "{ty} n={n} row {r}: {got} vs {exact} (bound {bound})");
                    }
                }
            }
        }
    }
}
