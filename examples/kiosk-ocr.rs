//! kiosk-ocr: a camera over a counter or a document stand. It waits until the view is steady and sharp
//! (the frame-to-frame difference stays small and the variance of the Laplacian is high over several
//! frames: the page was put down and the camera focused), takes that still at full resolution with up to 12
//! tiles, reads every word greedily, prints the text and sends it over serial. Then it waits for the page to
//! change before reading again.
//!
//! ```text
//! cargo run --release --example kiosk-ocr -- -m model.gguf --source camera:/dev/video0 --serial /dev/ttyACM0
//! kiosk-ocr -m model.gguf --source follow:/srv/scans
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use live::luma::{sharpness, Thumbnail};
use live::{Capture, Pace, SourceSpec};
use runtime::engine::{AskOptions, Engine, EngineOptions};

#[derive(Parser)]
#[command(about = "Read the text of a page held steady under the camera")]
struct Args {
    /// Language-model GGUF (the mmproj-*.gguf beside it is found).
    #[arg(short, long)]
    model: PathBuf,
    /// camera:/dev/videoN, stdin:mjpeg, stdin:y4m, frames:DIR, follow:DIR, video:FILE or pattern.
    #[arg(long, default_value = "camera:0")]
    source: SourceSpec,
    /// Also send each reading to this serial port.
    #[arg(long)]
    serial: Option<PathBuf>,
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Frames the view must hold steady (each within --steady levels of the previous) and sharp.
    #[arg(long, default_value_t = 5)]
    frames: usize,
    /// Largest mean luma difference between consecutive thumbnails that still counts as steady.
    #[arg(long, default_value_t = 3.0)]
    steady: f32,
    /// Smallest mean variance of the Laplacian over the steady frames (camera dependent; -v prints it).
    #[arg(long, default_value_t = 100.0)]
    min_sharpness: f64,
    /// Tiles for the still (the reference's maximum is 12).
    #[arg(long, default_value_t = 12)]
    max_tiles: u32,
    #[arg(short, long, default_value = "Read all the text in this image, every word, in reading order.")]
    prompt: String,
    #[arg(short = 'n', long, default_value_t = 512)]
    max_tokens: usize,
    /// Stop after this many readings.
    #[arg(long)]
    max_reads: Option<u64>,
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Print each frame's sharpness and steadiness on stderr.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    let engine = Arc::new(
        Engine::open(EngineOptions { threads: args.threads, ..EngineOptions::new(&args.model) })
            .with_context(|| format!("loading {}", args.model.display()))?,
    );
    let mut session = engine.session();
    session.set_max_tiles(Some(args.max_tiles))?;
    let ask = AskOptions { max_tokens: args.max_tokens, ..AskOptions::default() };
    let pace = if args.source.is_live() { Pace::Live } else { Pace::All };
    let capture = Capture::start(args.source, pace, 5)?;
    let source = capture.name();
    let serial = args.serial.as_ref().map(|p| live::serial::SerialOut::start(p, args.baud));

    // The last frames' thumbnails and sharpness, and the thumbnail of the page last read.
    let mut recent: Vec<(Thumbnail, f64)> = Vec::with_capacity(args.frames);
    let mut read_page: Option<Thumbnail> = None;
    let mut reads = 0u64;
    while args.max_reads.is_none_or(|m| reads < m) {
        let frame = match capture.next(Duration::from_millis(200))? {
            Some(Some(f)) => f,
            Some(None) => break,
            None => continue,
        };
        let rgb = match frame.to_rgb(&source) {
            Ok(rgb) => rgb,
            Err(e) => {
                eprintln!("{e}");
                continue;
            }
        };
        let thumb = Thumbnail::of(&rgb);
        let sharp = sharpness(&rgb);
        let steady = recent.last().is_none_or(|(prev, _)| prev.difference(&thumb) <= args.steady);
        if !steady {
            recent.clear();
        }
        recent.push((thumb.clone(), sharp));
        if recent.len() > args.frames {
            recent.remove(0);
        }
        let mean_sharpness = recent.iter().map(|(_, s)| s).sum::<f64>() / recent.len() as f64;
        if args.verbose {
            eprintln!("frame {}: sharpness {sharp:.0}, steady for {} frames", frame.index, recent.len());
        }
        let ready = recent.len() == args.frames && mean_sharpness >= args.min_sharpness;
        let new_page = read_page.as_ref().is_none_or(|p| p.difference(&thumb) > args.steady);
        if !(ready && new_page) {
            continue;
        }
        session.reset();
        session.add_image_rgb(&rgb)?;
        let reply = session.ask_with(&args.prompt, &ask, |_| true)?;
        let t = reply.timings;
        eprintln!(
            "read frame {} ({}x{}, {} tiles, sharpness {mean_sharpness:.0}) in {:.1} s",
            frame.index,
            rgb.width(),
            rgb.height(),
            t.tiles,
            (t.preprocess + t.encode + t.prefill + t.decode).as_secs_f64()
        );
        println!("{}", reply.text.trim());
        if let Some(port) = &serial {
            port.send(&reply.text.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        read_page = Some(thumb);
        reads += 1;
    }
    if let Some(port) = serial {
        port.close(Duration::from_secs(2));
    }
    eprintln!("kiosk-ocr: {reads} readings; captured {}", capture.stats().captured);
    Ok(())
}
