//! `sail-edge chat`: an interactive conversation on one session. `/image PATH` attaches an image to the next
//! question, `/clear` starts over, `/quit` leaves. The conversation stays in the session's KV cache between
//! turns; a failed turn leaves the session as it was.

use std::io::{BufRead, Write};

use anyhow::Result;
use clap::Args;
use runtime::engine::AskOptions;

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
    let engine = a.model.open_engine(None)?;
    let mut session = engine.session();
    session.set_sampling(sampler_config);
    session.set_system(a.system.clone())?;
    let options = AskOptions { max_tokens: a.max_tokens, ..AskOptions::default() };
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
            session.reset();
            eprintln!("(conversation cleared)");
            continue;
        }
        if let Some(path) = line.strip_prefix("/image ") {
            let before = session.pending_tiles();
            match session.add_image_path(path.trim()) {
                Ok(()) => eprintln!("(image attached: {} tiles)", session.pending_tiles() - before),
                Err(e) => eprintln!("error: {e}"),
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let reply = session.ask_with(line, &options, |piece| {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
            true
        });
        if let Err(e) = reply {
            eprintln!("error: {e}");
            continue;
        }
        writeln!(out)?;
        report_expert_stats(engine.vlm(), verbose);
    }
    Ok(())
}
