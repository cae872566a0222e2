//! Command-line parsing and the subcommands.

mod bench;
mod chat;
mod convert;
mod describe;
mod doctor;
mod infer;
mod info;
mod quantize;
mod trace;
mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser, Debug)]
#[command(
    name = "sail-edge",
    version,
    about = "Run SAIL-VL2 on the device: describe images, chat, convert and quantize checkpoints"
)]
pub struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Describe images or video frames: streams the answer to stdout, timings to stderr.
    Describe(describe::DescribeArgs),
    /// Talk to the model interactively (/image PATH, /clear, /quit).
    Chat(chat::ChatArgs),
    /// Write every pipeline stage as .npy files (pixel_values, vit_out, mlp1_out, input_ids, logits_last,
    /// gen_ids) to compare with the reference.
    Trace(trace::TraceArgs),
    /// Convert a Hugging Face SAIL-VL2 checkpoint folder into a language-model GGUF and an mmproj GGUF.
    Convert(convert::ConvertArgs),
    /// Re-quantize a GGUF file (language model or mmproj) into another type mix.
    Quantize(quantize::QuantizeArgs),
    /// Show a GGUF file's metadata and tensor table.
    Info(info::InfoArgs),
    /// Measure prompt and generation tokens/s like llama-bench (pp, tg), and with a vision file the image
    /// encode time and time to first token.
    Bench(bench::BenchArgs),
    /// Watch a camera, pipe, folder, video or test pattern and answer the question each time the scene
    /// changes (text, JSON lines, a serial port); the model's state is kept across frames.
    Watch(Box<watch::WatchArgs>),
    /// List the V4L2 cameras with their pixel formats and frame sizes.
    Cameras(watch::CamerasArgs),
    /// Report this machine: CPU and its features, core clusters, memory, cameras, serial ports, the kernel
    /// path that will run and the matching board profile (--json for scripts).
    Doctor(doctor::DoctorArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Describe(a) => describe::run(a, cli.verbose),
        Command::Chat(a) => chat::run(a, cli.verbose),
        Command::Trace(a) => trace::run(a, cli.verbose),
        Command::Convert(a) => convert::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Info(a) => info::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Watch(a) => watch::run(*a),
        Command::Cameras(a) => watch::cameras(a),
        Command::Doctor(a) => doctor::run(a),
    }
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().try_init();
}

/// A flag set by Ctrl-C: writers abort at the next chunk and delete their temporary files, so an interrupted
/// conversion leaves nothing behind. A second Ctrl-C exits at once.
pub fn cancel_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: removing partial output…");
    });
    flag
}

/// A progress bar over elements, on stderr, hidden when stderr is not a terminal.
pub fn element_progress(label: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {percent:>3}% eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}
