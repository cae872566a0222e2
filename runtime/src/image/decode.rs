//! PNG / JPEG decoding to 8-bit RGB, matching Pillow's `Image.open(p).convert('RGB')`.
//!
//! Pillow mode after `Image.open` and what `convert('RGB')` does with it (checked against Pillow 13):
//!
//! | source | Pillow mode | RGB result (here the same) |
//! |---|---|---|
//! | grey 1/2/4/8-bit | `1` / `L` | value scaled to 0..255 (x255, x85, x17) and replicated |
//! | grey 8-bit + alpha | `LA` | grey replicated, **alpha dropped** (not composited) |
//! | RGB 8-bit | `RGB` | unchanged |
//! | RGBA 8-bit | `RGBA` | alpha dropped (not composited) |
//! | palette (any depth, with or without tRNS) | `P` | palette colours, transparency ignored |
//! | grey 16-bit (with or without tRNS) | `I;16` | **clipped**: `min(v, 255)` replicated (so most 16-bit grey images come out white) |
//! | grey+alpha / RGB / RGBA 16-bit | `RGBA` / `RGB` | **high byte**: `v >> 8`, alpha dropped |
//! | JPEG grey / YCbCr | `L` / `RGB` | decoder output (zune-jpeg here, libjpeg in Pillow: may differ by ±1) |
//!
//! EXIF orientation is not applied (neither does the reference). Palette indices outside the palette
//! are whatever the `png` crate makes of them (Pillow repeats the last entry); such files are broken anyway.
//!
//! Limits: width and height must be > 0, at most [`MAX_SIDE`] each and at most [`MAX_PIXELS`] together;
//! they are checked from the header before any pixel is decoded.

use std::io::Cursor;
use std::path::Path;

use ::image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use super::{check_dims, ImageError, MEMORY_NAME};

/// Largest accepted image, in pixels (100 megapixels: 300 MB as RGB).
pub const MAX_PIXELS: u64 = 100_000_000;
/// Largest accepted width or height. Thin images up to this length (e.g. 1x100000) are processed exactly
/// like the reference; the resampler needs O(side) memory for its coefficients, hence a cap.
pub const MAX_SIDE: u32 = 1 << 20;

/// Reads and decodes a PNG or JPEG file to RGB. Errors name the path.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage, ImageError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read { path: path.to_path_buf(), source })?;
    decode_rgb_named(&bytes, &path.display().to_string())
}

/// Decodes PNG or JPEG bytes to RGB; errors name the image `<memory>`.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    decode_rgb_named(bytes, MEMORY_NAME)
}

/// Decodes PNG or JPEG bytes to RGB; errors name the image `name`.
pub fn decode_rgb_named(bytes: &[u8], name: &str) -> Result<RgbImage, ImageError> {
    let format = match ::image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        Ok(other) => {
            return Err(ImageError::UnsupportedFormat { name: name.to_string(), detected: format!("{other:?}") })
        }
        Err(_) => {
            return Err(ImageError::UnsupportedFormat { name: name.to_string(), detected: "unrecognized bytes".into() })
        }
    };
    let png_header = if format == ImageFormat::Png { png_ihdr(bytes) } else { None };
    if let Some(h) = png_header {
        // Checked here so that zero or huge header sizes get a size error, not a decoder one.
        check_dims(name, h.width as u64, h.height as u64)?;
    }
    let corrupt = |e: ::image::ImageError| match e {
        ::image::ImageError::Limits(_) => {
            ImageError::TooLarge { name: name.to_string(), width: 0, height: 0, limit: e.to_string() }
        }
        e => ImageError::Corrupt { name: name.to_string(), reason: e.to_string() },
    };

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    // Largest decoded buffer: MAX_PIXELS of 16-bit RGBA, plus decoder scratch.
    limits.max_alloc = Some(MAX_PIXELS * 8 + (64 << 20));
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    check_dims(name, width as u64, height as u64)?;
    let img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    let grey16 = png_header.is_some_and(|h| h.bit_depth == 16 && h.color_type == 0);
    to_rgb_like_pillow(img, grey16).ok_or_else(|| ImageError::UnsupportedFormat {
        name: name.to_string(),
        detected: "unsupported pixel layout".into(),
    })
}

#[derive(Clone, Copy, Debug)]
struct PngHeader {
    width: u32,
    height: u32,
    bit_depth: u8,
    color_type: u8,
}

/// Reads the IHDR fields (the first chunk of every valid PNG).
fn png_ihdr(bytes: &[u8]) -> Option<PngHeader> {
    if bytes.len() < 26 || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    Some(PngHeader { width: be(16), height: be(20), bit_depth: bytes[24], color_type: bytes[25] })
}

/// Pillow's `convert('RGB')` for the layouts the PNG and JPEG decoders produce.
/// `grey16`: the source is a 16-bit grey PNG, which Pillow opens as `I;16` and clips.
fn to_rgb_like_pillow(img: DynamicImage, grey16: bool) -> Option<RgbImage> {
    let (w, h) = (img.width(), img.height());
    let n = w as usize * h as usize;
    let mut out = Vec::with_capacity(n * 3);
    let grey = |v: u16| if grey16 { v.min(255) as u8 } else { (v >> 8) as u8 };
    match img {
        DynamicImage::ImageRgb8(im) => return Some(im),
        DynamicImage::ImageLuma8(im) => im.as_raw().iter().for_each(|&v| out.extend_from_slice(&[v, v, v])),
        DynamicImage::ImageLumaA8(im) => im.as_raw().chunks_exact(2).for_each(|p| out.extend_from_slice(&[p[0]; 3])),
        DynamicImage::ImageRgba8(im) => im.as_raw().chunks_exact(4).for_each(|p| out.extend_from_slice(&p[..3])),
        DynamicImage::ImageLuma16(im) => im.as_raw().iter().for_each(|&v| out.extend_from_slice(&[grey(v); 3])),
        DynamicImage::ImageLumaA16(im) => {
            im.as_raw().chunks_exact(2).for_each(|p| out.extend_from_slice(&[grey(p[0]); 3]))
        }
        DynamicImage::ImageRgb16(im) => out.extend(im.as_raw().iter().map(|&v| (v >> 8) as u8)),
        DynamicImage::ImageRgba16(im) => {
            im.as_raw().chunks_exact(4).for_each(|p| out.extend(p[..3].iter().map(|&v| (v >> 8) as u8)))
        }
        _ => return None,
    }
    RgbImage::from_raw(w, h, out)
}
