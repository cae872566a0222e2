//! scene-describer: a camera in, a caption out each time the scene changes: on stdout and, when given, on a
//! serial port (an LED sign, a microcontroller, a logger). The same loop as `sail-edge watch --on-change`,
//! written against the libraries.
//!
//! ```text
//! cargo run --release --example scene-describer -- -m model.gguf --source camera:/dev/video0 --serial /dev/ttyUSB0
//! rpicam-vid -t 0 --codec mjpeg -o - | scene-describer -m model.gguf --source stdin:mjpeg
//! scene-describer -m model.gguf --source pattern --max-updates 3
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use live::{Capture, GateConfig, Pace, SourceSpec, WatchOptions, Watcher};
use runtime::engine::{Engine, EngineOptions};

#[derive(Parser)]
#[command(about = "Describe the scene a camera sees, each time it changes")]
struct Args {
    /// Language-model GGUF (the mmproj-*.gguf beside it is found).
    #[arg(short, long)]
    model: PathBuf,
    /// camera:/dev/videoN, stdin:mjpeg, stdin:y4m, frames:DIR, follow:DIR, video:FILE or pattern.
    #[arg(long, default_value = "camera:0")]
    source: SourceSpec,
    /// Also write each caption to this serial port.
    #[arg(long)]
    serial: Option<PathBuf>,
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Scene-change threshold (mean luma difference of 32×32 thumbnails, 0–255).
    #[arg(long, default_value_t = 6.0)]
    gate: f32,
    #[arg(short, long, default_value = "Describe the scene in one short sentence.")]
    prompt: String,
    /// Stop after this many captions.
    #[arg(long)]
    max_updates: Option<u64>,
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let engine = Arc::new(
        Engine::open(EngineOptions { threads: args.threads, ..EngineOptions::new(&args.model) })
            .with_context(|| format!("loading {}", args.model.display()))?,
    );
    live::watch::fit_feature_cache(&engine, 1);
    let options = WatchOptions {
        gate: GateConfig { threshold: args.gate, ..GateConfig::default() },
        max_updates: args.max_updates,
        ..WatchOptions::new(args.prompt)
    };
    let mut watcher = Watcher::new(engine, options)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, cancel) = (stop.clone(), watcher.cancel_token());
    ctrlc::set_handler(move || {
        flag.store(true, Ordering::SeqCst);
        cancel.cancel();
    })?;
    let pace = if args.source.is_live() { Pace::Live } else { Pace::All };
    let capture = Capture::start(args.source, pace, 5)?;
    let serial = args.serial.as_ref().map(|p| live::serial::SerialOut::start(p, args.baud));
    let mut last = String::new();
    let summary = watcher.run(&capture, &stop, |update| {
        let caption = update.text_line();
        if caption == last {
            return;
        }
        println!("[{}] {caption}", humantime::format_rfc3339_seconds(update.t));
        if let Some(port) = &serial {
            port.send(&caption);
        }
        last = caption;
    })?;
    if let Some(port) = serial {
        port.close(std::time::Duration::from_secs(2));
    }
    eprintln!("{summary}");
    Ok(())
}
