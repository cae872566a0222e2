//! In-memory frames as cameras, phone APIs and video pipes hand them over (RGB8, RGBA8, BGRA8, NV12, NV21,
//! YUYV, planar YUV 4:2:0 / 4:2:2 / 4:4:4 and grey, with a row stride), checked and converted to the RGB image the preprocessing takes. YUV is BT.601 limited range
//! unless the frame says otherwise (what UVC cameras and Android's camera deliver); the `yuv` crate converts.

use ::image::RgbImage;

/// How a frame's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// 3 bytes per pixel, R G B.
    Rgb8,
    /// 4 bytes per pixel, R G B A (alpha ignored).
    Rgba8,
    /// 4 bytes per pixel, B G R A (alpha ignored): iOS `CVPixelBuffer` 32BGRA.
    Bgra8,
    /// A luma plane of `height` rows, then an interleaved U V plane of `height / 2` rows, both `stride` bytes
    /// a row (V4L2 `NV12`).
    Nv12,
    /// As NV12 with V before U (Android `ImageFormat.NV21`).
    Nv21,
    /// Packed 4:2:2, Y0 U Y1 V per two pixels (V4L2 `YUYV`, UVC cameras).
    Yuyv,
    /// Planar 4:2:0: a luma plane of `height` rows of `stride` bytes, then U and V planes of `ceil(height / 2)`
    /// rows of `ceil(stride / 2)` bytes (`yuv420p`, YUV4MPEG2 `C420`, V4L2 `YU12`).
    I420,
    /// Planar 4:2:2: as I420 with chroma planes of `height` rows.
    I422,
    /// Planar 4:4:4: three planes of `height` rows of `stride` bytes.
    I444,
    /// Luma only, one byte a pixel (V4L2 `GREY`, YUV4MPEG2 `Cmono`); its range follows the frame's encoding.
    Grey,
}

impl PixelFormat {
    /// Every format, in the C API's order.
    pub const ALL: [PixelFormat; 10] = [
        PixelFormat::Rgb8,
        PixelFormat::Rgba8,
        PixelFormat::Bgra8,
        PixelFormat::Nv12,
        PixelFormat::Nv21,
        PixelFormat::Yuyv,
        PixelFormat::I420,
        PixelFormat::I422,
        PixelFormat::I444,
        PixelFormat::Grey,
    ];

    /// Bytes of one row of `width` pixels without padding (the luma row for NV12/NV21).
    pub fn min_stride(self, width: u32) -> u64 {
        let w = width as u64;
        match self {
            PixelFormat::Rgb8 => 3 * w,
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4 * w,
            PixelFormat::Nv12 | PixelFormat::Nv21 => w,
            PixelFormat::Yuyv => 2 * w,
            PixelFormat::I420 | PixelFormat::I422 | PixelFormat::I444 | PixelFormat::Grey => w,
        }
    }

    /// Rows and bytes a row of each chroma plane of a planar format (`None` for the others).
    fn chroma_plane(self, height: u32, stride: u64) -> Option<(u64, u64)> {
        let (h, half_h, half_s) = (height as u64, (height as u64).div_ceil(2), stride.div_ceil(2));
        match self {
            PixelFormat::I420 => Some((half_h, half_s)),
            PixelFormat::I422 => Some((h, half_s)),
            PixelFormat::I444 => Some((h, stride)),
            _ => None,
        }
    }

    /// Bytes a frame of this size and stride must hold.
    pub fn frame_bytes(self, height: u32, stride: u64) -> u64 {
        let h = height as u64;
        match self {
            PixelFormat::Nv12 | PixelFormat::Nv21 => stride * (h + h / 2),
            planar if planar.chroma_plane(height, stride).is_some() => {
                let (rows, row) = planar.chroma_plane(height, stride).unwrap_or_default();
                stride * h + 2 * rows * row
            }
            _ => stride * h,
        }
    }

    fn is_yuv(self) -> bool {
        !matches!(self, PixelFormat::Rgb8 | PixelFormat::Rgba8 | PixelFormat::Bgra8)
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PixelFormat::Rgb8 => "RGB8",
            PixelFormat::Rgba8 => "RGBA8",
            PixelFormat::Bgra8 => "BGRA8",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Nv21 => "NV21",
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::I420 => "I420",
            PixelFormat::I422 => "I422",
            PixelFormat::I444 => "I444",
            PixelFormat::Grey => "GREY",
        })
    }
}

/// The YUV → RGB matrix and range of a YUV frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum YuvEncoding {
    /// BT.601, Y in 16..=235 (cameras, Android).
    #[default]
    Bt601Limited,
    /// BT.601, full range (JPEG's YCbCr).
    Bt601Full,
    /// BT.709, limited range (HD video).
    Bt709Limited,
    /// BT.709, full range.
    Bt709Full,
}

/// One frame in memory. `stride` is the bytes from one row to the next (0: rows are packed).
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub format: PixelFormat,
    pub yuv: YuvEncoding,
}

/// Why a frame cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {width}x{height}: width and height must be at least 1")]
    ZeroSized { width: u32, height: u32 },
    #[error("frame of {width}x{height}: larger than the {limit} the runtime accepts")]
    TooLarge { width: u32, height: u32, limit: String },
    #[error("{format} frame of width {width}: stride {stride} is shorter than a row ({min} bytes)")]
    ShortStride { format: PixelFormat, width: u32, stride: u32, min: u64 },
    #[error("{format} frame of {width}x{height}, stride {stride}: {len} bytes given, {needed} needed")]
    ShortData { format: PixelFormat, width: u32, height: u32, stride: u32, len: usize, needed: u64 },
    #[error("{format} frame of {width}x{height}: this format needs an even width{and_height}")]
    OddSize { format: PixelFormat, width: u32, height: u32, and_height: &'static str },
    #[error("{format} frame: conversion failed: {reason}")]
    Conversion { format: PixelFormat, reason: String },
}

impl<'a> Frame<'a> {
    /// A frame with BT.601 limited-range YUV (ignored for RGB formats).
    pub fn new(data: &'a [u8], width: u32, height: u32, stride: u32, format: PixelFormat) -> Frame<'a> {
        Frame { data, width, height, stride, format, yuv: YuvEncoding::default() }
    }

    /// The stride in use (the packed row size when 0 was given).
    pub fn effective_stride(&self) -> u64 {
        if self.stride == 0 {
            self.format.min_stride(self.width)
        } else {
            self.stride as u64
        }
    }

    /// Check sizes, stride and length against the format, before any byte is read.
    pub fn validate(&self) -> Result<(), FrameError> {
        let (width, height, format) = (self.width, self.height, self.format);
        if width == 0 || height == 0 {
            return Err(FrameError::ZeroSized { width, height });
        }
        let (w, h) = (width as u64, height as u64);
        if w > crate::image::MAX_SIDE as u64 || h > crate::image::MAX_SIDE as u64 || w * h > crate::image::MAX_PIXELS {
            let limit = format!("{} pixels (or {} a side)", crate::image::MAX_PIXELS, crate::image::MAX_SIDE);
            return Err(FrameError::TooLarge { width, height, limit });
        }
        let odd_w = !width.is_multiple_of(2);
        let odd_h = !height.is_multiple_of(2);
        match format {
            PixelFormat::Nv12 | PixelFormat::Nv21 if odd_w || odd_h => {
                return Err(FrameError::OddSize { format, width, height, and_height: " and height" })
            }
            PixelFormat::Yuyv if odd_w => return Err(FrameError::OddSize { format, width, height, and_height: "" }),
            _ => {}
        }
        let min = format.min_stride(width);
        let stride = self.effective_stride();
        if stride < min || stride > u32::MAX as u64 {
            return Err(FrameError::ShortStride { format, width, stride: self.stride, min });
        }
        let needed = format.frame_bytes(height, stride);
        if (self.data.len() as u64) < needed {
            return Err(FrameError::ShortData {
                format,
                width,
                height,
                stride: self.stride,
                len: self.data.len(),
                needed,
            });
        }
        Ok(())
    }

    /// The frame as 8-bit RGB.
    pub fn to_rgb(&self) -> Result<RgbImage, FrameError> {
        self.validate()?;
        let (w, h) = (self.width as usize, self.height as usize);
        let stride = self.effective_stride() as usize;
        let mut rgb = vec![0u8; w * h * 3];
        if self.format.is_yuv() {
            self.yuv_to_rgb(stride, &mut rgb)?;
        } else {
            let (bpp, order): (usize, [usize; 3]) = match self.format {
                PixelFormat::Rgb8 => (3, [0, 1, 2]),
                PixelFormat::Rgba8 => (4, [0, 1, 2]),
                _ => (4, [2, 1, 0]),
            };
            for (y, out) in rgb.chunks_exact_mut(w * 3).enumerate() {
                let row = &self.data[y * stride..y * stride + w * bpp];
                for (o, px) in out.chunks_exact_mut(3).zip(row.chunks_exact(bpp)) {
                    o.copy_from_slice(&[px[order[0]], px[order[1]], px[order[2]]]);
                }
            }
        }
        Ok(RgbImage::from_raw(self.width, self.height, rgb).expect("buffer sized for the frame"))
    }

    fn yuv_to_rgb(&self, stride: usize, rgb: &mut [u8]) -> Result<(), FrameError> {
        use yuv::{
            YuvBiPlanarImage, YuvConversionMode, YuvGrayImage, YuvPackedImage, YuvPlanarImage, YuvRange,
            YuvStandardMatrix,
        };
        let (range, matrix) = match self.yuv {
            YuvEncoding::Bt601Limited => (YuvRange::Limited, YuvStandardMatrix::Bt601),
            YuvEncoding::Bt601Full => (YuvRange::Full, YuvStandardMatrix::Bt601),
            YuvEncoding::Bt709Limited => (YuvRange::Limited, YuvStandardMatrix::Bt709),
            YuvEncoding::Bt709Full => (YuvRange::Full, YuvStandardMatrix::Bt709),
        };
        let (w, h) = (self.width, self.height);
        let rgb_stride = 3 * w;
        let failed = |e: yuv::YuvError| FrameError::Conversion { format: self.format, reason: e.to_string() };
        match self.format {
            PixelFormat::Nv12 | PixelFormat::Nv21 => {
                let luma = stride * h as usize;
                let chroma = stride * (h as usize / 2);
                let image = YuvBiPlanarImage {
                    y_plane: &self.data[..luma],
                    y_stride: stride as u32,
                    uv_plane: &self.data[luma..luma + chroma],
                    uv_stride: stride as u32,
                    width: w,
                    height: h,
                };
                let convert =
                    if self.format == PixelFormat::Nv12 { yuv::yuv_nv12_to_rgb } else { yuv::yuv_nv21_to_rgb };
                convert(&image, rgb, rgb_stride, range, matrix, YuvConversionMode::Balanced).map_err(failed)
            }
            PixelFormat::I420 | PixelFormat::I422 | PixelFormat::I444 => {
                let luma = stride * h as usize;
                let (rows, row) = self.format.chroma_plane(h, stride as u64).unwrap_or_default();
                let chroma = (rows * row) as usize;
                let image = YuvPlanarImage {
                    y_plane: &self.data[..luma],
                    y_stride: stride as u32,
                    u_plane: &self.data[luma..luma + chroma],
                    u_stride: row as u32,
                    v_plane: &self.data[luma + chroma..luma + 2 * chroma],
                    v_stride: row as u32,
                    width: w,
                    height: h,
                };
                let convert = match self.format {
                    PixelFormat::I420 => yuv::yuv420_to_rgb,
                    PixelFormat::I422 => yuv::yuv422_to_rgb,
                    _ => yuv::yuv444_to_rgb,
                };
                convert(&image, rgb, rgb_stride, range, matrix).map_err(failed)
            }
            PixelFormat::Grey => {
                let image = YuvGrayImage {
                    y_plane: &self.data[..stride * h as usize],
                    y_stride: stride as u32,
                    width: w,
                    height: h,
                };
                yuv::yuv400_to_rgb(&image, rgb, rgb_stride, range, matrix).map_err(failed)
            }
            _ => {
                let image = YuvPackedImage {
                    yuy: &self.data[..stride * h as usize],
                    yuy_stride: stride as u32,
                    width: w,
                    height: h,
                };
                yuv::yuyv422_to_rgb(&image, rgb, rgb_stride, range, matrix).map_err(failed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BT.601 limited range, from the definition (Y' = 16 + 219·Y, Cb/Cr = 128 + 224·(B'−Y')/1.772 …) in f64.
    fn ycbcr_601(r: f64, g: f64, b: f64) -> [u8; 3] {
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        let cb = (b - y) / 1.772;
        let cr = (r - y) / 1.402;
        [
            (16.0 + 219.0 * y / 255.0).round() as u8,
            (128.0 + 224.0 * cb / 255.0).round() as u8,
            (128.0 + 224.0 * cr / 255.0).round() as u8,
        ]
    }

    #[test]
    fn rgb_layouts_with_padding() {
        // 2x2, stride 10 (two bytes of padding after each RGBA row).
        let px = [[10u8, 20, 30], [40, 50, 60], [70, 80, 90], [100, 110, 120]];
        let mut rgba = vec![0xEE; 20];
        let mut bgra = vec![0xEE; 20];
        let mut rgb = vec![0xEE; 16];
        for (i, p) in px.iter().enumerate() {
            let (y, x) = (i / 2, i % 2);
            rgba[y * 10 + x * 4..y * 10 + x * 4 + 4].copy_from_slice(&[p[0], p[1], p[2], 255]);
            bgra[y * 10 + x * 4..y * 10 + x * 4 + 4].copy_from_slice(&[p[2], p[1], p[0], 255]);
            rgb[y * 8 + x * 3..y * 8 + x * 3 + 3].copy_from_slice(p);
        }
        let want: Vec<u8> = px.concat();
        assert_eq!(Frame::new(&rgba, 2, 2, 10, PixelFormat::Rgba8).to_rgb().unwrap().into_raw(), want);
        assert_eq!(Frame::new(&bgra, 2, 2, 10, PixelFormat::Bgra8).to_rgb().unwrap().into_raw(), want);
        assert_eq!(Frame::new(&rgb, 2, 2, 8, PixelFormat::Rgb8).to_rgb().unwrap().into_raw(), want);
        assert_eq!(Frame::new(&want, 2, 2, 0, PixelFormat::Rgb8).to_rgb().unwrap().into_raw(), want);
    }

    #[test]
    fn yuv_layouts_decode_to_the_colours_they_encode() {
        // A 4x2 frame of four flat colours (one per 2x2... here per column pair) in NV12, NV21 and YUYV.
        let colours = [[200.0, 40.0, 40.0], [30.0, 180.0, 60.0]];
        let (w, h) = (4usize, 2usize);
        let enc: Vec<[u8; 3]> = colours.iter().map(|c| ycbcr_601(c[0], c[1], c[2])).collect();
        let col = |x: usize| x / 2;
        let mut nv12 = Vec::new();
        let mut nv21 = Vec::new();
        for _ in 0..h {
            for x in 0..w {
                nv12.push(enc[col(x)][0]);
            }
        }
        nv21.extend_from_slice(&nv12);
        for x in (0..w).step_by(2) {
            nv12.extend_from_slice(&[enc[col(x)][1], enc[col(x)][2]]);
            nv21.extend_from_slice(&[enc[col(x)][2], enc[col(x)][1]]);
        }
        let mut yuyv = Vec::new();
        for _ in 0..h {
            for x in (0..w).step_by(2) {
                let e = enc[col(x)];
                yuyv.extend_from_slice(&[e[0], e[1], e[0], e[2]]);
            }
        }
        for (data, format) in [(&nv12, PixelFormat::Nv12), (&nv21, PixelFormat::Nv21), (&yuyv, PixelFormat::Yuyv)] {
            let img = Frame::new(data, w as u32, h as u32, 0, format).to_rgb().unwrap();
            for y in 0..h {
                for x in 0..w {
                    let got = img.get_pixel(x as u32, y as u32).0;
                    let want = colours[col(x)];
                    for c in 0..3 {
                        // Rounding Y'CbCr to 8 bits moves a colour by up to ~1.5 levels, the converter's fixed
                        // point by about one more: 3 levels bound both.
                        assert!(
                            (got[c] as f64 - want[c]).abs() <= 3.0,
                            "{format} ({x},{y}) channel {c}: {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        let data = vec![0u8; 64];
        let err = |w, h, stride, f| Frame::new(&data, w, h, stride, f).to_rgb().unwrap_err();
        assert!(matches!(err(0, 4, 0, PixelFormat::Rgb8), FrameError::ZeroSized { .. }));
        assert!(matches!(err(4, 4, 11, PixelFormat::Rgb8), FrameError::ShortStride { min: 12, .. }));
        assert!(matches!(err(8, 8, 0, PixelFormat::Rgb8), FrameError::ShortData { needed: 192, .. }));
        assert!(matches!(err(3, 2, 0, PixelFormat::Nv12), FrameError::OddSize { .. }));
        assert!(matches!(err(4, 3, 0, PixelFormat::Nv21), FrameError::OddSize { .. }));
        assert!(matches!(err(3, 2, 0, PixelFormat::Yuyv), FrameError::OddSize { .. }));
        assert!(matches!(err(1 << 21, 1, 0, PixelFormat::Nv12), FrameError::TooLarge { .. }));
        assert!(matches!(err(8, 8, 0, PixelFormat::Nv12), FrameError::ShortData { needed: 96, .. }));
        // A stride that overflows 32 bits is refused, not wrapped.
        assert!(Frame::new(&data, 2, 2, 4, PixelFormat::Yuyv).to_rgb().is_ok());
    }
}
