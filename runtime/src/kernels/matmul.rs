//! Linear layers: `out = x · wᵀ` over memory-mapped weights of any supported type.

use rayon::prelude::*;

use super::scalar::{quantize_q8_0_activations, Q8Block};
use crate::tensor::{Matrix, WeightError};
use crate::GgmlType;

/// Weight rows converted per work item: bounds the f32 scratch to rows × cols × 4 bytes.
const ROW_BLOCK: usize = 64;

/// `out[n × w.rows] = x[n × w.cols] · wᵀ`: a linear layer without bias.
///
/// Q8_0 and Q4_0 weights take ggml's integer path: activations are quantized to Q8_0 blocks and each
/// block contributes `d_w · d_x · Σ q_w q_x`, so results agree with llama.cpp to float rounding. Other types
/// are converted to f32 one block of rows at a time, reused for every input row.
pub fn matmul(x: &[f32], n: usize, w: &Matrix<'_>, out: &mut [f32]) -> Result<(), WeightError> {
    let (k, m) = (w.cols, w.rows);
    assert_eq!(x.len(), n * k, "matmul input for {}", w.name);
    assert_eq!(out.len(), n * m, "matmul output for {}", w.name);
    let int8 = matches!(w.ty, GgmlType::Q8_0 | GgmlType::Q4_0);
    let xq: Vec<Q8Block> = if int8 { x.chunks(k).flat_map(quantize_q8_0_activations).collect() } else { Vec::new() };
    let blocks_per_row = k / 32;
    let blocks: Vec<(usize, Vec<f32>)> = (0..m.div_ceil(ROW_BLOCK))
        .into_par_iter()
        .map(|b| {
            let (r0, r1) = (b * ROW_BLOCK, ((b + 1) * ROW_BLOCK).min(m));
            let mut local = vec![0f32; n * (r1 - r0)];
            if int8 {
                for (j, r) in (r0..r1).enumerate() {
                    let wrow = w.rows_bytes(r, r + 1);
                    for i in 0..n {
                        let xrow = &xq[i * blocks_per_row..(i + 1) * blocks_per_row];
                        local[i * (r1 - r0) + j] = match w.ty {
                            GgmlType::Q8_0 => super::dot_q8_0(wrow, xrow),
                            _ => super::dot_q4_0(wrow, xrow),
                        };
                    }
                }
            } else {
                let mut wf = Vec::new();
                w.rows_f32(r0, r1, &mut wf)?;
                for i in 0..n {
                    let xi = &x[i * k..(i + 1) * k];
                    for (j, r) in (r0..r1).enumerate() {
                        local[i * (r1 - r0) + j] = super::dot(xi, &wf[(r - r0) * k..(r - r0 + 1) * k]);
                    }
                }
            }
            Ok((r0, local))
        })
        .collect::<Result<_, WeightError>>()?;
    for (r0, local) in blocks {
        let width = local.len() / n.max(1);
        for i in 0..n {
            out[i * m + r0..i * m + r0 + width].copy_from_slice(&local[i * width..(i + 1) * width]);
        }
    }
    Ok(())
}
