//! The capture thread: it reads the source and hands frames to the loop through a single slot, never a queue.
//!
//! - [`Pace::Live`]: the slot holds the latest frame; a frame not taken before the next arrives is dropped
//!   and counted (a camera outruns the model; answering stale frames would only add latency).
//! - [`Pace::All`]: the reader waits until the loop has taken the slot's frame, so every frame is considered
//!   in order (a recording).
//!
//! Bad frames are counted and skipped; a source that disconnects is reopened with exponential backoff up to
//! `retries` times in a row before the capture ends with the error.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::source::{CapturedFrame, SourceError, SourceSpec};

/// How frames are handed to the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Latest frame wins; stale frames are dropped and counted.
    Live,
    /// Every frame, in order; the reader waits for the loop.
    All,
}

impl std::str::FromStr for Pace {
    type Err = String;
    fn from_str(s: &str) -> Result<Pace, String> {
        match s {
            "live" => Ok(Pace::Live),
            "all" => Ok(Pace::All),
            other => Err(format!("unknown pace '{other}' (live or all)")),
        }
    }
}

/// Counters kept by the capture thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames read from the source.
    pub captured: u64,
    /// Frames replaced in the slot before the loop took them (live pace).
    pub dropped: u64,
    /// Frames the source reported unusable.
    pub bad: u64,
    /// Times the source was reopened after a disconnect.
    pub reconnects: u64,
}

/// Backoff between reopen attempts: 0.25 s doubling to at most 8 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(8))
}

#[derive(Default)]
struct Slot {
    frame: Option<CapturedFrame>,
    stats: CaptureStats,
    /// Set when the source ended: `Ok` for a clean end, `Err` for the error that ended it.
    ended: Option<Result<(), SourceError>>,
    stop: bool,
    name: String,
}

struct Shared {
    slot: Mutex<Slot>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running capture: the thread, and the slot it fills.
pub struct Capture {
    shared: Arc<Shared>,
}

impl Capture {
    /// Open `spec` and start reading it on its own thread. The first open happens here, so a source that
    /// cannot be opened at all is reported at once (after its retries, for a device).
    pub fn start(spec: SourceSpec, pace: Pace, retries: u32) -> Result<Capture, SourceError> {
        let opener = move || spec.open();
        Capture::start_with(opener, pace, retries)
    }

    /// [`Capture::start`] with any way of opening a source (library users with their own sources).
    pub fn start_with<F>(mut open: F, pace: Pace, retries: u32) -> Result<Capture, SourceError>
    where
        F: FnMut() -> Result<Box<dyn crate::source::FrameSource>, SourceError> + Send + 'static,
    {
        let mut attempt = 0;
        let mut source = loop {
            match open() {
                Ok(s) => break s,
                Err(e) if e.is_retryable() && attempt < retries => {
                    tracing::warn!("{e}; retrying in {:?}", backoff(attempt));
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                Err(e) if e.is_retryable() => return Err(gave_up(e, retries)),
                Err(e) => return Err(e),
            }
        };
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot { name: source.name(), ..Slot::default() }),
            changed: Condvar::new(),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("sail-capture".into())
            .spawn(move || {
                let shared = thread_shared;
                let mut failures = 0u32;
                // A reopened source counts and times from 0 again: its frames are moved past the last one
                // seen, so indices stay unique and the stream clock (the gate's heartbeat) goes on.
                let (mut index_base, mut time_base) = (0u64, Duration::ZERO);
                let (mut next_index, mut last_time) = (0u64, Duration::ZERO);
                loop {
                    if shared.lock().stop {
                        return;
                    }
                    let result = source.next_frame();
                    let mut slot = shared.lock();
                    match result {
                        Ok(Some(mut frame)) => {
                            failures = 0;
                            frame.index += index_base;
                            frame.timestamp += time_base;
                            next_index = frame.index + 1;
                            last_time = frame.timestamp;
                            slot.stats.captured += 1;
                            if pace == Pace::All {
                                while slot.frame.is_some() && !slot.stop {
                                    slot = shared.changed.wait(slot).unwrap_or_else(|p| p.into_inner());
                                }
                            }
                            if slot.stop {
                                return;
                            }
                            if slot.frame.replace(frame).is_some() {
                                slot.stats.dropped += 1;
                            }
                            shared.changed.notify_all();
                        }
                        Ok(None) => {
                            slot.ended = Some(Ok(()));
                            shared.changed.notify_all();
                            return;
                        }
                        Err(e @ SourceError::BadFrame { .. }) => {
                            tracing::warn!("{e}");
                            slot.stats.bad += 1;
                        }
                        Err(e) if e.is_retryable() => {
                            drop(slot);
                            tracing::warn!("{e}");
                            drop(std::mem::replace(&mut source, Box::new(Closed)));
                            loop {
                                if failures >= retries {
                                    let mut slot = shared.lock();
                                    slot.ended = Some(Err(gave_up(e, retries)));
                                    shared.changed.notify_all();
                                    return;
                                }
                                std::thread::sleep(backoff(failures));
                                failures += 1;
                                if shared.lock().stop {
                                    return;
                                }
                                match open() {
                                    Ok(s) => {
                                        tracing::info!("{}: reopened", s.name());
                                        source = s;
                                        (index_base, time_base) = (next_index, last_time);
                                        shared.lock().stats.reconnects += 1;
                                        break;
                                    }
                                    Err(again) if again.is_retryable() => tracing::warn!("{again}"),
                                    Err(fatal) => {
                                        let mut slot = shared.lock();
                                        slot.ended = Some(Err(fatal));
                                        shared.changed.notify_all();
                                        return;
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            slot.ended = Some(Err(e));
                            shared.changed.notify_all();
                            return;
                        }
                    }
                }
            })
            .map_err(|e| SourceError::Fatal {
                origin: "capture".into(),
                reason: format!("cannot start the capture thread: {e}"),
            })?;
        Ok(Capture { shared })
    }

    /// The source's name as opened.
    pub fn name(&self) -> String {
        self.shared.lock().name.clone()
    }

    /// The next frame, waiting at most `wait` (`None` then): `Ok(Some)` a frame, `Ok(None)` the source
    /// ended cleanly (after its last frame was taken), `Err` it ended with an error.
    pub fn next(&self, wait: Duration) -> Result<Option<Option<CapturedFrame>>, SourceError> {
        let mut slot = self.shared.lock();
        let deadline = std::time::Instant::now() + wait;
        loop {
            if let Some(frame) = slot.frame.take() {
                self.shared.changed.notify_all();
                return Ok(Some(Some(frame)));
            }
            match &slot.ended {
                Some(Ok(())) => return Ok(Some(None)),
                Some(Err(e)) => return Err(e.clone()),
                None => {}
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            slot = self.shared.changed.wait_timeout(slot, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    pub fn stats(&self) -> CaptureStats {
        self.shared.lock().stats
    }
}

impl Drop for Capture {
    /// Tell the thread to stop. It is not joined: a read blocked on a pipe returns only when data or the end
    /// comes, and the thread ends then (it holds nothing the loop needs).
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
    }
}

fn gave_up(e: SourceError, retries: u32) -> SourceError {
    match e {
        SourceError::Disconnected { origin, reason } => SourceError::Disconnected {
            origin,
            reason: format!("{reason} (gave up after {retries} retries; --retries sets how many)"),
        },
        SourceError::Timeout { origin, after } => SourceError::Disconnected {
            origin,
            reason: format!("no frame within {after:?} (gave up after {retries} retries; --retries sets how many)"),
        },
        other => other,
    }
}

/// The source between a disconnect and a reopen.
struct Closed;

impl crate::source::FrameSource for Closed {
    fn name(&self) -> String {
        "closed".into()
    }
    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, SourceError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FrameSource, Payload};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A source that yields `frames` frames, reporting `bad` as bad and disconnecting after `disconnect_at`.
    struct Scripted {
        next: u64,
        frames: u64,
        bad: Vec<u64>,
        disconnect_at: Option<u64>,
    }

    impl FrameSource for Scripted {
        fn name(&self) -> String {
            "scripted".into()
        }
        fn next_frame(&mut self) -> Result<Option<CapturedFrame>, SourceError> {
            let i = self.next;
            self.next += 1;
            if Some(i) == self.disconnect_at {
                return Err(SourceError::Disconnected { origin: "scripted".into(), reason: "unplugged".into() });
            }
            if i >= self.frames {
                return Ok(None);
            }
            if self.bad.contains(&i) {
                return Err(SourceError::BadFrame { origin: "scripted".into(), frame: i, reason: "corrupt".into() });
            }
            let payload = Payload::Rgb(image::RgbImage::new(1, 1));
            Ok(Some(CapturedFrame { index: i, timestamp: Duration::ZERO, width: 1, height: 1, payload }))
        }
    }

    fn take_all(c: &Capture) -> Result<Vec<u64>, SourceError> {
        let mut got = Vec::new();
        loop {
            match c.next(Duration::from_secs(10))? {
                Some(Some(f)) => got.push(f.index),
                Some(None) => return Ok(got),
                None => panic!("no frame within 10 s"),
            }
        }
    }

    #[test]
    fn pace_all_hands_over_every_frame_in_order_and_skips_bad_ones() {
        let open = || {
            Ok(Box::new(Scripted { next: 0, frames: 50, bad: vec![3, 7], disconnect_at: None }) as Box<dyn FrameSource>)
        };
        let c = Capture::start_with(open, Pace::All, 0).unwrap();
        let want: Vec<u64> = (0..50).filter(|i| *i != 3 && *i != 7).collect();
        assert_eq!(take_all(&c).unwrap(), want);
        assert_eq!(c.stats(), CaptureStats { captured: 48, dropped: 0, bad: 2, reconnects: 0 });
    }

    #[test]
    fn pace_live_drops_stale_frames_and_counts_them() {
        let open = || {
            Ok(Box::new(Scripted { next: 0, frames: 2000, bad: vec![], disconnect_at: None }) as Box<dyn FrameSource>)
        };
        let c = Capture::start_with(open, Pace::Live, 0).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let got = take_all(&c).unwrap();
        let s = c.stats();
        assert_eq!(s.captured, 2000);
        assert_eq!(got.len() as u64 + s.dropped, 2000, "every frame is either taken or counted as dropped");
        assert!(s.dropped > 0, "a reader that slept while 2,000 frames came dropped some");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "frames stay in order");
    }

    #[test]
    fn a_disconnect_reopens_and_retries_run_out_with_a_clear_error() {
        // Reopened once (the second source is healthy): every frame of both arrives.
        let opens = Arc::new(AtomicU32::new(0));
        let o = opens.clone();
        let open = move || {
            let n = o.fetch_add(1, Ordering::SeqCst);
            let disconnect_at = (n == 0).then_some(5);
            Ok(Box::new(Scripted { next: 0, frames: 10, bad: vec![], disconnect_at }) as Box<dyn FrameSource>)
        };
        let c = Capture::start_with(open, Pace::All, 3).unwrap();
        let got = take_all(&c).unwrap();
        assert_eq!(got, (0..15).collect::<Vec<u64>>(), "the reopened source's frames are numbered on");
        assert_eq!(c.stats().reconnects, 1);
        // Every reopen fails: the error names the source and the retries.
        let o = Arc::new(AtomicU32::new(0));
        let o2 = o.clone();
        let open = move || {
            if o2.fetch_add(1, Ordering::SeqCst) == 0 {
                return Ok(Box::new(Scripted { next: 0, frames: 10, bad: vec![], disconnect_at: Some(2) })
                    as Box<dyn FrameSource>);
            }
            Err(SourceError::Disconnected { origin: "scripted".into(), reason: "no such device".into() })
        };
        let c = Capture::start_with(open, Pace::All, 2).unwrap();
        let err = take_all(&c).unwrap_err();
        assert!(err.to_string().contains("gave up after 2 retries"), "{err}");
        assert_eq!(o.load(Ordering::SeqCst), 3, "one open and two reopens");
        // At the start: a device that cannot be opened at all.
        let open = || Err(SourceError::Disconnected { origin: "/dev/video9".into(), reason: "No such file".into() });
        let err = Capture::start_with(open, Pace::Live, 1).err().unwrap();
        assert!(
            err.to_string().contains("/dev/video9") && err.to_string().contains("gave up after 1 retries"),
            "{err}"
        );
    }
}
