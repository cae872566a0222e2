//! Image-preprocessing settings from `preprocessor_config.json` (spec §4).
//!
//! The processor, not config.json, decides the tile budget: the released 2B ships
//! `max_dynamic_patch` 10 here against 12 in config.json. The file is optional; when it (or one of
//! its keys) is absent, the value falls back to config.json (`force_image_size`,
//! `vision_config.patch_size`, `min/max_dynamic_patch`) and the mean/std fall back to the ImageNet
//! constants that SAIL-VL2's image processor uses (spec §9.1), and `use_msac` to false (the
//! released processor default).

use std::path::Path;

use serde_json::Value;

use super::config::{ConfigError, Obj, SailVlConfig};

/// ImageNet normalisation constants used by SAIL-VL2 (not the CLIP/AIMv2 ones).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// File name of the optional processor config inside a checkpoint folder.
pub const PREPROCESSOR_CONFIG: &str = "preprocessor_config.json";

/// The settings the image pipeline needs.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// Tile side in pixels.
    pub image_size: u32,
    pub patch_size: u32,
    pub min_dynamic_patch: u32,
    /// Tile budget for one image (thumbnail not counted).
    pub max_dynamic_patch: u32,
    /// Append a whole-image thumbnail when an image is split into more than one tile.
    pub use_thumbnail: bool,
    /// Multi-scale tiling (evaluation only, spec §4.2).
    pub use_msac: bool,
    /// Per-channel mean/std as written (f64); torchvision casts them to the pixel dtype (f32).
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
    /// True when `preprocessor_config.json` was present.
    pub from_file: bool,
}

impl PreprocessConfig {
    /// Read `dir/preprocessor_config.json` if present, else derive everything from `config`.
    pub fn load(dir: &Path, config: &SailVlConfig) -> Result<Self, ConfigError> {
        let path = dir.join(PREPROCESSOR_CONFIG);
        let file = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_json_str(&text, &file, config),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::from_config(config)),
            Err(source) => Err(ConfigError::Io { file, source }),
        }
    }

    /// Defaults when there is no preprocessor_config.json.
    pub fn from_config(config: &SailVlConfig) -> Self {
        PreprocessConfig {
            image_size: config.force_image_size,
            patch_size: config.vision.patch_size,
            min_dynamic_patch: config.min_dynamic_patch,
            max_dynamic_patch: config.max_dynamic_patch,
            use_thumbnail: config.use_thumbnail,
            use_msac: false,
            image_mean: IMAGENET_MEAN,
            image_std: IMAGENET_STD,
            from_file: false,
        }
    }

    /// Parse preprocessor_config.json text; `file` labels the errors.
    pub fn from_json_str(text: &str, file: &str, config: &SailVlConfig) -> Result<Self, ConfigError> {
        let root: Value =
            serde_json::from_str(text).map_err(|source| ConfigError::Json { file: file.to_string(), source })?;
        let obj = Obj::root(file, &root)?;
        let base = Self::from_config(config);
        let image_size = obj.opt_u32("image_size")?.unwrap_or(base.image_size);
        let patch_size = obj.opt_u32("patch_size")?.unwrap_or(base.patch_size);
        if patch_size == 0 || image_size == 0 || image_size % patch_size != 0 {
            return Err(obj.invalid(
                "image_size",
                image_size,
                format!("must be a positive multiple of patch_size ({patch_size})"),
            ));
        }
        let min_dynamic_patch = obj.opt_u32("min_dynamic_patch")?.unwrap_or(base.min_dynamic_patch);
        let max_dynamic_patch = obj.opt_u32("max_dynamic_patch")?.unwrap_or(base.max_dynamic_patch);
        if min_dynamic_patch == 0 || min_dynamic_patch > max_dynamic_patch {
            return Err(obj.invalid(
                "max_dynamic_patch",
                max_dynamic_patch,
                format!("must be at least min_dynamic_patch ({min_dynamic_patch}) and positive"),
            ));
        }
        Ok(PreprocessConfig {
            image_size,
            patch_size,
            min_dynamic_patch,
            max_dynamic_patch,
            use_thumbnail: obj.opt_bool("use_thumbnail")?.unwrap_or(base.use_thumbnail),
            use_msac: obj.opt_bool("use_msac")?.unwrap_or(false),
            image_mean: triple(&obj, "image_mean", false)?.unwrap_or(IMAGENET_MEAN),
            image_std: triple(&obj, "image_std", true)?.unwrap_or(IMAGENET_STD),
            from_file: true,
        })
    }
}

/// A 3-channel float list; `positive` demands every entry > 0 (a std).
fn triple(obj: &Obj<'_>, key: &str, positive: bool) -> Result<Option<[f64; 3]>, ConfigError> {
    let items = match obj.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(obj.wrong_type(key, "array of 3 numbers", other)),
    };
    if items.len() != 3 {
        return Err(obj.invalid(key, Value::Array(items.clone()), "needs exactly 3 (RGB) entries"));
    }
    let mut out = [0.0; 3];
    for (slot, v) in out.iter_mut().zip(items) {
        let x = v.as_f64().ok_or_else(|| obj.wrong_type(key, "array of 3 numbers", v))?;
        if !x.is_finite() || (positive && x <= 0.0) {
            return Err(obj.invalid(key, Value::Array(items.clone()), "entries must be finite (and > 0 for a std)"));
        }
        *slot = x;
    }
    Ok(Some(out))
}
