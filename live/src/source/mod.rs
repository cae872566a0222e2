//! Frame sources: one trait in front of every way a frame arrives. A source hands over frames as they were
//! captured (JPEG bytes, a YUV or RGB buffer, an encoded file) with an index and a timestamp; converting them
//! to RGB is left to the loop, which converts only the frames it uses (a live source outruns the model, and
//! the frames it drops are never decoded).

pub mod camera;
pub mod folder;
pub mod mjpeg;
pub mod pattern;
pub mod video;
pub mod y4m;

use std::path::PathBuf;
use std::time::Duration;

use ::image::RgbImage;
use runtime::engine::{Frame, PixelFormat, YuvEncoding};

/// How a captured frame's bytes are held.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A whole JPEG or PNG file (MJPEG cameras and pipes, image folders).
    Encoded(Vec<u8>),
    /// A raw buffer in one of the runtime's pixel formats.
    Pixels { format: PixelFormat, stride: u32, yuv: YuvEncoding, data: Vec<u8> },
    /// Already RGB (the test pattern).
    Rgb(RgbImage),
}

/// One frame from a source.
#[derive(Debug, Clone)]
pub struct CapturedFrame {
    /// 0, 1, 2, … in the order the source produced them (dropped and bad frames keep their numbers).
    pub index: u64,
    /// When it was taken, from the start of the origin: the stream's clock where it has one (YUV4MPEG2
    /// frame rate, the test pattern's), else the arrival time.
    pub timestamp: Duration,
    pub width: u32,
    pub height: u32,
    pub payload: Payload,
}

impl CapturedFrame {
    /// The frame as RGB; a frame that does not decode is [`SourceError::BadFrame`].
    pub fn to_rgb(&self, source: &str) -> Result<RgbImage, SourceError> {
        let bad = |reason: String| SourceError::BadFrame { origin: source.to_string(), frame: self.index, reason };
        match &self.payload {
            Payload::Encoded(bytes) => {
                runtime::image::decode_rgb(&mjpeg::with_standard_tables(bytes)).map_err(|e| bad(e.to_string()))
            }
            Payload::Pixels { format, stride, yuv, data } => {
                let frame =
                    Frame { data, width: self.width, height: self.height, stride: *stride, format: *format, yuv: *yuv };
                frame.to_rgb().map_err(|e| bad(e.to_string()))
            }
            Payload::Rgb(img) => Ok(img.clone()),
        }
    }
}

/// Why a source could not give a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The device or pipe went away (unplugged camera, device busy, ffmpeg died); worth reopening.
    #[error("{origin}: disconnected: {reason}")]
    Disconnected { origin: String, reason: String },
    /// No frame came within the time allowed; worth reopening.
    #[error("{origin}: no frame within {after:?}")]
    Timeout { origin: String, after: Duration },
    /// One frame is unusable (truncated, corrupt); the source goes on with the next.
    #[error("{origin}: frame {frame}: {reason}")]
    BadFrame { origin: String, frame: u64, reason: String },
    /// The source offers nothing this runtime reads (pixel format, colour space, bit depth).
    #[error("{origin}: unsupported: {what}")]
    Unsupported { origin: String, what: String },
    /// The stream is malformed past recovery, or the source cannot be opened at all (a missing file, no
    /// ffmpeg); reopening would not help.
    #[error("{origin}: {reason}")]
    Fatal { origin: String, reason: String },
}

impl SourceError {
    /// Whether reopening the source may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SourceError::Disconnected { .. } | SourceError::Timeout { .. })
    }
}

/// Where frames come from. A source reads frames in a loop on the capture thread; `Ok(None)` is the end of
/// the stream (stdin closed, the last file of a folder, the end of a video).
pub trait FrameSource: Send {
    /// A short name for messages: the device, file or pipe, with what was negotiated.
    fn name(&self) -> String;
    /// The next frame, waiting for it.
    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, SourceError>;
}

/// Which format `--stdin` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinFormat {
    /// Concatenated JPEG files (`rpicam-vid --codec mjpeg -o -`, `ffmpeg -f mjpeg -`, `jpegenc ! fdsink`).
    Mjpeg,
    /// YUV4MPEG2 (`ffmpeg -f yuv4mpegpipe -`).
    Y4m,
}

impl std::str::FromStr for StdinFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<StdinFormat, String> {
        match s.to_ascii_lowercase().as_str() {
            "mjpeg" | "mjpg" | "jpeg" => Ok(StdinFormat::Mjpeg),
            "y4m" | "yuv4mpeg" | "yuv4mpegpipe" => Ok(StdinFormat::Y4m),
            other => Err(format!("unknown stdin format '{other}' (mjpeg or y4m)")),
        }
    }
}

/// A source described well enough to open it, and to open it again after a disconnect.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A V4L2 device (`/dev/videoN`), at about `size` and `fps` when given.
    Camera { device: PathBuf, size: Option<(u32, u32)>, fps: Option<u32> },
    /// Frames piped into standard input.
    Stdin(StdinFormat),
    /// Image files of a folder in name order; with `follow`, files added later too. Without `follow` the
    /// frames are `1 / fps` apart on the stream clock (default 1 fps).
    Folder { dir: PathBuf, follow: bool, fps: Option<u32> },
    /// A video file decoded by an `ffmpeg` subprocess (at `fps` when given).
    Video { path: PathBuf, fps: Option<u32> },
    /// The deterministic moving scene of [`pattern::TestPattern`].
    TestPattern { size: (u32, u32), fps: u32 },
}

impl SourceSpec {
    /// Whether the source is live (frames arrive whether or not the loop is ready: the default pace drops
    /// stale ones) or a recording (every frame can be considered in order).
    pub fn is_live(&self) -> bool {
        matches!(self, SourceSpec::Camera { .. } | SourceSpec::Stdin(_) | SourceSpec::TestPattern { .. })
    }

    /// A name for messages before the source is open.
    pub fn name(&self) -> String {
        match self {
            SourceSpec::Camera { device, .. } => device.display().to_string(),
            SourceSpec::Stdin(StdinFormat::Mjpeg) => "stdin (MJPEG)".into(),
            SourceSpec::Stdin(StdinFormat::Y4m) => "stdin (YUV4MPEG2)".into(),
            SourceSpec::Folder { dir, .. } => dir.display().to_string(),
            SourceSpec::Video { path, .. } => path.display().to_string(),
            SourceSpec::TestPattern { .. } => "test pattern".into(),
        }
    }

    /// Open the source.
    pub fn open(&self) -> Result<Box<dyn FrameSource>, SourceError> {
        Ok(match self {
            SourceSpec::Camera { device, size, fps } => camera::open(device, *size, *fps)?,
            SourceSpec::Stdin(StdinFormat::Mjpeg) => {
                Box::new(mjpeg::MjpegStream::new(std::io::stdin(), "stdin (MJPEG)".into()))
            }
            SourceSpec::Stdin(StdinFormat::Y4m) => Box::new(y4m::Y4mStream::new(std::io::stdin(), "stdin".into())?),
            SourceSpec::Folder { dir, follow, fps } => Box::new(folder::FolderSource::new(dir, *follow, *fps)?),
            SourceSpec::Video { path, fps } => Box::new(video::VideoSource::open(path, *fps)?),
            SourceSpec::TestPattern { size, fps } => Box::new(pattern::TestPattern::new(size.0, size.1, *fps)?),
        })
    }
}

impl std::str::FromStr for SourceSpec {
    type Err = String;

    /// A source in one word, for tools and examples: `camera:/dev/video0` (or `camera:0`), `stdin:mjpeg`,
    /// `stdin:y4m`, `frames:DIR`, `follow:DIR` (a folder, following it), `video:FILE`, `pattern`.
    fn from_str(s: &str) -> Result<SourceSpec, String> {
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        let need = |what: &str| if arg.is_empty() { Err(format!("'{s}': {kind}: needs {what}")) } else { Ok(arg) };
        Ok(match kind {
            "camera" => SourceSpec::Camera { device: camera::device_path(need("a device")?), size: None, fps: None },
            "stdin" => SourceSpec::Stdin(need("a format")?.parse()?),
            "frames" => SourceSpec::Folder { dir: need("a folder")?.into(), follow: false, fps: None },
            "follow" => SourceSpec::Folder { dir: need("a folder")?.into(), follow: true, fps: None },
            "video" => SourceSpec::Video { path: need("a file")?.into(), fps: None },
            "pattern" => SourceSpec::TestPattern { size: (640, 480), fps: 10 },
            _ => {
                return Err(format!(
                    "'{s}': expected camera:DEV, stdin:mjpeg|y4m, frames:DIR, follow:DIR, video:FILE or pattern"
                ))
            }
        })
    }
}

/// Width and height of a PNG (IHDR) or JPEG (SOFn) file, read from its header.
pub fn encoded_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G']) && bytes.len() >= 24 {
        let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        return Some((be(16), be(20)));
    }
    mjpeg::jpeg_size(bytes)
}

/// Parse `WxH` (`--size 640x480`).
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("'{s}': expected WIDTHxHEIGHT, e.g. 640x480"))?;
    let parse = |v: &str| v.trim().parse::<u32>().ok().filter(|v| *v > 0);
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!("'{s}': expected WIDTHxHEIGHT with positive numbers, e.g. 640x480")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_formats_parse() {
        assert_eq!(parse_size("640x480"), Ok((640, 480)));
        assert_eq!(parse_size("1280X720"), Ok((1280, 720)));
        for bad in ["640", "0x480", "x", "axb", "-1x2"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!("MJPEG".parse::<StdinFormat>(), Ok(StdinFormat::Mjpeg));
        assert_eq!("y4m".parse::<StdinFormat>(), Ok(StdinFormat::Y4m));
        assert!("h264".parse::<StdinFormat>().is_err());
        assert_eq!("camera:2".parse::<SourceSpec>().unwrap().name(), "/dev/video2");
        assert_eq!("stdin:y4m".parse::<SourceSpec>(), Ok(SourceSpec::Stdin(StdinFormat::Y4m)));
        assert!(matches!("follow:/tmp".parse::<SourceSpec>(), Ok(SourceSpec::Folder { follow: true, .. })));
        assert!("pattern".parse::<SourceSpec>().unwrap().is_live());
        for bad in ["camera", "frames:", "usb:1", "stdin:h264"] {
            assert!(bad.parse::<SourceSpec>().is_err(), "{bad}");
        }
    }
}
