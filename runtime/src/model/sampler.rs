//! Choosing the next token: greedy, or temperature sampling after repetition penalty, top-k, top-p and
//! min-p filtering, from a seeded generator so runs are reproducible.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// 0 = greedy (argmax; the reference default: generation_config.json is empty).
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1.0 = off).
    pub top_p: f32,
    /// Drop tokens below `min_p ×` the top probability (0 = off).
    pub min_p: f32,
    /// > 1 discourages tokens already generated or in the prompt (CTRL-style, as transformers does).
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, seed: 0 }
    }
}

#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    rng: SmallRng,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Sampler {
        let rng = SmallRng::seed_from_u64(config.seed);
        Sampler { config, rng }
    }

    /// Pick the next token from `logits`; `history` holds the ids the repetition penalty applies to.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let c = &self.config;
        if c.repetition_penalty != 1.0 {
            let mut seen = vec![false; logits.len()];
            for &id in history {
                if let Some(s) = seen.get_mut(id as usize) {
                    *s = true;
                }
            }
            for (l, _) in logits.iter_mut().zip(&seen).filter(|(_, s)| **s) {
                *l = if *l > 0.0 { *l / c.repetition_penalty } else { *l * c.repetition_penalty };
            }
        }
        if c.temperature <= 0.0 {
            return argmax(logits);
        }
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l / c.temperature))
            .collect();
        if cand.is_empty() {
            return argmax(logits);
        }
        // Ties keep the lower id first, so the order (and the draw) is deterministic.
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if c.top_k > 0 {
            cand.truncate(c.top_k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|(_, l)| (l - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        let mut keep = probs.len();
        if c.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= c.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if c.min_p > 0.0 {
            let floor = probs[0] * c.min_p;
            keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
        }
        let probs = &probs[..keep];
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.gen::<f32>() * total;
        for (i, p) in probs.iter().enumerate() {
            if r < *p {
                return cand[i].0;
            }
            r -= p;
        }
        cand[keep - 1].0
    }
}

/// Index of the largest logit; the first one on ties (as `torch.argmax`).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplerConfig::default());
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut s = Sampler::new(SamplerConfig { repetition_penalty: 2.0, ..Default::default() });
        assert_eq!(s.sample(&mut [2.0, 1.5], &[0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seeds_reproduce() {
        let cfg = SamplerConfig { temperature: 1.0, top_k: 1, ..Default::default() };
        assert_eq!(Sampler::new(cfg).sample(&mut [0.0, 5.0, 1.0], &[]), 1);
        let cfg = SamplerConfig { temperature: 1.0, seed: 7, ..Default::default() };
        let draws = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone());
            (0..20).map(|_| s.sample(&mut [1.0, 1.1, 0.9, 1.05], &[])).collect::<Vec<_>>()
        };
        assert_eq!(draws(&cfg), draws(&cfg));
    }

    #[test]
    fn min_p_and_top_p_cut_the_tail() {
        let mut logits = [10.0, 0.0, 0.0];
        let cfg = SamplerConfig { temperature: 1.0, min_p: 0.1, seed: 3, ..Default::default() };
        let mut s = Sampler::new(cfg);
        assert!((0..50).all(|_| s.sample(&mut logits.clone(), &[]) == 0));
        let cfg = SamplerConfig { temperature: 1.0, top_p: 0.5, seed: 3, ..Default::default() };
        let mut s = Sampler::new(cfg);
        assert!((0..50).all(|_| s.sample(&mut logits, &[]) == 0));
    }
}
