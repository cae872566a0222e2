//! Live frames for sail-edge: where frames come from ([`source`]: V4L2 cameras, MJPEG and YUV4MPEG2 pipes,
//! folders, video files through ffmpeg, a test pattern), how they reach the model ([`capture`]: a thread per
//! source, a latest-frame slot or an in-order handoff, never a queue), which of them are worth an answer
//! ([`gate`]: a luma-thumbnail scene gate with hysteresis and a heartbeat), and the loop that keeps a window
//! of frames in one session's KV cache and answers the question about them ([`watch`]). Updates go out as
//! text or JSON lines ([`update`]) and, with the `serial` feature, to a serial port ([`serial`]).

pub mod capture;
pub mod gate;
pub mod luma;
#[cfg(feature = "serial")]
pub mod serial;
pub mod source;
pub mod update;
pub mod watch;

pub use capture::{Capture, CaptureStats, Pace};
pub use gate::{GateConfig, GateReason, SceneGate};
pub use source::{CapturedFrame, FrameSource, Payload, SourceError, SourceSpec, StdinFormat};
pub use update::{StageMs, Update};
pub use watch::{Summary, WatchError, WatchOptions, Watcher};
