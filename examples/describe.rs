//! The library in ~30 lines: open an engine, start a session, add an image, stream the answer.
//! `cargo run --release --example describe -- -m MODEL --mmproj MMPROJ --image IMG -p QUESTION -n N`
//! prints on stdout what `sail-edge describe` prints for the same arguments (greedy).

use std::io::Write;
use std::sync::Arc;

use clap::Parser;
use runtime::engine::{AskOptions, Engine, EngineOptions};

#[derive(Parser)]
struct Args {
    #[arg(short = 'm')]
    model: std::path::PathBuf,
    #[arg(long)]
    mmproj: Option<std::path::PathBuf>,
    #[arg(long)]
    image: Vec<std::path::PathBuf>,
    #[arg(short = 'p', default_value = "Describe this image.")]
    prompt: String,
    #[arg(short = 'n', default_value_t = 512)]
    n: usize,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let engine = Arc::new(Engine::open(EngineOptions { mmproj: a.mmproj, ..EngineOptions::new(a.model) })?);
    let mut session = engine.session();
    for image in &a.image {
        session.add_image_path(image)?;
    }
    let mut out = std::io::stdout().lock();
    session.ask_with(&a.prompt, &AskOptions { max_tokens: a.n, ..AskOptions::default() }, |piece| {
        out.write_all(piece.as_bytes()).is_ok() && out.flush().is_ok()
    })?;
    writeln!(out)?;
    Ok(())
}
