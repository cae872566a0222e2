//! `sail-edge chat`: an interactive conversation. `/image PATH` attaches an image to the next question,
//! `/clear` starts over, `/quit` leaves. The conversation stays in the KV cache between turns.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use clap::Args;
use runtime::image::{load_rgb, preprocess};
use runtime::model::decoder::Logits;
use runtime::model::sampler::Sampler;
use runtime::pipeline::Vlm;

use super::infer::{report_expert_stats, ModelArgs, SamplingArgs};

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Most tokens per answer.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    pub max_tokens: usize,
    /// Replace the default system prompt.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(a: ChatArgs, verbose: u8) -> Result<()> {
    let sampler_config = a.sampling.config()?;
    let files = a.model.open()?;
    a.model.with_threads(|| {
        let vlm = Vlm::load_with(&files, &a.model.load_options()).context("loading the model")?;
        let mut sampler = Sampler::new(sampler_config.clone());
        let mut cache = vlm.decoder.new_cache();
        let mut history: Vec<u32> = Vec::new();
        let mut pending = Vec::new();
        let stdin = std::io::stdin();
        let mut out = std::io::stdout();
        eprintln!("chat: /image PATH attaches an image, /clear starts over, /quit leaves");
        loop {
            eprint!("> ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            if stdin.lock().read_line(&mut line)? == 0 {
                break;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line == "/quit" || line == "/exit" {
                break;
            }
            if line == "/clear" {
                cache.clear();
                history.clear();
                pending.clear();
                eprintln!("(conversation cleared)");
                continue;
            }
            if let Some(path) = line.strip_prefix("/image ") {
                let Some(vision) = &vlm.vision else {
                    eprintln!("error: this model has no vision file (pass --mmproj)");
                    continue;
                };
                match load_rgb(path.trim()).and_then(|img| preprocess(&img, &vision.preprocess)) {
                    Ok(t) => {
                        eprintln!("(image attached: {} tiles)", t.num_tiles);
                        pending.push(t);
                    }
                    Err(e) => eprintln!("error: {e}"),
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let mut embeddings = Vec::new();
            for t in &pending {
                embeddings.extend(vlm.encode_tiles(t)?.embeddings);
            }
            let counts: Vec<usize> = pending.iter().map(|t| t.num_tiles).collect();
            let text = if history.is_empty() {
                vlm.prompt_text(line, counts.len(), a.system.as_deref(), false)
            } else {
                // Continue after the previous answer: close it, then a new user turn.
                let q = if counts.is_empty() || line.contains("<image>") {
                    line.to_string()
                } else {
                    format!("{}{line}", "<image>\n".repeat(counts.len()))
                };
                format!("<|im_end|><|im_start|>user\n{q}<|im_end|><|im_start|>assistant\n")
            };
            let ids = vlm.prompt_ids(&text, &counts)?;
            pending.clear();
            let logits = match vlm.extend(&ids, &embeddings, &mut cache, Logits::Last) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}; use /clear to start over");
                    continue;
                }
            };
            history.extend(&ids);
            let gen = vlm.generate(&history, logits, &mut cache, &mut sampler, a.max_tokens, &mut |piece| {
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
                true
            })?;
            history.extend(&gen.ids);
            // The cache holds every generated token but the last one; feed it so the next turn follows.
            if let Some(&last) = gen.ids.last() {
                let x = vlm.decoder.embed(&[last])?;
                if cache.len() < history.len() {
                    vlm.decoder.forward(x, &mut cache, Logits::Last)?;
                }
            }
            writeln!(out)?;
            report_expert_stats(&vlm, verbose);
        }
        Ok(())
    })
}
