//! Video files, decoded by an `ffmpeg` subprocess into a YUV4MPEG2 pipe (4:2:0, the file's own frame rate
//! unless `fps` is given) and read as [`super::y4m`]. Frames are read as the loop asks for them: the pipe's
//! buffer is all that is ever held, never the decoded video.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use super::y4m::Y4mStream;
use super::{CapturedFrame, FrameSource, SourceError};

pub struct VideoSource {
    path: PathBuf,
    child: Child,
    stream: Y4mStream<BufReader<ChildStdout>>,
    /// The last lines ffmpeg wrote on stderr, read as they come (a full stderr pipe would stall ffmpeg).
    complaints: Option<std::thread::JoinHandle<String>>,
}

/// The program on PATH named `name`, if any.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file())
}

impl VideoSource {
    pub fn open(path: &Path, fps: Option<u32>) -> Result<VideoSource, SourceError> {
        let source = path.display().to_string();
        let fatal = |reason: String| SourceError::Fatal { origin: source.clone(), reason };
        if !path.is_file() {
            return Err(fatal("no such file".into()));
        }
        let ffmpeg = find_on_path("ffmpeg").ok_or_else(|| {
            fatal("--video decodes files with ffmpeg, and there is none on PATH (install it: apt-get install ffmpeg; or pipe frames in with --stdin y4m)".into())
        })?;
        let mut cmd = Command::new(ffmpeg);
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"]).arg(path).args(["-an", "-sn"]);
        if let Some(fps) = fps {
            if fps == 0 {
                return Err(fatal("--fps must be at least 1".into()));
            }
            cmd.args(["-vf", &format!("fps={fps}")]);
        }
        cmd.args(["-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-"]);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fatal(format!("cannot start ffmpeg: {e}")))?;
        let stdout = child.stdout.take().ok_or_else(|| fatal("ffmpeg has no stdout".into()))?;
        let mut complaints = child.stderr.take().map(|stderr| std::thread::spawn(move || last_line(stderr)));
        match Y4mStream::new(BufReader::new(stdout), source.clone()) {
            Ok(stream) => Ok(VideoSource { path: path.to_path_buf(), child, stream, complaints }),
            Err(e) => {
                let why = finish(&mut child, &mut complaints);
                Err(fatal(format!("ffmpeg could not decode it: {}", why.unwrap_or_else(|| e.to_string()))))
            }
        }
    }
}

/// Read a pipe to its end, keeping only its last non-empty line.
fn last_line(pipe: impl Read) -> String {
    let mut last = String::new();
    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
        if !line.trim().is_empty() {
            last = line.trim().chars().take(1000).collect();
        }
    }
    last
}

/// Wait for ffmpeg and return its complaint when it failed.
fn finish(child: &mut Child, complaints: &mut Option<std::thread::JoinHandle<String>>) -> Option<String> {
    let status = child.wait().ok()?;
    let last = complaints.take().and_then(|t| t.join().ok()).unwrap_or_default();
    if status.success() {
        return None;
    }
    Some(if last.is_empty() { format!("ffmpeg exited with {status}") } else { last })
}

impl FrameSource for VideoSource {
    fn name(&self) -> String {
        self.stream.name()
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, SourceError> {
        match self.stream.next_frame() {
            Ok(None) => match finish(&mut self.child, &mut self.complaints) {
                None => Ok(None),
                Some(why) => Err(SourceError::Fatal { origin: self.path.display().to_string(), reason: why }),
            },
            other => other,
        }
    }
}

impl Drop for VideoSource {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
