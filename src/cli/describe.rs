//! `sail-edge describe`: images (or video frames) + a question → the answer, streamed to stdout; timings to
//! stderr.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use runtime::model::decoder::Logits;
use runtime::model::sampler::Sampler;
use runtime::pipeline::Vlm;

use super::infer::{report_expert_stats, InputArgs, ModelArgs, SamplingArgs};

#[derive(Args, Debug)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Most tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(a: DescribeArgs, verbose: u8) -> Result<()> {
    let sampler_config = a.sampling.config()?;
    let files = a.model.open()?;
    a.model.with_threads(|| {
        let load = Instant::now();
        let vlm = Vlm::load_with(&files, &a.model.load_options()).context("loading the model")?;
        eprintln!("load: {:.0} ms", load.elapsed().as_secs_f64() * 1e3);
        let input = a.input.prepare(&vlm)?;

        let enc = input.encode(&vlm, a.input.system.as_deref(), a.input.think)?;
        let ids = &enc.ids;
        let t = Instant::now();
        let (logits, mut cache) = vlm.prefill(ids, &enc.embeddings, Logits::Last)?;
        let prefill = t.elapsed();

        let mut out = std::io::stdout().lock();
        let mut sampler = Sampler::new(sampler_config.clone());
        let gen = vlm.generate(ids, logits, &mut cache, &mut sampler, a.max_tokens, &mut |text| {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            true
        })?;
        let _ = writeln!(out);
        report_timings(&enc.per_tile, ids.len(), prefill, gen.ids.len(), gen.elapsed);
        report_expert_stats(&vlm, verbose);
        Ok(())
    })
}

/// llama.cpp-style timing lines on stderr.
pub fn report_timings(
    per_tile: &[Duration],
    prompt_tokens: usize,
    prefill: Duration,
    generated: usize,
    generation: Duration,
) {
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    if !per_tile.is_empty() {
        let total: Duration = per_tile.iter().sum();
        eprintln!(
            "image encode: {} tiles in {:.0} ms ({:.0} ms per tile)",
            per_tile.len(),
            total.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3 / per_tile.len() as f64
        );
    }
    eprintln!(
        "prompt: {prompt_tokens} tokens in {:.0} ms ({:.1} tokens/s)",
        prefill.as_secs_f64() * 1e3,
        rate(prompt_tokens, prefill)
    );
    eprintln!(
        "generation: {generated} tokens in {:.0} ms ({:.1} tokens/s)",
        generation.as_secs_f64() * 1e3,
        rate(generated, generation)
    );
}
