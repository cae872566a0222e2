//! V4L2 cameras (USB/UVC webcams, and any driver that offers capture through plain V4L2): the format is
//! negotiated from what the device offers (MJPEG first: the least bus bandwidth and the least CPU here, then
//! YUYV, NV12, I420 and GREY), the size nearest the one asked for, mmap streaming with four buffers.
//!
//! The negotiation ([`negotiate`]) and the conversion of a driver buffer into a frame ([`frame_from_buffer`])
//! are plain functions over plain data, so they are tested on byte fixtures on machines without a camera;
//! only the ioctls (`camera` feature, Linux and Android) need a device.

use std::path::Path;
use std::time::Duration;

use runtime::engine::{PixelFormat, YuvEncoding};

use super::{CapturedFrame, FrameSource, Payload, SourceError};

/// What the loop waits for a frame before calling the camera stalled.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// Driver buffers: enough to keep the camera streaming while one is converted.
pub const BUFFERS: u32 = 4;

/// The fourccs read, in order of preference.
pub const PREFERRED: [[u8; 4]; 5] = [*b"MJPG", *b"YUYV", *b"NV12", *b"YU12", *b"GREY"];

/// One pixel format a device offers, with its frame sizes (stepwise ranges expanded to a few sizes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub fourcc: [u8; 4],
    pub description: String,
    pub sizes: Vec<(u32, u32)>,
}

/// The format and size chosen for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub fourcc: [u8; 4],
    pub width: u32,
    pub height: u32,
}

/// The preferred readable format, at the offered size nearest `want` (by the difference in area, then in
/// width); without `want`, the size nearest 640x480 (enough for one 448 tile, cheap to convert).
pub fn negotiate(offers: &[Offer], want: Option<(u32, u32)>, device: &str) -> Result<Choice, SourceError> {
    let (ww, wh) = want.unwrap_or((640, 480));
    let distance = |&(w, h): &(u32, u32)| {
        let area = (w as i64 * h as i64 - ww as i64 * wh as i64).unsigned_abs();
        (area, (w as i64 - ww as i64).unsigned_abs())
    };
    for fourcc in PREFERRED {
        let Some(offer) = offers.iter().find(|o| o.fourcc == fourcc && !o.sizes.is_empty()) else { continue };
        let exact = offer.sizes.iter().find(|&&s| s == (ww, wh));
        let best = exact.or_else(|| offer.sizes.iter().min_by_key(|s| distance(s)));
        if let Some(&(width, height)) = best {
            return Ok(Choice { fourcc, width, height });
        }
    }
    let offered: Vec<String> =
        offers.iter().map(|o| format!("{} ({})", String::from_utf8_lossy(&o.fourcc), o.description)).collect();
    Err(SourceError::Unsupported {
        origin: device.to_string(),
        what: format!(
            "none of its pixel formats is read here (offered: {}; read: MJPG, YUYV, NV12, YU12, GREY)",
            if offered.is_empty() { "none".to_string() } else { offered.join(", ") }
        ),
    })
}

/// The format a driver reported for its buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferFormat {
    pub fourcc: [u8; 4],
    pub width: u32,
    pub height: u32,
    /// Bytes per line as the driver reported them (0: packed).
    pub stride: u32,
    pub yuv: YuvEncoding,
}

/// A driver buffer (`bytesused` bytes of it) as a frame: MJPEG stays encoded, the rest is checked against
/// its format's size now so that a short buffer is a bad frame here and not a surprise later.
pub fn frame_from_buffer(
    format: &BufferFormat,
    bytes: &[u8],
    index: u64,
    timestamp: Duration,
    device: &str,
) -> Result<CapturedFrame, SourceError> {
    let bad = |reason: String| SourceError::BadFrame { origin: device.to_string(), frame: index, reason };
    let BufferFormat { fourcc, width, height, stride, yuv } = *format;
    let payload = match &fourcc {
        b"MJPG" | b"JPEG" => {
            if !bytes.starts_with(&[0xFF, 0xD8]) {
                return Err(bad(format!(
                    "an MJPEG buffer of {} bytes that does not start with a JPEG SOI",
                    bytes.len()
                )));
            }
            Payload::Encoded(bytes.to_vec())
        }
        other => {
            let format = match other {
                b"YUYV" => PixelFormat::Yuyv,
                b"NV12" => PixelFormat::Nv12,
                b"NV21" => PixelFormat::Nv21,
                b"YU12" => PixelFormat::I420,
                b"GREY" => PixelFormat::Grey,
                _ => {
                    return Err(SourceError::Unsupported {
                        origin: device.to_string(),
                        what: format!("pixel format {}", String::from_utf8_lossy(other)),
                    })
                }
            };
            let frame = runtime::engine::Frame { data: bytes, width, height, stride, format, yuv };
            frame.validate().map_err(|e| bad(e.to_string()))?;
            Payload::Pixels { format, stride, yuv, data: bytes.to_vec() }
        }
    };
    Ok(CapturedFrame { index, timestamp, width, height, payload })
}

/// A device found by [`list`].
#[derive(Debug, Clone)]
pub struct CameraInfo {
    pub path: std::path::PathBuf,
    pub name: String,
    pub driver: String,
    pub offers: Vec<Offer>,
    /// Why the device could not be queried, when it could not.
    pub error: Option<String>,
}

/// `/dev/videoN` for a bare index.
pub fn device_path(arg: &str) -> std::path::PathBuf {
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
        format!("/dev/video{arg}").into()
    } else {
        arg.into()
    }
}

#[cfg(all(feature = "camera", any(target_os = "linux", target_os = "android")))]
mod device {
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use v4l::buffer::Type;
    use v4l::format::{Colorspace, Quantization};
    use v4l::framesize::FrameSizeEnum;
    use v4l::io::mmap::Stream;
    use v4l::io::traits::CaptureStream;
    use v4l::video::capture::Parameters;
    use v4l::video::Capture;
    use v4l::{Device, FourCC};

    use super::*;

    pub struct Camera {
        name: String,
        format: BufferFormat,
        // Declared before the device: the stream stops and unmaps before the device closes.
        stream: Stream<'static>,
        _device: Device,
        index: u64,
        start: Instant,
    }

    fn disconnected(device: &Path, what: &str, e: std::io::Error) -> SourceError {
        SourceError::Disconnected { origin: device.display().to_string(), reason: format!("{what}: {e}") }
    }

    /// A few sizes of a stepwise range: the common ones inside it and its ends.
    fn sizes(size: FrameSizeEnum) -> Vec<(u32, u32)> {
        match size {
            FrameSizeEnum::Discrete(d) => vec![(d.width, d.height)],
            FrameSizeEnum::Stepwise(s) => {
                let common = [(320, 240), (640, 480), (1280, 720), (1920, 1080)];
                let inside = |&&(w, h): &&(u32, u32)| {
                    (s.min_width..=s.max_width).contains(&w) && (s.min_height..=s.max_height).contains(&h)
                };
                let mut v: Vec<(u32, u32)> = common.iter().filter(inside).copied().collect();
                v.push((s.min_width, s.min_height));
                v.push((s.max_width, s.max_height));
                v
            }
        }
    }

    pub fn offers(dev: &Device, path: &Path) -> Result<Vec<Offer>, SourceError> {
        let formats = dev.enum_formats().map_err(|e| disconnected(path, "listing formats", e))?;
        let mut out = Vec::new();
        for f in formats {
            let sizes = dev
                .enum_framesizes(f.fourcc)
                .map(|v| v.into_iter().flat_map(|s| sizes(s.size)).collect())
                .unwrap_or_default();
            out.push(Offer { fourcc: f.fourcc.repr, description: f.description, sizes });
        }
        Ok(out)
    }

    pub fn open(path: &Path, want: Option<(u32, u32)>, fps: Option<u32>) -> Result<Camera, SourceError> {
        let dev = Device::with_path(path).map_err(|e| disconnected(path, "cannot open", e))?;
        let name = path.display().to_string();
        let choice = negotiate(&offers(&dev, path)?, want, &name)?;
        let mut fmt = dev.format().map_err(|e| disconnected(path, "reading the format", e))?;
        fmt.width = choice.width;
        fmt.height = choice.height;
        fmt.fourcc = FourCC::new(&choice.fourcc);
        let fmt = dev.set_format(&fmt).map_err(|e| disconnected(path, "setting the format", e))?;
        if fmt.fourcc.repr != choice.fourcc {
            return Err(SourceError::Unsupported {
                origin: name,
                what: format!(
                    "asked for {} and the driver gave {}",
                    String::from_utf8_lossy(&choice.fourcc),
                    fmt.fourcc
                ),
            });
        }
        if let Some(fps) = fps {
            if let Err(e) = dev.set_params(&Parameters::with_fps(fps)) {
                tracing::warn!("{name}: cannot set {fps} fps: {e}");
            }
        }
        let yuv = match (fmt.colorspace, fmt.quantization) {
            (Colorspace::Rec709, Quantization::FullRange) => YuvEncoding::Bt709Full,
            (Colorspace::Rec709, _) => YuvEncoding::Bt709Limited,
            (Colorspace::JPEG, _) | (_, Quantization::FullRange) => YuvEncoding::Bt601Full,
            _ if &choice.fourcc == b"GREY" => YuvEncoding::Bt601Full,
            _ => YuvEncoding::Bt601Limited,
        };
        let format =
            BufferFormat { fourcc: fmt.fourcc.repr, width: fmt.width, height: fmt.height, stride: fmt.stride, yuv };
        let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, BUFFERS)
            .map_err(|e| disconnected(path, "starting mmap streaming", e))?;
        stream.set_timeout(FRAME_TIMEOUT);
        let name = format!("{name} ({} {}x{})", fmt.fourcc, fmt.width, fmt.height);
        Ok(Camera { name, format, stream, _device: dev, index: 0, start: Instant::now() })
    }

    impl FrameSource for Camera {
        fn name(&self) -> String {
            self.name.clone()
        }

        fn next_frame(&mut self) -> Result<Option<CapturedFrame>, SourceError> {
            let (buf, meta) = match self.stream.next() {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(SourceError::Timeout { origin: self.name.clone(), after: FRAME_TIMEOUT })
                }
                Err(e) => return Err(SourceError::Disconnected { origin: self.name.clone(), reason: e.to_string() }),
            };
            let used = (meta.bytesused as usize).min(buf.len());
            let index = self.index;
            self.index += 1;
            frame_from_buffer(&self.format, &buf[..used], index, self.start.elapsed(), &self.name).map(Some)
        }
    }

    pub fn list() -> Vec<CameraInfo> {
        let mut nodes: Vec<PathBuf> =
            v4l::context::enum_devices().into_iter().map(|n| n.path().to_path_buf()).collect();
        nodes.sort();
        nodes
            .into_iter()
            .map(|path| match Device::with_path(&path) {
                Ok(dev) => {
                    let caps = dev.query_caps().ok();
                    let (name, driver) = caps.map(|c| (c.card, c.driver)).unwrap_or_default();
                    match offers(&dev, &path) {
                        Ok(offers) => CameraInfo { path, name, driver, offers, error: None },
                        Err(e) => CameraInfo { path, name, driver, offers: Vec::new(), error: Some(e.to_string()) },
                    }
                }
                Err(e) => CameraInfo {
                    path,
                    name: String::new(),
                    driver: String::new(),
                    offers: Vec::new(),
                    error: Some(e.to_string()),
                },
            })
            .collect()
    }
}

/// Open a V4L2 camera.
pub fn open(device: &Path, size: Option<(u32, u32)>, fps: Option<u32>) -> Result<Box<dyn FrameSource>, SourceError> {
    #[cfg(all(feature = "camera", any(target_os = "linux", target_os = "android")))]
    {
        Ok(Box::new(device::open(device, size, fps)?))
    }
    #[cfg(not(all(feature = "camera", any(target_os = "linux", target_os = "android"))))]
    {
        let _ = (size, fps);
        Err(SourceError::Fatal {
            origin: device.display().to_string(),
            reason: "this build has no V4L2 camera support (the `camera` feature, Linux and Android only); pipe frames in with --stdin mjpeg".into(),
        })
    }
}

/// The V4L2 devices of this machine, with what they offer.
pub fn list() -> Result<Vec<CameraInfo>, String> {
    #[cfg(all(feature = "camera", any(target_os = "linux", target_os = "android")))]
    {
        Ok(device::list())
    }
    #[cfg(not(all(feature = "camera", any(target_os = "linux", target_os = "android"))))]
    {
        Err("this build has no V4L2 camera support (the `camera` feature, Linux and Android only)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(fourcc: &[u8; 4], sizes: &[(u32, u32)]) -> Offer {
        Offer { fourcc: *fourcc, description: String::from_utf8_lossy(fourcc).into(), sizes: sizes.to_vec() }
    }

    /// What a typical UVC webcam, a Pi's unicam/ISP node and a grey machine-vision camera offer.
    #[test]
    fn negotiation_prefers_mjpeg_then_raw_formats_at_the_nearest_size() {
        let webcam = [
            offer(b"YUYV", &[(640, 480), (1280, 720), (1920, 1080)]),
            offer(b"MJPG", &[(640, 480), (1280, 720), (1920, 1080)]),
        ];
        let pick = |o: &[Offer], want| negotiate(o, want, "/dev/video0").unwrap();
        assert_eq!(pick(&webcam, None), Choice { fourcc: *b"MJPG", width: 640, height: 480 });
        assert_eq!(pick(&webcam, Some((1280, 720))), Choice { fourcc: *b"MJPG", width: 1280, height: 720 });
        assert_eq!(pick(&webcam, Some((1000, 700))), Choice { fourcc: *b"MJPG", width: 1280, height: 720 });
        let isp = [
            offer(b"RGB3", &[(640, 480)]),
            offer(b"YU12", &[(64, 64), (4056, 3040)]),
            offer(b"NV12", &[(320, 240), (1920, 1080)]),
        ];
        assert_eq!(pick(&isp, Some((640, 480))), Choice { fourcc: *b"NV12", width: 320, height: 240 });
        let grey = [offer(b"GREY", &[(752, 480)]), offer(b"Y16 ", &[(752, 480)])];
        assert_eq!(pick(&grey, None), Choice { fourcc: *b"GREY", width: 752, height: 480 });
        let err = negotiate(&[offer(b"H264", &[(640, 480)])], None, "/dev/video2").unwrap_err();
        assert!(matches!(&err, SourceError::Unsupported { what, .. } if what.contains("H264")), "{err}");
        assert_eq!(device_path("2"), std::path::PathBuf::from("/dev/video2"));
        assert_eq!(device_path("/dev/v4l/by-id/cam"), std::path::PathBuf::from("/dev/v4l/by-id/cam"));
    }

    #[test]
    fn short_or_foreign_buffers_are_bad_frames() {
        let f = BufferFormat { fourcc: *b"YUYV", width: 4, height: 2, stride: 8, yuv: YuvEncoding::Bt601Limited };
        assert!(frame_from_buffer(&f, &[0; 16], 0, Duration::ZERO, "cam").is_ok());
        assert!(matches!(
            frame_from_buffer(&f, &[0; 15], 3, Duration::ZERO, "cam"),
            Err(SourceError::BadFrame { frame: 3, .. })
        ));
        let m = BufferFormat { fourcc: *b"MJPG", ..f };
        assert!(matches!(frame_from_buffer(&m, &[0; 15], 0, Duration::ZERO, "cam"), Err(SourceError::BadFrame { .. })));
        let h = BufferFormat { fourcc: *b"H264", ..f };
        assert!(matches!(
            frame_from_buffer(&h, &[0; 16], 0, Duration::ZERO, "cam"),
            Err(SourceError::Unsupported { .. })
        ));
    }
}
