//! `sail-edge describe`: images (or video frames) + a question → the answer, streamed to stdout; timings to
//! stderr. One session on one engine.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use runtime::engine::{AskOptions, TurnTimings};

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
    let engine = a.model.open_engine(a.input.max_tiles)?;
    let mut session = engine.session();
    session.set_sampling(sampler_config);
    let question = a.input.load_into(&mut session)?;
    let mut out = std::io::stdout().lock();
    let options = AskOptions { max_tokens: a.max_tokens, think: a.input.think, ..AskOptions::default() };
    session.ask_with(&question, &options, |piece| {
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
        true
    })?;
    let _ = writeln!(out);
    report_timings(&session.last_timings());
    report_expert_stats(engine.vlm(), verbose);
    Ok(())
}

/// llama.cpp-style timing lines on stderr.
pub fn report_timings(t: &TurnTimings) {
    let rate = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    if t.tiles > 0 {
        let cached =
            if t.tiles_cached > 0 { format!(", {} from the feature cache", t.tiles_cached) } else { String::new() };
        eprintln!(
            "image encode: {} tiles in {:.0} ms ({:.0} ms per tile{cached})",
            t.tiles,
            ms(t.encode),
            ms(t.encode) / t.tiles as f64
        );
    }
    let reused = t.prompt_tokens - t.prefilled_tokens.min(t.prompt_tokens);
    let reused = if reused > 0 { format!(", {reused} reused") } else { String::new() };
    eprintln!(
        "prompt: {} tokens in {:.0} ms ({:.1} tokens/s{reused})",
        t.prompt_tokens,
        ms(t.prefill),
        rate(t.prefilled_tokens, t.prefill)
    );
    eprintln!(
        "generation: {} tokens in {:.0} ms ({:.1} tokens/s)",
        t.generated,
        ms(t.decode),
        rate(t.generated, t.decode)
    );
}
