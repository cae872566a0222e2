//! A folder of PNG/JPEG files read in name order; with `follow`, files that appear later are read as they
//! arrive. Only the last name read is remembered (a folder that gains files for days costs no memory), so
//! files must arrive in name order (timestamps or counters in the names, as cameras and `ffmpeg -f image2`
//! write them). A file still being written is waited for, not reported bad: writers that cannot write then
//! rename are covered by checking the image's end marker.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::{CapturedFrame, FrameSource, Payload, SourceError};

/// How often a followed folder is listed.
const POLL: Duration = Duration::from_millis(50);
/// Listing attempts (250 ms apart) before a folder that cannot be listed ends the run.
const LIST_RETRIES: u32 = 20;
/// How long a file that looks incomplete is waited for before it is reported as a bad frame.
const SETTLE: Duration = Duration::from_secs(2);

pub struct FolderSource {
    dir: PathBuf,
    follow: bool,
    /// Stream-clock spacing of frames when not following.
    period: Duration,
    last: Option<OsString>,
    index: u64,
    start: Instant,
}

impl FolderSource {
    pub fn new(dir: &Path, follow: bool, fps: Option<u32>) -> Result<FolderSource, SourceError> {
        if !dir.is_dir() {
            return Err(SourceError::Fatal {
                origin: dir.display().to_string(),
                reason: "not a folder (--frames takes a folder of PNG or JPEG files)".into(),
            });
        }
        if fps == Some(0) {
            return Err(SourceError::Fatal {
                origin: dir.display().to_string(),
                reason: "--fps must be at least 1".into(),
            });
        }
        let period = Duration::from_secs_f64(1.0 / fps.unwrap_or(1) as f64);
        Ok(FolderSource { dir: dir.to_path_buf(), follow, period, last: None, index: 0, start: Instant::now() })
    }

    /// The first image file named after the last one read. A listing that fails is tried again for a few
    /// seconds (a network share's hiccup) before it is fatal: reopening the source would start over.
    fn next_name(&self) -> Result<Option<OsString>, SourceError> {
        let mut attempt = 0;
        let entries = loop {
            match std::fs::read_dir(&self.dir) {
                Ok(entries) => break entries,
                Err(e) if attempt < LIST_RETRIES => {
                    if attempt == 0 {
                        tracing::warn!("{}: cannot list the folder: {e}; trying again", self.dir.display());
                    }
                    attempt += 1;
                    std::thread::sleep(POLL * 5);
                }
                Err(e) => {
                    return Err(SourceError::Fatal {
                        origin: self.dir.display().to_string(),
                        reason: format!("cannot list the folder: {e}"),
                    })
                }
            }
        };
        let mut best: Option<OsString> = None;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !is_image_name(Path::new(&name)) || self.last.as_ref().is_some_and(|l| name <= *l) {
                continue;
            }
            if best.as_ref().is_none_or(|b| name < *b) {
                best = Some(name);
            }
        }
        Ok(best)
    }
}

/// PNG or JPEG by extension.
pub fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// Whether the bytes end as a whole PNG (IEND chunk) or JPEG (EOI) does.
pub fn looks_complete(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G']) {
        bytes.len() >= 12 && &bytes[bytes.len() - 8..bytes.len() - 4] == b"IEND"
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        // Trailing padding after EOI is common; look at the last few bytes.
        bytes[bytes.len().saturating_sub(16)..].windows(2).any(|w| w == [0xFF, 0xD9])
    } else {
        false
    }
}

impl FrameSource for FolderSource {
    fn name(&self) -> String {
        format!("{}{}", self.dir.display(), if self.follow { " (following)" } else { "" })
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, SourceError> {
        let mut waited_since: Option<(OsString, Instant)> = None;
        loop {
            let Some(name) = self.next_name()? else {
                if !self.follow {
                    return Ok(None);
                }
                std::thread::sleep(POLL);
                continue;
            };
            let path = self.dir.join(&name);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                // Removed between the listing and the read: list again (after a pause, so that an entry that
                // keeps being listed and cannot be read does not spin). A dangling link is a bad frame.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::fs::symlink_metadata(&path).is_err() => {
                    std::thread::sleep(POLL);
                    continue;
                }
                Err(e) => {
                    self.last = Some(name);
                    let index = self.index;
                    self.index += 1;
                    return Err(SourceError::BadFrame {
                        origin: self.dir.display().to_string(),
                        frame: index,
                        reason: format!("{}: {e}", path.display()),
                    });
                }
            };
            if !looks_complete(&bytes) {
                let recent = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() < SETTLE)
                    .unwrap_or(false);
                let since = match &waited_since {
                    Some((n, t)) if *n == name => *t,
                    _ => {
                        let now = Instant::now();
                        waited_since = Some((name.clone(), now));
                        now
                    }
                };
                if self.follow && (recent || since.elapsed() < SETTLE) {
                    std::thread::sleep(POLL);
                    continue;
                }
            }
            self.last = Some(name);
            let index = self.index;
            self.index += 1;
            let (width, height) = super::encoded_size(&bytes).unwrap_or((0, 0));
            let timestamp = if self.follow { self.start.elapsed() } else { self.period * index as u32 };
            return Ok(Some(CapturedFrame { index, timestamp, width, height, payload: Payload::Encoded(bytes) }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_name_order_and_follows_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let png = |v: u8| {
            let img = image::RgbImage::from_pixel(4, 4, image::Rgb([v, v, v]));
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Png).unwrap();
            out.into_inner()
        };
        std::fs::write(dir.path().join("b.png"), png(2)).unwrap();
        std::fs::write(dir.path().join("a.png"), png(1)).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let mut s = FolderSource::new(dir.path(), false, Some(2)).unwrap();
        let f = s.next_frame().unwrap().unwrap();
        assert_eq!((f.index, f.timestamp, f.width), (0, Duration::ZERO, 4));
        assert_eq!(f.to_rgb("t").unwrap().get_pixel(0, 0).0, [1, 1, 1]);
        let f = s.next_frame().unwrap().unwrap();
        assert_eq!((f.index, f.timestamp), (1, Duration::from_millis(500)));
        assert!(s.next_frame().unwrap().is_none());

        let mut s = FolderSource::new(dir.path(), true, None).unwrap();
        s.next_frame().unwrap();
        s.next_frame().unwrap();
        let path = dir.path().join("c.png");
        let bytes = png(3);
        let writer = std::thread::spawn(move || {
            // Written in two halves: the reader must wait for the end of the file.
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            std::fs::write(&path, &bytes).unwrap();
        });
        let f = s.next_frame().unwrap().unwrap();
        writer.join().unwrap();
        assert_eq!(f.to_rgb("t").unwrap().get_pixel(0, 0).0, [3, 3, 3]);
        assert!(FolderSource::new(&dir.path().join("c.png"), false, None).is_err());
        // A dangling link is a bad frame, and the files after it are read.
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone.png"), dir.path().join("a.png")).unwrap();
        std::fs::write(dir.path().join("b.png"), png(5)).unwrap();
        let mut s = FolderSource::new(dir.path(), false, None).unwrap();
        assert!(matches!(s.next_frame(), Err(SourceError::BadFrame { frame: 0, .. })));
        assert_eq!(s.next_frame().unwrap().unwrap().index, 1);
    }
}
