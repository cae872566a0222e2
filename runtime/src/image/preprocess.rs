//! The SAIL-VL2 image pipeline: grid → bicubic resize → row-major 448x448 tiles (+ thumbnail) →
//! `ToTensor` → `Normalize`, to a `[T, 3, S, S]` f32 tensor.

use rayon::prelude::*;

use super::resize::resize_rgb8;
use super::tiling::select_grid;
use super::{check_dims, ImageError, RgbImage, MEMORY_NAME};

/// Largest accepted `max_tiles` (VLMEvalKit uses at most 24; one tile is 2.4 MB of f32 at 448).
pub const MAX_TILES_LIMIT: u32 = 128;
/// Largest accepted `image_size`.
const MAX_IMAGE_SIZE: u32 = 4096;

/// ImageNet mean, as Python floats (f64); torchvision rounds them to f32.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet std, as Python floats (f64); torchvision rounds them to f32.
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Preprocessing parameters. [`Default`] is SAIL-VL2's `preprocessor_config.json`: 448, ImageNet
/// mean/std, 1..=10 tiles, thumbnail on.
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessParams {
    /// Tile side (`image_size`).
    pub image_size: u32,
    /// Per-channel mean (f32, as torchvision's `Normalize` uses it).
    pub mean: [f32; 3],
    /// Per-channel std (f32).
    pub std: [f32; 3],
    /// `min_num` of `dynamic_preprocess`.
    pub min_tiles: u32,
    /// `max_num` of `dynamic_preprocess` (`max_dynamic_patch`), 1..=[`MAX_TILES_LIMIT`].
    pub max_tiles: u32,
    /// Append a whole-image thumbnail when the grid has more than one tile.
    pub use_thumbnail: bool,
}

impl Default for PreprocessParams {
    fn default() -> Self {
        PreprocessParams {
            image_size: 448,
            mean: IMAGENET_MEAN.map(|v| v as f32),
            std: IMAGENET_STD.map(|v| v as f32),
            min_tiles: 1,
            max_tiles: 10,
            use_thumbnail: true,
        }
    }
}

impl PreprocessParams {
    /// The same parameters for one video frame: `max_num = 1` (one tile, never a thumbnail).
    pub fn for_frame(&self) -> Self {
        PreprocessParams { min_tiles: 1, max_tiles: 1, ..self.clone() }
    }

    fn validate(&self) -> Result<(), ImageError> {
        if self.image_size == 0 || self.image_size > MAX_IMAGE_SIZE {
            return Err(ImageError::InvalidParams(format!(
                "image_size {} not in 1..={MAX_IMAGE_SIZE}",
                self.image_size
            )));
        }
        if self.max_tiles == 0 || self.max_tiles > MAX_TILES_LIMIT {
            return Err(ImageError::InvalidParams(format!(
                "max_tiles {} not in 1..={MAX_TILES_LIMIT}",
                self.max_tiles
            )));
        }
        let out_pixels = self.max_tiles as u64 * self.image_size as u64 * self.image_size as u64;
        if out_pixels > super::MAX_PIXELS {
            return Err(ImageError::InvalidParams(format!(
                "max_tiles {} x image_size {}^2 exceeds {} pixels",
                self.max_tiles,
                self.image_size,
                super::MAX_PIXELS
            )));
        }
        if self.std.iter().any(|&s| s == 0.0 || !s.is_finite()) || self.mean.iter().any(|m| !m.is_finite()) {
            return Err(ImageError::InvalidParams(format!("mean {:?} / std {:?}", self.mean, self.std)));
        }
        Ok(())
    }
}

/// The 8-bit tiles, as the reference hands them to its torchvision transform.
#[derive(Clone, Debug)]
pub struct TileImages {
    /// Row-major grid tiles, then the thumbnail if any; each `image_size` square.
    pub tiles: Vec<RgbImage>,
    /// `(cols, rows)`.
    pub grid: (u32, u32),
    /// Whether the last tile is the thumbnail.
    pub has_thumbnail: bool,
}

/// Normalised tiles: `pixel_values` laid out `[num_tiles, 3, tile_size, tile_size]` (channel planes, f32).
#[derive(Clone, Debug)]
pub struct Tiles {
    pub pixel_values: Vec<f32>,
    pub num_tiles: usize,
    /// `(cols, rows)` of the grid (the thumbnail is not part of it).
    pub grid: (u32, u32),
    pub has_thumbnail: bool,
    pub tile_size: usize,
}

impl Tiles {
    /// `[num_tiles, 3, tile_size, tile_size]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.num_tiles, 3, self.tile_size, self.tile_size]
    }

    /// The `[3, S, S]` values of tile `t`.
    pub fn tile(&self, t: usize) -> &[f32] {
        let n = 3 * self.tile_size * self.tile_size;
        &self.pixel_values[t * n..(t + 1) * n]
    }

    /// Per-tile, per-channel mean (accumulated in f64), like the fixtures' `pixel_mean_per_tile`.
    pub fn mean_per_tile(&self) -> Vec<[f64; 3]> {
        let plane = self.tile_size * self.tile_size;
        (0..self.num_tiles)
            .map(|t| {
                let tile = self.tile(t);
                std::array::from_fn(|c| {
                    tile[c * plane..(c + 1) * plane].iter().map(|&v| v as f64).sum::<f64>() / plane as f64
                })
            })
            .collect()
    }
}

/// Upstream `dynamic_preprocess` on an RGB image: pick the grid, resize the whole image to
/// `(S*cols, S*rows)` with Pillow bicubic, crop the tiles row-major, and if there is more than one tile and
/// `use_thumbnail`, append the original resized to `S x S`.
pub fn tile_images(img: &RgbImage, params: &PreprocessParams) -> Result<TileImages, ImageError> {
    params.validate()?;
    let (w, h) = (img.width(), img.height());
    check_dims(MEMORY_NAME, w as u64, h as u64)?;
    let s = params.image_size;
    let (cols, rows) = select_grid(w, h, params.min_tiles, params.max_tiles, s);
    let (s, cols_u, rows_u) = (s as usize, cols as usize, rows as usize);
    let big_w = s * cols_u;
    let resized = resize_rgb8(img.as_raw(), w as usize, h as usize, big_w, s * rows_u);
    let mut tiles: Vec<RgbImage> = (0..cols_u * rows_u)
        .map(|k| {
            let (x0, y0) = ((k % cols_u) * s, (k / cols_u) * s);
            let mut data = Vec::with_capacity(s * s * 3);
            for y in y0..y0 + s {
                data.extend_from_slice(&resized[(y * big_w + x0) * 3..(y * big_w + x0 + s) * 3]);
            }
            RgbImage::from_raw(s as u32, s as u32, data).expect("tile size")
        })
        .collect();
    let has_thumbnail = params.use_thumbnail && tiles.len() != 1;
    if has_thumbnail {
        let thumb = resize_rgb8(img.as_raw(), w as usize, h as usize, s, s);
        tiles.push(RgbImage::from_raw(s as u32, s as u32, thumb).expect("thumbnail size"));
    }
    Ok(TileImages { tiles, grid: (cols, rows), has_thumbnail })
}

/// The full reference pipeline for one image: [`tile_images`], then per tile torchvision `ToTensor`
/// (`u8 as f32 / 255`) and `Normalize` (`(x - mean) / std`), all in f32 (not cast to bf16).
pub fn preprocess(img: &RgbImage, params: &PreprocessParams) -> Result<Tiles, ImageError> {
    let tiles = tile_images(img, params)?;
    let s = params.image_size as usize;
    let plane = s * s;
    // ToTensor + Normalize depend only on (channel, byte): a lookup table gives the same f32 values.
    let lut: [[f32; 256]; 3] =
        std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - params.mean[c]) / params.std[c]));
    let mut pixel_values = vec![0f32; tiles.tiles.len() * 3 * plane];
    pixel_values.par_chunks_mut(plane).enumerate().for_each(|(i, out)| {
        let (t, c) = (i / 3, i % 3);
        let src = tiles.tiles[t].as_raw();
        for (o, px) in out.iter_mut().zip(src.chunks_exact(3)) {
            *o = lut[c][px[c] as usize];
        }
    });
    Ok(Tiles {
        pixel_values,
        num_tiles: tiles.tiles.len(),
        grid: tiles.grid,
        has_thumbnail: tiles.has_thumbnail,
        tile_size: s,
    })
}

/// One video frame: [`preprocess`] with `max_num = 1` (one `S x S` tile of the whole frame, no thumbnail),
/// as VLMEvalKit feeds SAIL-VL2 video frames.
pub fn preprocess_frame(img: &RgbImage, params: &PreprocessParams) -> Result<Tiles, ImageError> {
    preprocess(img, &params.for_frame())
}
