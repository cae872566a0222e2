//! The YUV layouts cameras and pipes deliver, converted to RGB by the runtime (through the camera source's
//! buffer code and the YUV4MPEG2 reader), against ffmpeg's own conversion of the same bytes.

mod common;

use std::process::Command;
use std::time::Duration;

use live::source::camera::{frame_from_buffer, BufferFormat};
use live::source::y4m::Y4mStream;
use live::source::FrameSource;
use runtime::engine::YuvEncoding;

const W: u32 = 96;
const H: u32 = 64;

/// ffmpeg's frame of a smooth moving scene in `pix_fmt`, and ffmpeg's RGB24 of those bytes.
fn ffmpeg_pair(ffmpeg: &std::path::Path, pix_fmt: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("frame.raw");
    let rgb = dir.path().join("frame.rgb");
    let size = format!("{W}x{H}");
    let run = |args: &[&str]| {
        let out = Command::new(ffmpeg).args(["-v", "error", "-y"]).args(args).output().unwrap();
        assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // testsrc2: saturated colour bars, gradients and sharp edges.
    let src = format!("testsrc2=size={size}:rate=1");
    run(&["-f", "lavfi", "-i", &src, "-frames:v", "1", "-pix_fmt", pix_fmt, "-f", "rawvideo", raw.to_str().unwrap()]);
    run(&[
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt,
        "-s",
        &size,
        "-i",
        raw.to_str().unwrap(),
        "-sws_flags",
        "neighbor+full_chroma_int+accurate_rnd+bitexact",
        "-pix_fmt",
        "rgb24",
        "-f",
        "rawvideo",
        rgb.to_str().unwrap(),
    ]);
    (std::fs::read(raw).unwrap(), std::fs::read(rgb).unwrap())
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

/// Limit: 2 levels a channel. Both sides compute the same BT.601 limited-range matrix and bring chroma to full
/// resolution the same way (each chroma sample covers its 2 or 2×2 pixels: ffmpeg's `neighbor` +
/// `full_chroma_int`); they differ only in fixed-point rounding, under a level on each side. (ffmpeg's default
/// bicubic chroma interpolation differs from replication by up to ~30 levels at sharp colour edges: a choice
/// of filter, not an error of either.)
const LEVELS: u8 = 2;

#[test]
fn camera_buffers_convert_like_ffmpeg() {
    let Some(ffmpeg) = common::tool("ffmpeg") else { return };
    for (fourcc, pix_fmt, stride) in
        [(*b"YUYV", "yuyv422", 2 * W), (*b"NV12", "nv12", W), (*b"YU12", "yuv420p", W), (*b"GREY", "gray", W)]
    {
        let (raw, want) = ffmpeg_pair(&ffmpeg, pix_fmt);
        let yuv = if &fourcc == b"GREY" { YuvEncoding::Bt601Full } else { YuvEncoding::Bt601Limited };
        let format = BufferFormat { fourcc, width: W, height: H, stride, yuv };
        let frame = frame_from_buffer(&format, &raw, 0, Duration::ZERO, "fixture").unwrap();
        let got = frame.to_rgb("fixture").unwrap().into_raw();
        let d = max_diff(&got, &want);
        eprintln!("{pix_fmt}: max difference {d} levels");
        assert!(d <= LEVELS, "{pix_fmt}: {d} levels from ffmpeg's conversion");
    }
}

#[test]
fn y4m_streams_convert_like_ffmpeg() {
    let Some(ffmpeg) = common::tool("ffmpeg") else { return };
    let cases = [
        ("yuv420p", "C420jpeg XCOLORRANGE=LIMITED"),
        ("yuv422p", "C422 XCOLORRANGE=LIMITED"),
        ("yuv444p", "C444"),
        // Full range (JPEG-style, as MJPEG decoders and yuvj420p write it).
        ("yuvj420p", "C420jpeg XCOLORRANGE=FULL"),
    ];
    for (pix_fmt, colour) in cases {
        let (raw, want) = ffmpeg_pair(&ffmpeg, pix_fmt);
        let stream = [format!("YUV4MPEG2 W{W} H{H} F1:1 Ip A1:1 {colour}\nFRAME\n").as_bytes(), &raw].concat();
        let mut s = Y4mStream::new(&stream[..], "fixture".into()).unwrap();
        let got = s.next_frame().unwrap().unwrap().to_rgb("fixture").unwrap().into_raw();
        let d = max_diff(&got, &want);
        eprintln!("{pix_fmt}: max difference {d} levels");
        assert!(d <= LEVELS, "{pix_fmt}: {d} levels from ffmpeg's conversion");
    }
}

/// A UVC camera's MJPEG frame has no Huffman tables; it decodes with the standard ones put in, to the same
/// pixels as the JPEG that had them (ffmpeg encodes with those standard tables under `-huffman default`).
#[test]
fn mjpeg_without_huffman_tables_decodes_like_with_them() {
    let Some(ffmpeg) = common::tool("ffmpeg") else { return };
    let out = Command::new(&ffmpeg)
        .args(["-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=1", "-frames:v", "1"])
        .args(["-huffman", "default", "-f", "mjpeg", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let jpeg = out.stdout;
    // Cut the DHT segments out, as a UVC camera sends the frame.
    let mut uvc = jpeg[..2].to_vec();
    let mut pos = 2;
    while jpeg[pos + 1] != 0xDA {
        let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        if jpeg[pos + 1] != 0xC4 {
            uvc.extend_from_slice(&jpeg[pos..pos + 2 + len]);
        }
        pos += 2 + len;
    }
    uvc.extend_from_slice(&jpeg[pos..]);
    assert!(uvc.len() < jpeg.len(), "the fixture had DHT segments to cut");
    assert!(runtime::image::decode_rgb(&uvc).is_err(), "without tables the decoder refuses it");
    let format = BufferFormat { fourcc: *b"MJPG", width: 96, height: 64, stride: 0, yuv: YuvEncoding::Bt601Full };
    let got = frame_from_buffer(&format, &uvc, 0, Duration::ZERO, "uvc").unwrap().to_rgb("uvc").unwrap();
    assert_eq!(got, runtime::image::decode_rgb(&jpeg).unwrap());
}
