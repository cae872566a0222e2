//! Concatenated JPEG files from a pipe (`rpicam-vid --codec mjpeg -o -`, `ffmpeg -f mjpeg -`, GStreamer's
//! `jpegenc ! fdsink`). Frames are cut by walking the JPEG marker structure (segment lengths, then the
//! entropy-coded data up to the next marker), not by searching for byte pairs, so an embedded thumbnail does
//! not split a frame. A frame cut short (the next SOI arrives before its EOI, or a segment is malformed) is
//! reported as a bad frame and reading resumes at the next SOI.

use std::io::Read;
use std::time::Instant;

use super::{CapturedFrame, FrameSource, Payload, SourceError};

/// A frame larger than this without an end-of-image marker is abandoned (bounded memory on garbage input).
pub const MAX_FRAME_BYTES: usize = 64 << 20;

const READ_CHUNK: usize = 256 << 10;

/// What the parser found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// A whole JPEG of this many bytes.
    Complete(usize),
    /// The JPEG starting at 0 is broken; the next SOI (or the end of the buffer) is at this offset.
    Broken { resume: usize, reason: &'static str },
    /// More bytes are needed.
    NeedMore,
}

/// Where the parser stopped, so that more bytes resume it rather than rescanning the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a marker (`0xFF xx`) at `pos`.
    Marker,
    /// Inside entropy-coded data at `pos`.
    Entropy,
}

/// A stream of concatenated JPEGs read from `R`.
pub struct MjpegStream<R> {
    reader: R,
    name: String,
    buf: Vec<u8>,
    /// Parse position inside `buf` (which starts with SOI once a frame is under way).
    pos: usize,
    state: State,
    /// Bytes of the stream before `buf[0]` (for messages).
    offset: u64,
    index: u64,
    start: Instant,
    eof: bool,
}

impl<R: Read + Send> MjpegStream<R> {
    pub fn new(reader: R, name: String) -> MjpegStream<R> {
        MjpegStream {
            reader,
            name,
            buf: Vec::new(),
            pos: 0,
            state: State::Marker,
            offset: 0,
            index: 0,
            start: Instant::now(),
            eof: false,
        }
    }

    /// Drop `n` bytes from the front and restart the parser there.
    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.offset += n as u64;
        self.pos = 0;
        self.state = State::Marker;
    }

    /// Drop anything before the first SOI; `false` when there is none yet (keeps a trailing `0xFF`).
    fn align_to_soi(&mut self) -> bool {
        match find_soi(&self.buf, 0) {
            Some(0) => true,
            Some(at) => {
                tracing::debug!("{}: skipping {at} bytes before a JPEG at offset {}", self.name, self.offset);
                self.consume(at);
                true
            }
            None => {
                let keep = usize::from(self.buf.last() == Some(&0xFF));
                let n = self.buf.len() - keep;
                self.consume(n);
                false
            }
        }
    }

    fn fill(&mut self) -> Result<(), SourceError> {
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let got = loop {
            match self.reader.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(SourceError::Disconnected { origin: self.name.clone(), reason: e.to_string() });
                }
            }
        };
        self.buf.truncate(old + got);
        self.eof = got == 0;
        Ok(())
    }
}

impl<R: Read + Send> FrameSource for MjpegStream<R> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, SourceError> {
        loop {
            if self.align_to_soi() {
                let (scan, pos, state) = scan(&self.buf, self.pos.max(2), self.state);
                (self.pos, self.state) = (pos, state);
                match scan {
                    Scan::Complete(len) => {
                        let jpeg = self.buf[..len].to_vec();
                        self.consume(len);
                        let index = self.index;
                        self.index += 1;
                        let (width, height) = jpeg_size(&jpeg).unwrap_or((0, 0));
                        return Ok(Some(CapturedFrame {
                            index,
                            timestamp: self.start.elapsed(),
                            width,
                            height,
                            payload: Payload::Encoded(jpeg),
                        }));
                    }
                    Scan::Broken { resume, reason } => return Err(self.broken(resume, reason)),
                    Scan::NeedMore if self.buf.len() > MAX_FRAME_BYTES => {
                        let resume = find_soi(&self.buf, 2).unwrap_or(self.buf.len());
                        return Err(self.broken(resume, "no end of image within 64 MiB"));
                    }
                    Scan::NeedMore => {}
                }
            }
            if self.eof {
                if self.buf.len() >= 2 && self.buf.starts_with(&[0xFF, 0xD8]) {
                    let n = self.buf.len();
                    return Err(self.broken(n, "the stream ended inside this JPEG"));
                }
                return Ok(None);
            }
            self.fill()?;
        }
    }
}

impl<R> MjpegStream<R> {
    /// Report the JPEG at the front as bad and skip to `resume`.
    fn broken(&mut self, resume: usize, reason: &str) -> SourceError {
        let err = SourceError::BadFrame {
            origin: self.name.clone(),
            frame: self.index,
            reason: format!("JPEG at byte offset {} ({} bytes): {reason}; skipped", self.offset, resume),
        };
        self.index += 1;
        self.buf.drain(..resume);
        self.offset += resume as u64;
        self.pos = 0;
        self.state = State::Marker;
        err
    }
}

/// The first SOI (`FF D8`) at or after `from`.
fn find_soi(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?.windows(2).position(|w| w == [0xFF, 0xD8]).map(|p| p + from)
}

/// Walk the JPEG that starts at `buf[0]` (an SOI) from `pos` in `state`; returns what was found and where to
/// resume when more bytes are needed.
fn scan(buf: &[u8], mut pos: usize, mut state: State) -> (Scan, usize, State) {
    loop {
        match state {
            State::Entropy => {
                // Entropy-coded data: 0xFF is followed by 0x00 (a stuffed byte), a restart marker, or fill
                // bytes; anything else is the next marker.
                loop {
                    let Some(ff) = buf[pos..].iter().position(|&b| b == 0xFF) else {
                        return (Scan::NeedMore, buf.len(), State::Entropy);
                    };
                    let at = pos + ff;
                    let Some(&next) = buf.get(at + 1) else { return (Scan::NeedMore, at, State::Entropy) };
                    match next {
                        0x00 | 0xD0..=0xD7 => pos = at + 2,
                        0xFF => pos = at + 1,
                        _ => {
                            pos = at;
                            state = State::Marker;
                            break;
                        }
                    }
                }
            }
            State::Marker => {
                let (Some(&ff), Some(&marker)) = (buf.get(pos), buf.get(pos + 1)) else {
                    return (Scan::NeedMore, pos, State::Marker);
                };
                if ff != 0xFF {
                    let resume = find_soi(buf, 2).unwrap_or(buf.len());
                    return (Scan::Broken { resume, reason: "expected a marker" }, 0, State::Marker);
                }
                match marker {
                    0xD9 => return (Scan::Complete(pos + 2), 0, State::Marker),
                    0xD8 => {
                        return (
                            Scan::Broken { resume: pos, reason: "a new image began before this one ended" },
                            0,
                            State::Marker,
                        )
                    }
                    0xFF => pos += 1,
                    0x01 | 0xD0..=0xD7 => pos += 2,
                    _ => {
                        let (Some(&hi), Some(&lo)) = (buf.get(pos + 2), buf.get(pos + 3)) else {
                            return (Scan::NeedMore, pos, State::Marker);
                        };
                        let len = u16::from_be_bytes([hi, lo]) as usize;
                        if len < 2 {
                            let resume = find_soi(buf, 2).unwrap_or(buf.len());
                            return (Scan::Broken { resume, reason: "a segment length below 2" }, 0, State::Marker);
                        }
                        let end = pos + 2 + len;
                        if end > buf.len() {
                            return (Scan::NeedMore, pos, State::Marker);
                        }
                        pos = end;
                        if marker == 0xDA {
                            state = State::Entropy;
                        }
                    }
                }
            }
        }
    }
}

/// Width and height from a JPEG's frame header (SOFn), if it has one.
pub fn jpeg_size(jpeg: &[u8]) -> Option<(u32, u32)> {
    let mut pos = 2;
    while pos + 4 <= jpeg.len() {
        if jpeg[pos] != 0xFF {
            return None;
        }
        let marker = jpeg[pos + 1];
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof && pos + 9 <= jpeg.len() {
            let h = u16::from_be_bytes([jpeg[pos + 5], jpeg[pos + 6]]) as u32;
            let w = u16::from_be_bytes([jpeg[pos + 7], jpeg[pos + 8]]) as u32;
            return Some((w, h));
        }
        if marker == 0xDA {
            return None;
        }
        pos += 2 + len;
    }
    None
}

/// The JPEG standard's example Huffman tables (ITU T.81 Annex K.3) as one DHT segment body: class/id, the 16
/// code-length counts, the symbols; DC luma, DC chroma, AC luma, AC chroma. UVC cameras leave them out of
/// their MJPEG frames (the UVC payload format says decoders must assume these).
#[rustfmt::skip]
const STANDARD_DHT: [(u8, [u8; 16], &[u8]); 4] = [
    (0x00, [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
    (0x01, [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
    (0x10, [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d], &[
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
        0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
        0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
        0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
        0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
        0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
        0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
        0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
        0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
        0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
        0xf9, 0xfa,
    ]),
    (0x11, [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77], &[
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
        0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
        0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
        0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
        0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
        0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
        0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
        0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
        0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
        0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
        0xf9, 0xfa,
    ]),
];

/// The JPEG with the standard Huffman tables put in before its scan when it has no DHT segment of its own
/// (UVC MJPEG); other JPEGs are returned as they are.
pub fn with_standard_tables(jpeg: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut pos = 2;
    while pos + 4 <= jpeg.len() && jpeg[pos] == 0xFF {
        match jpeg[pos + 1] {
            0xC4 => return jpeg.into(),
            0xDA => {
                let mut body = Vec::new();
                for (class_id, counts, symbols) in STANDARD_DHT {
                    body.push(class_id);
                    body.extend_from_slice(&counts);
                    body.extend_from_slice(symbols);
                }
                let mut out = Vec::with_capacity(jpeg.len() + body.len() + 4);
                out.extend_from_slice(&jpeg[..pos]);
                out.extend_from_slice(&[0xFF, 0xC4]);
                out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
                out.extend_from_slice(&body);
                out.extend_from_slice(&jpeg[pos..]);
                return out.into();
            }
            0xFF => pos += 1,
            _ => pos += 2 + u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize,
        }
    }
    jpeg.into()
}

/// Splits a byte stream into JPEGs at any read boundary (for tests and tools that hold the bytes already).
pub fn split(bytes: &[u8]) -> Vec<Result<Vec<u8>, SourceError>> {
    let mut s = MjpegStream::new(bytes, "bytes".into());
    let mut out = Vec::new();
    loop {
        match s.next_frame() {
            Ok(Some(f)) => match f.payload {
                Payload::Encoded(b) => out.push(Ok(b)),
                _ => unreachable!("MJPEG frames are encoded"),
            },
            Ok(None) => return out,
            Err(e) => out.push(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal structurally valid JPEG: SOI, an APP0 segment, SOF0 with the size, SOS with entropy data
    /// holding a stuffed 0xFF00 and a restart marker, EOI. (Not decodable: the splitter only walks markers.)
    fn jpeg(w: u16, h: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, b'J', b'F'];
        v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 8]);
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&[1, 1, 0x11, 0]);
        v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0]);
        v.extend_from_slice(payload);
        v.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56, 0xFF, 0xD9]);
        v
    }

    #[test]
    fn standard_tables_have_the_counts_they_declare() {
        for (id, counts, symbols) in STANDARD_DHT {
            assert_eq!(counts.iter().map(|&c| c as usize).sum::<usize>(), symbols.len(), "table {id:#x}");
        }
        let j = jpeg(4, 4, &[1]);
        let with = with_standard_tables(&j);
        assert_eq!(with.len(), j.len() + 4 + 4 * 17 + 12 + 12 + 162 + 162);
        assert_eq!(&*with_standard_tables(&with), &*with, "a JPEG with tables is left alone");
    }

    #[test]
    fn splits_whole_jpegs_and_reads_their_size() {
        let a = jpeg(640, 480, &[1, 2, 3]);
        let b = jpeg(32, 16, &[0xFF, 0x00, 0xFF, 0xFF, 0x00]);
        let stream = [&b"junk"[..], &a, &b].concat();
        let frames: Vec<_> = split(&stream).into_iter().map(Result::unwrap).collect();
        assert_eq!(frames, vec![a.clone(), b]);
        assert_eq!(jpeg_size(&a), Some((640, 480)));
    }

    #[test]
    fn resumes_after_every_read_boundary() {
        let a = jpeg(8, 8, &[9; 100]);
        let b = jpeg(4, 4, &[7; 10]);
        let stream = [a.clone(), b.clone()].concat();
        for chunk in 1..stream.len() {
            /// A reader that returns at most `chunk` bytes a call.
            struct Trickle<'a>(&'a [u8], usize);
            impl Read for Trickle<'_> {
                fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                    let n = self.1.min(self.0.len()).min(out.len());
                    out[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let mut s = MjpegStream::new(Trickle(&stream, chunk), "t".into());
            let mut got = Vec::new();
            while let Some(f) = s.next_frame().unwrap() {
                let Payload::Encoded(bytes) = f.payload else { unreachable!() };
                got.push(bytes);
            }
            assert_eq!(got, vec![a.clone(), b.clone()], "chunk {chunk}");
        }
    }

    #[test]
    fn a_truncated_jpeg_is_a_bad_frame_and_the_next_is_read() {
        let a = jpeg(8, 8, &[9; 100]);
        let b = jpeg(4, 4, &[7; 10]);
        let cut = &a[..a.len() / 2 + 3];
        let stream = [cut, &b, &a].concat();
        let out = split(&stream);
        assert_eq!(out.len(), 3);
        let Err(SourceError::BadFrame { frame: 0, reason, .. }) = &out[0] else { panic!("{:?}", out[0]) };
        assert!(reason.contains("byte offset 0"), "{reason}");
        assert_eq!(out[1].as_ref().unwrap(), &b);
        assert_eq!(out[2].as_ref().unwrap(), &a);
        // Cut at the end of the stream: a bad frame, then the end.
        let out = split(&[&b[..], cut].concat());
        assert_eq!(out.len(), 2);
        assert!(matches!(out[1], Err(SourceError::BadFrame { frame: 1, .. })));
    }

    #[test]
    fn garbage_and_broken_segments_do_not_stop_the_stream() {
        let b = jpeg(4, 4, &[7; 10]);
        // A segment length of 1, then a good frame.
        let bad = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01, 0x00];
        let out = split(&[&bad[..], &b, &[0u8; 1000][..]].concat());
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].is_err());
        assert_eq!(out[1].as_ref().unwrap(), &b);
        assert!(split(&[0xAB; 5000]).is_empty());
    }
}
