//! Image preprocessing for SAIL-VL2, bit-exact with the upstream Python reference.
//!
//! The reference (`image_processing_sailvl.py`) opens an image with Pillow, converts it with
//! `Image.convert('RGB')`, picks a tile grid with `dynamic_preprocess`, resizes with Pillow's antialiased
//! bicubic filter, crops 448x448 tiles row-major (plus a thumbnail of the whole image when there is more
//! than one tile), then applies torchvision `ToTensor` + `Normalize` in float32. Every step here reproduces
//! that exactly:
//!
//! * [`decode_rgb`] / [`load_rgb`]: PNG / JPEG decoding with the `image` crate, converted to 8-bit RGB with
//!   Pillow's `convert('RGB')` rules (see [`decode`] for the per-mode table, including 16-bit PNGs).
//! * [`tile_grid`] / [`select_grid`]: the grid rule with CPython's candidate order ([`candidate_order`]).
//! * [`resize_bicubic`]: Pillow's `Image.resize(size, BICUBIC)` in the same fixed-point arithmetic.
//! * [`preprocess`] / [`preprocess_frame`]: the whole pipeline to a `[T, 3, S, S]` f32 tensor.
//!
//! All functions take in-memory [`RgbImage`]s so camera frames can be fed without touching the disk.

pub mod decode;
pub mod preprocess;
pub mod resize;
pub mod tiling;

use std::path::PathBuf;

pub use ::image::RgbImage;
pub use decode::{decode_rgb, decode_rgb_named, load_rgb, MAX_PIXELS, MAX_SIDE};
pub use preprocess::{
    preprocess, preprocess_frame, tile_images, PreprocessParams, TileImages, Tiles, IMAGENET_MEAN, IMAGENET_STD,
    MAX_TILES_LIMIT,
};
pub use resize::resize_bicubic;
pub use tiling::{candidate_order, select_grid, tile_grid};

/// Errors of image loading and preprocessing. Each names the image (its path, or `<memory>`).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read (missing, permissions, I/O error).
    #[error("cannot read image file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not PNG or JPEG (GIF, BMP, WebP, ... or unrecognized bytes).
    #[error("unsupported image format ({detected}) in {name}: only PNG and JPEG are supported")]
    UnsupportedFormat { name: String, detected: String },
    /// PNG / JPEG bytes that fail to decode (truncated, bad checksum, garbage after the signature).
    #[error("corrupt or truncated image {name}: {reason}")]
    Corrupt { name: String, reason: String },
    /// Width or height is zero.
    #[error("zero-sized image {name} ({width}x{height})")]
    ZeroSized { name: String, width: u64, height: u64 },
    /// Beyond [`MAX_PIXELS`] or [`MAX_SIDE`] (checked from the header, before decoding).
    #[error("image {name} is too large ({width}x{height}): {limit}")]
    TooLarge { name: String, width: u64, height: u64, limit: String },
    /// Preprocessing parameters out of range.
    #[error("invalid image preprocessing parameters: {0}")]
    InvalidParams(String),
}

/// Name used in errors for images that did not come from a file.
pub const MEMORY_NAME: &str = "<memory>";

/// Checks the size limits shared by decoding and preprocessing.
pub(crate) fn check_dims(name: &str, width: u64, height: u64) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::ZeroSized { name: name.to_string(), width, height });
    }
    if width > MAX_SIDE as u64 || height > MAX_SIDE as u64 {
        return Err(ImageError::TooLarge {
            name: name.to_string(),
            width,
            height,
            limit: format!("a side exceeds {MAX_SIDE} pixels"),
        });
    }
    if width * height > MAX_PIXELS {
        return Err(ImageError::TooLarge {
            name: name.to_string(),
            width,
            height,
            limit: format!("more than {MAX_PIXELS} pixels"),
        });
    }
    Ok(())
}
