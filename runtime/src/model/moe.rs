//! Qwen3-MoE block (spec §7.2): router logits → softmax in f32 → top-k → renormalize only when
//! `norm_topk_prob` → weighted sum of SwiGLU experts; no shared expert. Experts are rows of the stacked
//! 3-D GGUF tensors, used in place. A batch is grouped by expert, so each routed expert's weights are
//! streamed once per batch, not once per token.

use crate::backend::Linear;
use crate::gguf::names::{self, llm, tensor};
use crate::gguf::GgufFile;
use crate::kernels;
use crate::model::decoder::swiglu;
use crate::model::experts::ExpertResidency;
use crate::model::{Meta, ModelError};
use crate::tensor::{matrix, Matrix};

/// What [`MoeBlock::forward_tracked`] reports to: the shared residency, this block's layer, and the experts
/// the next layer is predicted to use (most likely first; empty for none).
#[derive(Clone, Copy)]
pub struct Tracking<'r, 'a> {
    pub residency: &'r ExpertResidency<'a>,
    pub layer: usize,
    pub next: &'r [usize],
}

pub struct MoeBlock<'a> {
    router: Matrix<'a>,
    gate: Matrix<'a>,
    up: Matrix<'a>,
    down: Matrix<'a>,
    pub n_experts: usize,
    pub n_used: usize,
    /// Expert width.
    pub ffn: usize,
    pub norm_topk: bool,
}

/// The top `k` of `probs` by value; ties go to the lower expert index (deterministic, and what
/// `torch.topk` returns on CPU for equal values in practice).
pub fn top_k(probs: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx.into_iter().map(|i| (i, probs[i])).collect()
}

/// The distinct experts of a batch's routes, in index order.
fn distinct_experts(routes: &[Vec<(usize, f32)>], n_experts: usize) -> Vec<usize> {
    let mut used = vec![false; n_experts];
    for r in routes {
        for &(e, _) in r {
            used[e] = true;
        }
    }
    (0..n_experts).filter(|&e| used[e]).collect()
}

/// Routing of one token: experts and their weights.
pub fn route(logits: &mut [f32], k: usize, normalize: bool) -> Vec<(usize, f32)> {
    kernels::softmax_in_place(logits);
    let mut chosen = top_k(logits, k);
    if normalize {
        let sum: f32 = chosen.iter().map(|(_, w)| w).sum();
        chosen.iter_mut().for_each(|(_, w)| *w /= sum);
    }
    chosen
}

impl<'a> MoeBlock<'a> {
    pub fn load(file: &'a GgufFile, layer: usize, hidden: usize) -> Result<MoeBlock<'a>, ModelError> {
        let m = Meta { file };
        let arch = m.str(names::general::ARCHITECTURE)?;
        let key = |k: &str| llm::key(arch, k);
        let path = file.path().display().to_string();
        let bad = |message: String| ModelError::Unsupported { file: path.clone(), message };
        let n_experts = m.u32(&key(llm::EXPERT_COUNT))? as usize;
        let n_used = m.u32(&key(llm::EXPERT_USED_COUNT))? as usize;
        let ffn = m.u32(&key(llm::EXPERT_FEED_FORWARD_LENGTH))? as usize;
        if n_experts == 0 || n_used == 0 || n_used > n_experts {
            return Err(bad(format!("expert_used_count {n_used} with expert_count {n_experts}")));
        }
        // llama.cpp's qwen3moe graph always renormalizes; our converter records the flag.
        let norm_topk = m.bool_or(&key(llm::EXPERT_WEIGHTS_NORM), true)?;
        let n = |s: &str| tensor::blk(layer, s);
        let stacked = |name: String, cols: usize, rows: usize| -> Result<Matrix<'a>, ModelError> {
            let info = file.tensor_info(&name)?;
            if info.dims.len() != 3 || info.dims[2] as usize != n_experts {
                return Err(bad(format!(
                    "tensor '{name}' has shape {:?}, expected [{cols}, {rows}, {n_experts}] (expert_count {n_experts})",
                    info.dims
                )));
            }
            Ok(matrix(file, &name, cols, rows * n_experts)?)
        };
        let router_name = n(tensor::FFN_GATE_INP);
        let router_dims = &file.tensor_info(&router_name)?.dims;
        if router_dims.get(1).copied() != Some(n_experts as u64) {
            return Err(bad(format!(
                "tensor '{router_name}' has shape {router_dims:?}, expected [{hidden}, {n_experts}] \
                 (expert_count {n_experts})"
            )));
        }
        Ok(MoeBlock {
            router: matrix(file, &router_name, hidden, n_experts)?,
            gate: stacked(n(tensor::FFN_GATE_EXPS), hidden, ffn)?,
            up: stacked(n(tensor::FFN_UP_EXPS), hidden, ffn)?,
            down: stacked(n(tensor::FFN_DOWN_EXPS), ffn, hidden)?,
            n_experts,
            n_used,
            ffn,
            norm_topk,
        })
    }

    /// Routing decisions for `n` rows of `x`.
    pub fn routes(&self, x: &[f32], n: usize) -> Result<Vec<Vec<(usize, f32)>>, ModelError> {
        let mut logits = vec![0f32; n * self.n_experts];
        kernels::matmul(x, n, &self.router, &mut logits)?;
        Ok(logits.chunks_mut(self.n_experts).map(|l| route(l, self.n_used, self.norm_topk)).collect())
    }

    /// The distinct experts `n` rows of `x` route to, by total routing weight (most likely first; ties:
    /// lower index). Look-ahead prefetch asks the next layer's router this on the current layer's input.
    pub fn experts_for(&self, x: &[f32], n: usize) -> Result<Vec<usize>, ModelError> {
        let mut weight = vec![0f32; self.n_experts];
        for r in self.routes(x, n)? {
            for (e, w) in r {
                weight[e] += w.max(f32::MIN_POSITIVE);
            }
        }
        let mut experts: Vec<usize> = (0..self.n_experts).filter(|&e| weight[e] > 0.0).collect();
        experts.sort_by(|&a, &b| weight[b].total_cmp(&weight[a]).then(a.cmp(&b)));
        Ok(experts)
    }

    /// `out[n × hidden]` = the weighted expert mixture for each row of `x`.
    pub fn forward(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<(), ModelError> {
        self.forward_tracked(x, n, out, None)
    }

    /// [`forward`](Self::forward), telling the residency tracker which experts the batch uses before they are
    /// computed (so that it counts them, keeps within its budget and prefetches the next layer's guesses).
    pub fn forward_tracked(
        &self,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        tracking: Option<Tracking<'_, '_>>,
    ) -> Result<(), ModelError> {
        let h = self.router.cols;
        let routes = self.routes(x, n)?;
        if let Some(t) = tracking {
            t.residency.use_experts(t.layer, &distinct_experts(&routes, self.n_experts), t.next);
        }
        out.fill(0.0);
        // Experts in index order, each over all the tokens routed to it, as the reference loops.
        for e in 0..self.n_experts {
            let users: Vec<(usize, f32)> = routes
                .iter()
                .enumerate()
                .filter_map(|(t, r)| r.iter().find(|(x, _)| *x == e).map(|(_, w)| (t, *w)))
                .collect();
            if users.is_empty() {
                continue;
            }
            let mut xs = Vec::with_capacity(users.len() * h);
            for (t, _) in &users {
                xs.extend_from_slice(&x[t * h..(t + 1) * h]);
            }
            let (f, m) = (self.ffn, users.len());
            let gate = self.gate.slice_rows(e * f, (e + 1) * f);
            let up = self.up.slice_rows(e * f, (e + 1) * f);
            let down = self.down.slice_rows(e * h, (e + 1) * h);
            let mut y = vec![0f32; m * h];
            swiglu(&Linear::cpu(), &xs, m, &gate, &up, &down, &mut y)?;
            for (k, (t, w)) in users.iter().enumerate() {
                for (o, v) in out[t * h..(t + 1) * h].iter_mut().zip(&y[k * h..(k + 1) * h]) {
                    *o += v * w;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_the_lower_expert() {
        assert_eq!(top_k(&[0.1, 0.3, 0.3, 0.3], 2), vec![(1, 0.3), (2, 0.3)]);
    }

    #[test]
    fn renormalization_only_when_asked() {
        let mut l = [0.0f32, 0.0, 0.0, 0.0];
        let r = route(&mut l, 2, false);
        assert_eq!(r, vec![(0, 0.25), (1, 0.25)]);
        let mut l = [0.0f32, 0.0, 0.0, 0.0];
        let r = route(&mut l, 2, true);
        assert_eq!(r, vec![(0, 0.5), (1, 0.5)]);
    }
}
