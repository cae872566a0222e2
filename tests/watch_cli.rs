//! `sail-edge watch` end to end on the tiny fixture: the streaming prompt equals `describe --video-frames`,
//! every source on streams made here with ffmpeg, the scene gate, serial output through socat, bad input,
//! and a short soak. (The V4L2 buffer conversions are in live/tests/conversion.rs.)

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{convert_tiny, fixtures, stderr};
use serde_json::Value;

/// `tool` on PATH, or a skip said aloud; a failure when `SAIL_EDGE_EXPECT_TOOLS` names it (CI).
fn tool(name: &str) -> bool {
    let found = live::source::video::find_on_path(name).is_some();
    if !found {
        let expected = std::env::var("SAIL_EDGE_EXPECT_TOOLS").unwrap_or_default();
        assert!(
            !expected.split(',').any(|t| t.trim() == name),
            "{name} is not on PATH but SAIL_EDGE_EXPECT_TOOLS expects it"
        );
        eprintln!("SKIPPED: {name} is not on PATH; this test's path did not run");
    }
    found
}

/// The tiny model in f32 (with its mmproj beside it), converted once.
fn model() -> &'static Path {
    static M: OnceLock<PathBuf> = OnceLock::new();
    M.get_or_init(|| convert_tiny("f32").1)
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sail-edge"))
}

/// `watch` on the tiny model (f32 KV: bit-identical answers whatever the reuse) with `args`, stdin from
/// `input`.
fn watch(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut cmd = bin();
    cmd.args(["watch", "-m", model().to_str().unwrap(), "--kv-type", "f32", "-t", "2"]).args(args);
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(bytes) = input {
        let mut stdin = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        // Written from a thread: the loop reads while this writes (a pipe holds only 64 KiB).
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let out = child.wait_with_output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    out
}

fn updates(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn ids(u: &Value) -> Vec<i64> {
    u["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

/// A temporary folder of symlinks to fixture images, named so that they sort in the order given.
fn frame_dir(images: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, name) in images.iter().enumerate() {
        let target = fixtures().join("images").join(name);
        let ext = target.extension().unwrap().to_str().unwrap().to_string();
        std::os::unix::fs::symlink(&target, dir.path().join(format!("{i:03}.{ext}"))).unwrap();
    }
    dir
}

const Q: &str = "What happens in these frames?";

/// What `trace --video-frames` generates for `frames` (greedy ids, no stop) and `describe`'s text.
fn reference(frames: &[&str], n: usize) -> (Vec<i64>, usize, String) {
    let list: Vec<String> = frames.iter().map(|f| fixtures().join("images").join(f).display().to_string()).collect();
    let list = list.join(",");
    let out = tempfile::tempdir().unwrap();
    let m = model().to_str().unwrap();
    let n = n.to_string();
    let args = ["-m", m, "--kv-type", "f32", "--video-frames", &list, "-p", Q, "-n", &n];
    let o = bin().arg("trace").args(args).args(["--out", out.path().to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |name: &str| -> Vec<i64> {
        let bytes = fs::read(out.path().join(format!("{name}.npy"))).unwrap();
        npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
    };
    let o = bin().arg("describe").args(args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap().trim_end_matches('\n').to_string();
    (read("gen_ids"), read("input_ids").len(), text)
}

/// The streamed window's ids are those of the whole prompt computed at once: a prefix of the reference's
/// greedy ids, all of them unless the model ended its turn.
fn assert_same_answer(u: &Value, reference: &(Vec<i64>, usize, String), what: &str) {
    let (gen, prompt_len, text) = reference;
    let got = ids(u);
    assert_eq!(got[..], gen[..got.len()], "{what}: ids");
    if got.len() < gen.len() {
        assert_eq!(u["stop"], "end_of_turn", "{what}");
    }
    assert_eq!(u["prompt_tokens"].as_u64().unwrap() as usize, *prompt_len, "{what}: prompt length");
    assert_eq!(u["text"].as_str().unwrap(), text, "{what}: text");
}

#[test]
fn streamed_window_answers_exactly_what_describe_answers() {
    let images = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"];
    let dir = frame_dir(&images);
    let d = dir.path().to_str().unwrap();
    let args = ["--frames", d, "--gate", "0", "--window", "3", "--json", "-p", Q, "-n", "12"];
    let o = watch(&args, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let u = updates(&o);
    assert_eq!(u.len(), 4);
    // The third update: frames 0, 1, 2 as Frame-1..3, the same prompt as describe --video-frames a,b,c.
    assert_eq!(u[2]["frames"], serde_json::json!([0, 1, 2]));
    assert_same_answer(&u[2], &reference(&images[..3], 12), "window of 3");
    // Growing the window computed only the new frame and the question: one tile encoded, and fewer
    // positions prefilled than the prompt holds.
    for (k, u) in u.iter().enumerate().take(3).skip(1) {
        assert_eq!((u["tiles"].as_u64(), u["tiles_cached"].as_u64()), (Some(1), Some(0)), "update {k}");
        assert!(u["prefilled_tokens"].as_u64() < u["prompt_tokens"].as_u64(), "update {k}");
        assert_eq!(u["reprefill"], false);
    }
    // The fourth slid the window: frames 1, 2, 3, the two older ones from the feature cache, prefilled again.
    assert_eq!(u[3]["frames"], serde_json::json!([1, 2, 3]));
    assert_eq!(u[3]["reprefill"], true);
    assert_eq!((u[3]["tiles"].as_u64(), u[3]["tiles_cached"].as_u64()), (Some(3), Some(2)));
    assert_same_answer(&u[3], &reference(&images[1..], 12), "slid window");
    // Without reuse: everything recomputed, the same answers.
    let o = watch(&[&args[..], &["--no-reuse"]].concat(), None);
    let plain = updates(&o);
    assert_eq!(plain.len(), 4);
    for (a, b) in u.iter().zip(&plain) {
        assert_eq!(ids(a), ids(b));
        assert_eq!(b["prefilled_tokens"], b["prompt_tokens"], "--no-reuse prefills everything");
    }
    assert_eq!(plain[2]["tiles_cached"], 0);
}

/// `ffmpeg` with `args`, its stdout.
fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let o = Command::new("ffmpeg").args(["-v", "error", "-nostdin"]).args(args).output().unwrap();
    assert!(o.status.success(), "ffmpeg {args:?}: {}", stderr(&o));
    o.stdout
}

const SRC: &str = "testsrc2=size=160x120:rate=10";

#[test]
fn mjpeg_on_stdin_with_a_truncated_frame_goes_on_and_ends_cleanly_at_eof() {
    if !tool("ffmpeg") {
        return;
    }
    let stream = ffmpeg(&["-f", "lavfi", "-i", SRC, "-frames:v", "4", "-f", "mjpeg", "-"]);
    let jpegs: Vec<Vec<u8>> = live::source::mjpeg::split(&stream).into_iter().map(Result::unwrap).collect();
    assert_eq!(jpegs.len(), 4);
    let cut = &jpegs[1][..jpegs[1].len() / 2];
    let bytes = [&jpegs[0][..], cut, &jpegs[2], &jpegs[3]].concat();
    let o = watch(&["--stdin", "mjpeg", "--pace", "all", "--gate", "0", "--json", "-n", "2"], Some(&bytes));
    assert!(o.status.success(), "{}", stderr(&o));
    let u = updates(&o);
    let frames: Vec<Value> = u.iter().map(|u| u["frames"][0].clone()).collect();
    assert_eq!(frames, [0, 2, 3], "frame 1 was cut short and skipped");
    let err = stderr(&o);
    assert!(err.contains("frame 1") && err.contains("skipped"), "{err}");
    assert!(err.contains("bad 1") && err.contains("ended by end of stream"), "the summary line: {err}");
}

#[test]
fn y4m_on_stdin_and_unsupported_colour_spaces() {
    if !tool("ffmpeg") {
        return;
    }
    let stream =
        ffmpeg(&["-f", "lavfi", "-i", SRC, "-frames:v", "3", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-"]);
    let o = watch(&["--stdin", "y4m", "--pace", "all", "--gate", "0", "--json", "-n", "2"], Some(&stream));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(updates(&o).len(), 3);
    let tenbit = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        SRC,
        "-frames:v",
        "1",
        "-pix_fmt",
        "yuv420p10le",
        "-strict",
        "-1",
        "-f",
        "yuv4mpegpipe",
        "-",
    ]);
    let o = watch(&["--stdin", "y4m", "-n", "2"], Some(&tenbit));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unsupported: YUV4MPEG2 colour space C420p10"), "{}", stderr(&o));
}

#[test]
fn video_files_through_ffmpeg_and_a_clear_error_without_it() {
    if !tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("clip.mkv");
    ffmpeg(&["-f", "lavfi", "-i", SRC, "-frames:v", "5", "-c:v", "ffv1", "-y", video.to_str().unwrap()]);
    let v = video.to_str().unwrap();
    let o = watch(&["--video", v, "--gate", "0", "--json", "-n", "2"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let u = updates(&o);
    assert_eq!(u.len(), 5, "--video defaults to every frame in order");
    let o =
        bin().args(["watch", "-m", model().to_str().unwrap(), "--video", v]).env("PATH", dir.path()).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("ffmpeg") && stderr(&o).contains("PATH"), "{}", stderr(&o));
    let o = watch(&["--video", dir.path().join("missing.mp4").to_str().unwrap()], None);
    assert!(!o.status.success() && stderr(&o).contains("missing.mp4: no such file"), "{}", stderr(&o));
}

/// `watch` on the tiny model running in the background with `args`: the child and its updates as they come.
fn spawn_watch(args: &[&str]) -> (std::process::Child, impl Iterator<Item = Value>) {
    let mut child = bin()
        .args(["watch", "-m", model().to_str().unwrap(), "-t", "2", "--json", "-n", "2"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines.map(|l| serde_json::from_str(&l.unwrap()).unwrap()))
}

#[test]
fn a_followed_folder_gaining_files_mid_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let img = |name: &str| fs::read(fixtures().join("images").join(name)).unwrap();
    fs::write(d.join("001.png"), img("astronaut.png")).unwrap();
    let (mut child, mut updates) =
        spawn_watch(&["--frames", d.to_str().unwrap(), "--follow", "--gate", "0", "--max-updates", "3"]);
    let first = updates.next().unwrap();
    assert_eq!(first["frames"], serde_json::json!([0]));
    // A file written then renamed into place, and one written in two halves in place.
    fs::write(d.join("tmp.part"), img("chelsea.png")).unwrap();
    fs::rename(d.join("tmp.part"), d.join("002.png")).unwrap();
    let second = updates.next().unwrap();
    assert_eq!(second["frames"], serde_json::json!([1]));
    let coffee = img("coffee.png");
    fs::write(d.join("003.png"), &coffee[..coffee.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    fs::write(d.join("003.png"), &coffee).unwrap();
    let third = updates.next().unwrap();
    assert_eq!((third["frames"].clone(), third["bad"].clone()), (serde_json::json!([2]), serde_json::json!(0)));
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("ended by --max-updates"), "{err}");
}

#[test]
fn an_edited_prompt_file_is_asked_on_the_next_frame() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    fs::create_dir(&frames).unwrap();
    let page = fs::read(fixtures().join("images").join("page.png")).unwrap();
    fs::write(frames.join("001.png"), &page).unwrap();
    let prompt = dir.path().join("task.txt");
    fs::write(&prompt, "Read the title.").unwrap();
    let (mut child, mut updates) = spawn_watch(&[
        "--frames",
        frames.to_str().unwrap(),
        "--follow",
        "--prompt-file",
        prompt.to_str().unwrap(),
        "--gate",
        "5",
        "--max-updates",
        "2",
    ]);
    let first = updates.next().unwrap();
    assert_eq!(first["reason"], "first");
    // The same page again: the gate alone would pass over it; the new task makes it an update.
    fs::write(&prompt, "Read every word on the page, please.").unwrap();
    fs::write(frames.join("002.png"), &page).unwrap();
    let second = updates.next().unwrap();
    assert_eq!((second["reason"].clone(), second["frames"].clone()), ("prompt".into(), serde_json::json!([1])));
    assert!(second["prompt_tokens"].as_u64() > first["prompt_tokens"].as_u64(), "the longer question is in the prompt");
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_gate_skips_identical_frames_answers_a_change_and_keeps_a_heartbeat() {
    // Four identical frames, then a different one: the first and the change are answered.
    let dir = frame_dir(&["page.png", "page.png", "page.png", "page.png", "chelsea.png"]);
    let d = dir.path().to_str().unwrap();
    let o = watch(&["--frames", d, "--gate", "5", "--min-stable", "1", "--json", "-n", "2"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let u = updates(&o);
    let got: Vec<(Value, Value)> = u.iter().map(|u| (u["frames"][0].clone(), u["reason"].clone())).collect();
    assert_eq!(got, [(0.into(), "first".into()), (4.into(), "changed".into())]);
    assert_eq!(u[1]["skipped"], 3);
    // With two frames of hysteresis a change that lasts one frame is not answered.
    let dir = frame_dir(&["page.png", "chelsea.png", "page.png", "page.png"]);
    let d = dir.path().to_str().unwrap();
    let o = watch(&["--frames", d, "--gate", "5", "--min-stable", "2", "--json", "-n", "2"], None);
    assert_eq!(updates(&o).len(), 1, "{}", stderr(&o));
    // Six identical frames one second apart on the stream clock, a heartbeat every 2 s: frames 0, 2, 4.
    let dir = frame_dir(&["page.png"; 6]);
    let d = dir.path().to_str().unwrap();
    let o = watch(&["--frames", d, "--fps", "1", "--every", "2s", "--json", "-n", "2"], None);
    let got: Vec<(Value, Value)> = updates(&o).iter().map(|u| (u["frames"][0].clone(), u["reason"].clone())).collect();
    assert_eq!(got, [(0.into(), "first".into()), (2.into(), "heartbeat".into()), (4.into(), "heartbeat".into())]);
    // --on-change: the same answer twice is written once.
    let o = watch(&["--frames", d, "--gate", "0", "--on-change", "--json", "-n", "2"], None);
    assert_eq!(updates(&o).len(), 1, "identical frames give identical answers, written once");
}

#[test]
fn a_camera_that_is_not_there_is_retried_then_reported() {
    let o = watch(&["--camera", "/dev/video97", "--retries", "2"], None);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("/dev/video97") && err.contains("gave up after 2 retries"), "{err}");
    assert_eq!(err.matches("retrying in").count(), 2, "{err}");
}

#[test]
fn max_frames_ends_the_run_after_that_many_frames() {
    // A gate no change passes: the first frame is answered, the next four are only considered.
    let o = watch(
        &[
            "--test-pattern",
            "--fps",
            "100",
            "--pace",
            "all",
            "--gate",
            "1000",
            "--max-frames",
            "5",
            "--json",
            "-n",
            "2",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(updates(&o).len(), 1);
    let err = stderr(&o);
    assert!(
        err.contains("1 updates from 5 frames")
            && err.contains("skipped by the gate 4")
            && err.contains("ended by --max-frames"),
        "{err}"
    );
}

/// `cameras` lists what /dev holds; on a machine without V4L2 devices (this VM) it says so and succeeds.
#[test]
fn cameras_lists_devices_or_says_there_are_none() {
    let o = bin().arg("cameras").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let has_devices =
        fs::read_dir("/dev").unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("video"));
    if has_devices {
        assert!(out.contains("/dev/video"), "{out}");
    } else {
        assert_eq!(out.trim(), "no V4L2 devices (/dev/video*) on this machine");
    }
}

#[test]
fn bad_flags_are_named() {
    for (args, says) in [
        (vec!["--test-pattern", "--window", "17"], "--window"),
        (vec!["--test-pattern", "--gate=-1"], "--gate"),
        (vec!["--test-pattern", "--min-stable", "0"], "--min-stable"),
        (vec!["--test-pattern", "--size", "640"], "640"),
        (vec!["--stdin", "h264"], "h264"),
        (vec!["--frames", "/nonexistent/dir"], "not a folder"),
        (vec![], "--camera"),
    ] {
        let o = watch(&args, None);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
}

/// `socat` linking two pseudo-terminals at `a` and `b`.
fn socat(a: &Path, b: &Path) -> std::process::Child {
    let child = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(a.exists() && b.exists()) {
        assert!(Instant::now() < deadline, "socat made no ptys");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn serial_lines_through_socat_survive_the_far_end_closing_and_reopening() {
    if !tool("socat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("ttyA"), dir.path().join("ttyB"));
    let mut link = socat(&a, &b);
    // The far end: lines read from B, reopened whenever it goes away.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader_path = b.clone();
    std::thread::spawn(move || loop {
        let Ok(f) = fs::File::open(&reader_path) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        for line in BufReader::new(f).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut child = bin()
        .args(["watch", "-m", model().to_str().unwrap(), "-t", "2", "--test-pattern", "--fps", "10", "--gate", "0"])
        .args(["-n", "2", "--serial", a.to_str().unwrap(), "--serial-format", "json", "--max-updates", "400"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first: Value = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(60)).unwrap()).unwrap();
    // The far end closes: socat goes, with both ptys.
    link.kill().unwrap();
    link.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    while rx.try_recv().is_ok() {}
    let mut link = socat(&a, &b);
    let after: Value = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(60)).unwrap()).unwrap();
    assert!(after["update"].as_u64() > first["update"].as_u64(), "{first} then {after}");
    // Interrupt: a clean end with the summary and the serial counters.
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    link.kill().unwrap();
    link.wait().unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("ended by interrupted"), "{err}");
    let reconnects: u64 =
        err.split(" reconnects").next().and_then(|s| s.rsplit(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(reconnects >= 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Memory and descriptors stay flat over updates (the long run is in README: 5,000 updates and an hour).
#[test]
fn soak_memory_and_descriptors_stay_flat() {
    let o = watch(
        &[
            "--test-pattern",
            "--size",
            "320x240",
            "--fps",
            "50",
            "--gate",
            "0",
            "--json",
            "-n",
            "4",
            "--max-updates",
            "300",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let u = updates(&o);
    assert_eq!(u.len(), 300);
    let at = |i: usize, k: &str| u[i][k].as_u64().unwrap_or_else(|| panic!("{k} missing: {}", u[i]));
    // After 100 updates every buffer has reached its size: the window, the KV cache, the feature cache
    // (sized to the window: 2 tiles). The bound, 5%, is about 5 MB of the ~100 MB here; a leak of
    // one tile's embeddings per update (32 KB) would add 6.4 MB over the 200 updates between the readings.
    let (rss100, rss300) = (at(99, "rss_bytes") as f64, at(299, "rss_bytes") as f64);
    assert!((rss300 - rss100).abs() <= 0.05 * rss100, "RSS {rss100} after 100 updates, {rss300} after 300");
    assert_eq!(at(99, "open_fds"), at(299, "open_fds"), "no descriptor leaks");
}
