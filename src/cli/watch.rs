//! `sail-edge watch`: a camera, pipe, folder, video or test pattern in; an answer about the scene out each
//! time it changes (text, JSON lines, a serial port). `sail-edge cameras` lists the V4L2 devices.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, ValueEnum};
use live::source::{camera, parse_size};
use live::{Capture, GateConfig, Pace, SourceSpec, StdinFormat, Update, WatchOptions, Watcher};
use runtime::boards::Profile;
use runtime::engine::AskOptions;

use super::infer::{ModelArgs, SamplingArgs};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["camera", "stdin", "frames", "video", "test_pattern"])))]
pub struct WatchArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// A V4L2 camera: /dev/videoN or its index N (MJPEG, YUYV, NV12, YU12 or GREY are negotiated).
    #[arg(long, value_name = "DEVICE", help_heading = "Source")]
    pub camera: Option<String>,
    /// Frames piped into standard input: mjpeg (concatenated JPEGs: rpicam-vid --codec mjpeg -o -, ffmpeg -f
    /// mjpeg -, GStreamer jpegenc ! fdsink) or y4m (ffmpeg -f yuv4mpegpipe -).
    #[arg(long, value_name = "FORMAT", help_heading = "Source")]
    pub stdin: Option<StdinFormat>,
    /// A folder of PNG/JPEG frames, read in name order.
    #[arg(long, value_name = "DIR", help_heading = "Source")]
    pub frames: Option<PathBuf>,
    /// With --frames: keep watching the folder for new files.
    #[arg(long, requires = "frames", help_heading = "Source")]
    pub follow: bool,
    /// A video file, decoded by ffmpeg (it must be on PATH).
    #[arg(long, value_name = "FILE", help_heading = "Source")]
    pub video: Option<PathBuf>,
    /// A synthetic moving scene that changes every 4 seconds (demos, tests).
    #[arg(long, help_heading = "Source")]
    pub test_pattern: bool,
    /// Frame size to ask the camera (or the test pattern) for [camera: the nearest offered to 640x480;
    /// pattern: 640x480].
    #[arg(long, value_name = "WxH", value_parser = parse_size, help_heading = "Source")]
    pub size: Option<(u32, u32)>,
    /// Frame rate to ask the camera for; for --video, the rate ffmpeg resamples to; for --frames, the spacing
    /// of frames on the stream clock (--every); for --test-pattern, its rate [pattern: 10].
    #[arg(long, help_heading = "Source")]
    pub fps: Option<u32>,
    /// live: the latest frame wins, stale frames are dropped and counted (default for cameras, --stdin and
    /// --test-pattern); all: every frame in order, the reader waits (default for --frames and --video).
    #[arg(long, value_parser = ["live", "all"], help_heading = "Source")]
    pub pace: Option<String>,
    /// Times a source that disconnects is reopened in a row (with backoff from 0.25 s to 8 s) before giving up.
    #[arg(long, default_value_t = 5, help_heading = "Source")]
    pub retries: u32,

    /// Scene-change threshold: mean absolute luma difference (0–255) of 32×32 thumbnails against the last
    /// frame answered; 0 answers every frame [default: 6, or the --board profile's].
    #[arg(long, help_heading = "Scene gate")]
    pub gate: Option<f32>,
    /// Frames a changed scene must hold before it is answered [default: 2, or the --board profile's].
    #[arg(long, help_heading = "Scene gate")]
    pub min_stable: Option<u32>,
    /// Answer at least this often even when nothing changed (e.g. 30s, 5m; stream time) [default: never, or
    /// the --board profile's heartbeat].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, help_heading = "Scene gate")]
    pub every: Option<Duration>,
    /// Frames in the prompt (Frame-1: … Frame-N:), 1 to 16; the KV cache keeps them between updates.
    #[arg(long, default_value_t = 1, value_parser = parse_window, help_heading = "Scene gate")]
    pub window: usize,

    /// The question asked after each accepted frame.
    #[arg(short = 'p', long = "prompt", help_heading = "Question")]
    pub prompt: Option<String>,
    /// Read the question from a file, re-read when it changes (the next frame is answered with it).
    #[arg(long, conflicts_with = "prompt", help_heading = "Question")]
    pub prompt_file: Option<PathBuf>,
    /// Replace the default system prompt.
    #[arg(long, help_heading = "Question")]
    pub system: Option<String>,
    /// Most tokens per answer.
    #[arg(short = 'n', long = "n-predict", default_value_t = 64, help_heading = "Question")]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,

    /// One JSON object per update (t, frames, text, changed, ms{capture, preprocess, vit, prefill, decode,
    /// total}, dropped, reprefill, and more).
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// Write an update only when its text differs from the previous one.
    #[arg(long, help_heading = "Output")]
    pub on_change: bool,
    /// Also write each update as a line to this serial port (reopened with backoff if it goes away).
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub serial: Option<PathBuf>,
    #[arg(long, default_value_t = 115_200, requires = "serial", help_heading = "Output")]
    pub baud: u32,
    /// What goes to the serial port.
    #[arg(long, value_enum, default_value_t = SerialFormat::Text, requires = "serial", help_heading = "Output")]
    pub serial_format: SerialFormat,
    /// End after this many updates.
    #[arg(long, help_heading = "Output")]
    pub max_updates: Option<u64>,
    /// End after this many frames taken from the source.
    #[arg(long, help_heading = "Output")]
    pub max_frames: Option<u64>,
    /// Recompute everything for every update (encode every frame of the window, prefill the whole prompt):
    /// the baseline that measures what the reuse saves.
    #[arg(long)]
    pub no_reuse: bool,
}

fn parse_window(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=live::watch::MAX_WINDOW).contains(&n) => Ok(n),
        _ => Err(format!("'{s}': the window holds 1 to {} frames", live::watch::MAX_WINDOW)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SerialFormat {
    Text,
    Json,
}

impl WatchArgs {
    fn source(&self) -> Result<SourceSpec> {
        Ok(if let Some(dev) = &self.camera {
            SourceSpec::Camera { device: camera::device_path(dev), size: self.size, fps: self.fps }
        } else if let Some(format) = self.stdin {
            SourceSpec::Stdin(format)
        } else if let Some(dir) = &self.frames {
            SourceSpec::Folder { dir: dir.clone(), follow: self.follow, fps: self.fps }
        } else if let Some(path) = &self.video {
            SourceSpec::Video { path: path.clone(), fps: self.fps }
        } else {
            SourceSpec::TestPattern { size: self.size.unwrap_or((640, 480)), fps: self.fps.unwrap_or(10) }
        })
    }

    /// The scene gate from the flags, then the profile's `[watch]` for what they leave out.
    fn gate_config(&self, profile: Option<&Profile>) -> Result<GateConfig> {
        let defaults = GateConfig::default();
        let board = profile.map(|p| &p.watch);
        let gate = self.gate.or(board.map(|w| w.gate)).unwrap_or(defaults.threshold);
        let min_stable = self.min_stable.or(board.map(|w| w.min_stable)).unwrap_or(defaults.min_stable);
        let every = self.every.or(board.and_then(|w| w.heartbeat_s).map(Duration::from_secs));
        if !gate.is_finite() || gate < 0.0 {
            bail!("--gate must be a number ≥ 0 (got {gate})");
        }
        if min_stable == 0 {
            bail!("--min-stable must be at least 1");
        }
        Ok(GateConfig { threshold: gate, min_stable, every })
    }

    fn options(&self, profile: Option<&Profile>) -> Result<WatchOptions> {
        let question = match (&self.prompt, &self.prompt_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => {
                let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8", f.display()))?
            }
            (None, None) => "Describe what you see in one sentence.".to_string(),
        };
        Ok(WatchOptions {
            question,
            prompt_file: self.prompt_file.clone(),
            system: self.system.clone(),
            window: self.window,
            gate: self.gate_config(profile)?,
            ask: AskOptions { max_tokens: self.max_tokens, ..AskOptions::default() },
            sampling: self.sampling.config()?,
            max_updates: self.max_updates,
            max_frames: self.max_frames,
            reuse: !self.no_reuse,
        })
    }
}

pub fn run(a: WatchArgs) -> Result<()> {
    let spec = a.source()?;
    let profile = a.model.profile()?;
    let options = a.options(profile.as_ref())?;
    let pace = match a.pace.as_deref() {
        Some(p) => p.parse::<Pace>().map_err(anyhow::Error::msg)?,
        None if spec.is_live() => Pace::Live,
        None => Pace::All,
    };
    let engine = a.model.open_engine_with(None, profile.as_ref())?;
    live::watch::fit_feature_cache(&engine, a.window);
    let mut watcher = Watcher::new(engine, options)?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let (stop, cancel) = (stop.clone(), watcher.cancel_token());
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            cancel.cancel();
        });
    }
    let capture = Capture::start(spec, pace, a.retries)?;
    eprintln!(
        "watch: {} ({} pace); asking: {}",
        capture.name(),
        if pace == Pace::Live { "live" } else { "all" },
        watcher.question().trim()
    );

    #[cfg(feature = "serial")]
    let serial = a.serial.as_ref().map(|p| live::serial::SerialOut::start(p, a.baud));
    #[cfg(not(feature = "serial"))]
    if a.serial.is_some() {
        bail!("--serial: this build has no serial support (the `serial` feature)");
    }

    let mut out = std::io::stdout().lock();
    let mut write_error = None;
    let result = watcher.run(&capture, &stop, |u: &Update| {
        if a.on_change && !u.changed {
            return;
        }
        let line = if a.json { u.to_json() } else { u.text_line() };
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            // stdout closed (a pipe reader went away): stop cleanly.
            if write_error.is_none() {
                write_error = Some(e);
                stop.store(true, Ordering::SeqCst);
            }
        }
        #[cfg(feature = "serial")]
        if let Some(s) = &serial {
            s.send(&match a.serial_format {
                SerialFormat::Text => u.text_line(),
                SerialFormat::Json => u.to_json(),
            });
        }
    });
    #[cfg(feature = "serial")]
    if let Some(s) = serial {
        let path = s.path().display().to_string();
        let st = s.close(Duration::from_secs(2));
        eprintln!("serial {path}: {} lines sent, {} dropped, {} reconnects", st.sent, st.dropped, st.reconnects);
    }
    let summary = result?;
    eprintln!("{summary}");
    if let Some(e) = write_error {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("writing to stdout");
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct CamerasArgs {}

pub fn cameras(_: CamerasArgs) -> Result<()> {
    let list = camera::list().map_err(anyhow::Error::msg)?;
    if list.is_empty() {
        println!("no V4L2 devices (/dev/video*) on this machine");
        return Ok(());
    }
    for cam in list {
        println!("{}  {} ({})", cam.path.display(), cam.name, cam.driver);
        if let Some(e) = &cam.error {
            println!("    cannot query: {e}");
        }
        for o in &cam.offers {
            let readable = camera::PREFERRED.contains(&o.fourcc);
            let sizes: Vec<String> = o.sizes.iter().map(|(w, h)| format!("{w}x{h}")).collect();
            println!(
                "    {} {:<24} {}{}",
                String::from_utf8_lossy(&o.fourcc),
                o.description,
                sizes.join(" "),
                if readable { "" } else { "  (not read here)" }
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn watch_args(extra: &[&str]) -> WatchArgs {
        let mut argv = vec!["sail-edge", "watch", "-m", "m.gguf", "--test-pattern"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Watch(a) => *a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_board_sets_the_gate_flags_leave_out() {
        let rpi4 = Profile::by_name("rpi4").unwrap();
        let heartbeat = Duration::from_secs(rpi4.watch.heartbeat_s.unwrap());
        let g = watch_args(&[]).gate_config(Some(&rpi4)).unwrap();
        assert_eq!((g.threshold, g.min_stable, g.every), (rpi4.watch.gate, rpi4.watch.min_stable, Some(heartbeat)));
        let g = watch_args(&["--gate", "3.5", "--min-stable", "5", "--every", "7s"]).gate_config(Some(&rpi4)).unwrap();
        assert_eq!((g.threshold, g.min_stable, g.every), (3.5, 5, Some(Duration::from_secs(7))));
        // Without a board: the gate's own defaults.
        assert_eq!(watch_args(&[]).gate_config(None).unwrap(), GateConfig::default());
        assert!(watch_args(&["--gate=-1"]).gate_config(None).is_err());
    }
}
