//! YUV4MPEG2 streams (`ffmpeg -f yuv4mpegpipe -`): a header line (`YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg
//! XCOLORRANGE=LIMITED`), then frames, each a `FRAME` line and the planes. 8-bit 4:2:0 (every chroma siting),
//! 4:2:2, 4:4:4 and mono are read; BT.601 limited range unless the header says `XCOLORRANGE=FULL`. The
//! timestamps are the stream's own clock (frame index over the frame rate).

use std::io::Read;
use std::time::Duration;

use runtime::engine::{PixelFormat, YuvEncoding};

use super::{CapturedFrame, FrameSource, Payload, SourceError};

/// The longest header or frame line accepted.
const MAX_LINE: usize = 4096;

/// The stream's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Y4mHeader {
    pub width: u32,
    pub height: u32,
    /// Frames per second as a fraction (`F30000:1001`); 0/0 when the header has none.
    pub rate: (u32, u32),
    pub format: PixelFormat,
    pub yuv: YuvEncoding,
    /// The `C` tag as written (for messages).
    pub colour_space: String,
}

impl Y4mHeader {
    /// Parse the header line (without its newline).
    pub fn parse(line: &[u8], source: &str) -> Result<Y4mHeader, SourceError> {
        let fatal = |reason: String| SourceError::Fatal { origin: source.to_string(), reason };
        let text = std::str::from_utf8(line).map_err(|_| fatal("the YUV4MPEG2 header is not ASCII".into()))?;
        let mut tokens = text.split(' ').filter(|t| !t.is_empty());
        if tokens.next() != Some("YUV4MPEG2") {
            return Err(fatal("not a YUV4MPEG2 stream (it must start with 'YUV4MPEG2 ')".into()));
        }
        let (mut width, mut height, mut rate) = (0u32, 0u32, (0u32, 0u32));
        let mut colour = "420jpeg".to_string();
        let mut full_range = false;
        for token in tokens {
            let Some(first) = token.chars().next() else { continue };
            let (tag, value) = token.split_at(first.len_utf8());
            let number = |v: &str| v.parse::<u32>().map_err(|_| fatal(format!("bad header field '{token}'")));
            match tag {
                "W" => width = number(value)?,
                "H" => height = number(value)?,
                "F" => {
                    let (n, d) = value.split_once(':').ok_or_else(|| fatal(format!("bad frame rate '{token}'")))?;
                    rate = (number(n)?, number(d)?);
                }
                "C" => colour = value.to_string(),
                "I" if value != "p" && value != "?" => {
                    tracing::warn!("{source}: interlaced YUV4MPEG2 ({token}): frames are read as progressive");
                }
                "X" => match value {
                    "COLORRANGE=FULL" => full_range = true,
                    "COLORRANGE=LIMITED" => full_range = false,
                    _ => {}
                },
                _ => {}
            }
        }
        if width == 0 || height == 0 {
            return Err(fatal(format!("the YUV4MPEG2 header gives no frame size (W and H): '{text}'")));
        }
        let (max_side, max_pixels) = (runtime::image::MAX_SIDE as u64, runtime::image::MAX_PIXELS);
        if width as u64 > max_side || height as u64 > max_side || width as u64 * height as u64 > max_pixels {
            return Err(fatal(format!(
                "a {width}x{height} frame is larger than the {max_pixels} pixels ({max_side} a side) read here"
            )));
        }
        let format = match colour.as_str() {
            "420jpeg" | "420paldv" | "420mpeg2" | "420" => PixelFormat::I420,
            "422" => PixelFormat::I422,
            "444" => PixelFormat::I444,
            "mono" => PixelFormat::Grey,
            other => {
                return Err(SourceError::Unsupported {
                    origin: source.to_string(),
                    what: format!(
                        "YUV4MPEG2 colour space C{other} (read: 8-bit C420jpeg, C420paldv, C420mpeg2, C420, C422, \
                         C444, Cmono; convert with ffmpeg -pix_fmt yuv420p)"
                    ),
                })
            }
        };
        let yuv = if full_range { YuvEncoding::Bt601Full } else { YuvEncoding::Bt601Limited };
        Ok(Y4mHeader { width, height, rate, format, yuv, colour_space: format!("C{colour}") })
    }

    /// Bytes of one frame's planes.
    pub fn frame_bytes(&self) -> usize {
        self.format.frame_bytes(self.height, self.width as u64) as usize
    }
}

/// A YUV4MPEG2 stream read from `R`.
pub struct Y4mStream<R> {
    reader: R,
    name: String,
    header: Y4mHeader,
    index: u64,
    /// Bytes read so far (for messages).
    offset: u64,
}

impl<R: Read + Send> Y4mStream<R> {
    /// Read and check the header.
    pub fn new(mut reader: R, name: String) -> Result<Y4mStream<R>, SourceError> {
        let mut offset = 0;
        let line = read_line(&mut reader, &name, &mut offset)?.ok_or_else(|| SourceError::Fatal {
            origin: name.clone(),
            reason: "empty stream (no YUV4MPEG2 header)".into(),
        })?;
        let header = Y4mHeader::parse(&line, &name)?;
        let name = format!(
            "{name} (YUV4MPEG2 {}x{} {} {})",
            header.width,
            header.height,
            header.colour_space,
            if header.yuv == YuvEncoding::Bt601Full { "full range" } else { "limited range" }
        );
        Ok(Y4mStream { reader, name, header, index: 0, offset })
    }

    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }
}

/// One `\n`-terminated line; `None` at a clean end of stream.
fn read_line<R: Read>(reader: &mut R, name: &str, offset: &mut u64) -> Result<Option<Vec<u8>>, SourceError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match reader.read(&mut byte) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => {
                return Err(SourceError::Fatal {
                    origin: name.to_string(),
                    reason: format!("the stream ended inside a header line at byte offset {offset}"),
                })
            }
            Ok(_) => {
                *offset += 1;
                if byte[0] == b'\n' {
                    return Ok(Some(line));
                }
                line.push(byte[0]);
                if line.len() > MAX_LINE {
                    return Err(SourceError::Fatal {
                        origin: name.to_string(),
                        reason: format!("a header line longer than {MAX_LINE} bytes at byte offset {offset}"),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SourceError::Disconnected { origin: name.to_string(), reason: e.to_string() }),
        }
    }
}

impl<R: Read + Send> FrameSource for Y4mStream<R> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, SourceError> {
        let at = self.offset;
        let Some(line) = read_line(&mut self.reader, &self.name, &mut self.offset)? else { return Ok(None) };
        if !line.starts_with(b"FRAME") {
            return Err(SourceError::Fatal {
                origin: self.name.clone(),
                reason: format!("frame {} at byte offset {at} does not start with FRAME", self.index),
            });
        }
        let mut data = vec![0u8; self.header.frame_bytes()];
        let mut filled = 0;
        while filled < data.len() {
            match self.reader.read(&mut data[filled..]) {
                Ok(0) => {
                    let index = self.index;
                    self.index += 1;
                    return Err(SourceError::BadFrame {
                        origin: self.name.clone(),
                        frame: index,
                        reason: format!("the stream ended {filled} bytes into a {}-byte frame", data.len()),
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SourceError::Disconnected { origin: self.name.clone(), reason: e.to_string() }),
            }
        }
        self.offset += data.len() as u64;
        let index = self.index;
        self.index += 1;
        let (n, d) = self.header.rate;
        let timestamp =
            if n > 0 && d > 0 { Duration::from_secs_f64(index as f64 * d as f64 / n as f64) } else { Duration::ZERO };
        let h = &self.header;
        Ok(Some(CapturedFrame {
            index,
            timestamp,
            width: h.width,
            height: h.height,
            payload: Payload::Pixels { format: h.format, stride: h.width, yuv: h.yuv, data },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_unsupported_ones_say_why() {
        let h =
            Y4mHeader::parse(b"YUV4MPEG2 W64 H48 F30000:1001 Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=FULL", "s")
                .unwrap();
        assert_eq!(
            (h.width, h.height, h.rate, h.format, h.yuv),
            (64, 48, (30000, 1001), PixelFormat::I420, YuvEncoding::Bt601Full)
        );
        assert_eq!(h.frame_bytes(), 64 * 48 * 3 / 2);
        let h = Y4mHeader::parse(b"YUV4MPEG2 W5 H3 C422", "s").unwrap();
        assert_eq!((h.format, h.yuv, h.frame_bytes()), (PixelFormat::I422, YuvEncoding::Bt601Limited, 15 + 2 * 3 * 3));
        let h = Y4mHeader::parse(b"YUV4MPEG2 W5 H3", "s").unwrap();
        assert_eq!((h.format, h.frame_bytes()), (PixelFormat::I420, 15 + 2 * 3 * 2));
        let err = Y4mHeader::parse(b"YUV4MPEG2 W64 H48 C420p10 XYSCSS=420P10", "stdin").unwrap_err();
        assert!(matches!(&err, SourceError::Unsupported { what, .. } if what.contains("C420p10")), "{err}");
        assert!(Y4mHeader::parse(b"YUV4MPEG2 W64 C420", "s").is_err());
        assert!(Y4mHeader::parse(b"RIFF", "s").is_err());
        assert!(Y4mHeader::parse(b"YUV4MPEG2 Wx H2", "s").is_err());
        // Sizes that would overflow or exhaust memory, and non-ASCII tags: errors, not panics.
        assert!(Y4mHeader::parse(b"YUV4MPEG2 W4294967295 H4294967295 C444", "s").is_err());
        assert!(Y4mHeader::parse(b"YUV4MPEG2 W100000 H100000", "s").is_err());
        assert!(Y4mHeader::parse("YUV4MPEG2 W64 H48 \u{e9}x".as_bytes(), "s").is_ok());
    }

    #[test]
    fn frames_and_their_clock() {
        let mut bytes = b"YUV4MPEG2 W4 H2 F10:1 Cmono\n".to_vec();
        for i in 0..3u8 {
            bytes.extend_from_slice(b"FRAME\n");
            bytes.extend_from_slice(&[i; 8]);
        }
        bytes.extend_from_slice(b"FRAME\n\x01\x02");
        let mut s = Y4mStream::new(&bytes[..], "t".into()).unwrap();
        for i in 0..3u64 {
            let f = s.next_frame().unwrap().unwrap();
            assert_eq!((f.index, f.timestamp), (i, Duration::from_millis(100 * i)));
            let Payload::Pixels { data, format: PixelFormat::Grey, .. } = f.payload else { panic!() };
            assert_eq!(data, vec![i as u8; 8]);
        }
        assert!(matches!(s.next_frame(), Err(SourceError::BadFrame { frame: 3, .. })));
        assert!(matches!(s.next_frame(), Ok(None)));
        let mut s = Y4mStream::new(&b"YUV4MPEG2 W4 H2 Cmono\nFRAMX\n"[..], "t".into()).unwrap();
        assert!(matches!(s.next_frame(), Err(SourceError::Fatal { reason, .. }) if reason.contains("byte offset 22")));
    }
}
