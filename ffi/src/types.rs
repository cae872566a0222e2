//! The C enums and the integer forms the functions take them in.
//!
//! An `enum` parameter from C may hold any integer (C does not check), and a Rust enum holding a value that
//! is not one of its variants is undefined behaviour, so functions take enums as `int32_t` and convert with a
//! checked match (`*_raw` types, which the header spells with the enum's name).

use runtime::engine::{ErrorKind, PixelFormat};
use runtime::GgmlType;

/// What a call did. Negative values are failures; `sail_last_error()` says why.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sail_status {
    SAIL_OK = 0,
    /// The answer is complete (`sail_session_next`, `sail_session_ask_callback`).
    SAIL_DONE = 1,
    /// `sail_session_cancel` stopped the answer; the session is as it was before the question.
    SAIL_CANCELLED = 2,
    /// A bad argument: NULL, a handle that is not live, an empty question, a frame that does not add up…
    SAIL_ERR_ARG = -1,
    /// A file could not be read.
    SAIL_ERR_IO = -2,
    /// A file is not what it should be (model, mmproj, image).
    SAIL_ERR_FORMAT = -3,
    /// The conversation would not fit in the context (reset the session or open with a longer context).
    SAIL_ERR_CONTEXT_FULL = -4,
    /// A bug (a caught panic) or a failure of the system (threads).
    SAIL_ERR_INTERNAL = -100,
}

pub use sail_status::*;

impl sail_status {
    pub(crate) fn from_kind(kind: ErrorKind) -> sail_status {
        match kind {
            ErrorKind::Argument => SAIL_ERR_ARG,
            ErrorKind::Io => SAIL_ERR_IO,
            ErrorKind::Format => SAIL_ERR_FORMAT,
            ErrorKind::ContextFull => SAIL_ERR_CONTEXT_FULL,
            ErrorKind::Cancelled => SAIL_CANCELLED,
            ErrorKind::Internal => SAIL_ERR_INTERNAL,
        }
    }
}

/// How a frame's bytes are laid out (`sail_session_add_frame`). YUV is BT.601 limited range.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sail_pixel_format {
    /// 3 bytes a pixel: R G B.
    SAIL_PIXEL_RGB8 = 0,
    /// 4 bytes a pixel: R G B A (alpha ignored).
    SAIL_PIXEL_RGBA8 = 1,
    /// 4 bytes a pixel: B G R A (iOS `kCVPixelFormatType_32BGRA`).
    SAIL_PIXEL_BGRA8 = 2,
    /// A luma plane of `height` rows, then interleaved U V at half height; both `stride` bytes a row.
    SAIL_PIXEL_NV12 = 3,
    /// As NV12 with V before U (Android `ImageFormat.NV21`).
    SAIL_PIXEL_NV21 = 4,
    /// Packed 4:2:2, Y0 U Y1 V (UVC cameras).
    SAIL_PIXEL_YUYV = 5,
    /// Planar 4:2:0: Y, then U and V planes of ceil(height/2) rows of ceil(stride/2) bytes.
    SAIL_PIXEL_I420 = 6,
    /// Planar 4:2:2: as I420 with chroma planes of `height` rows.
    SAIL_PIXEL_I422 = 7,
    /// Planar 4:4:4: three planes of `height` rows of `stride` bytes.
    SAIL_PIXEL_I444 = 8,
    /// Luma only, one byte a pixel.
    SAIL_PIXEL_GREY = 9,
}

/// `sail_pixel_format` as it crosses the boundary.
pub type sail_pixel_format_raw = i32;

pub(crate) fn pixel_format(raw: sail_pixel_format_raw) -> Option<PixelFormat> {
    // The C values are the positions in PixelFormat::ALL (the runtime lists them in the C API's order).
    usize::try_from(raw).ok().and_then(|i| PixelFormat::ALL.get(i).copied())
}

/// KV cache rows (`sail_engine_params.kv_type`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sail_kv_type {
    /// The board profile's, else F16.
    SAIL_KV_DEFAULT = 0,
    SAIL_KV_F16 = 1,
    /// Half the memory of F16, a small loss of accuracy.
    SAIL_KV_Q8_0 = 2,
    /// Reference-exact, twice the memory of F16.
    SAIL_KV_F32 = 3,
}

/// `sail_kv_type` as it crosses the boundary.
pub type sail_kv_type_raw = i32;

/// `Ok(None)`: the default.
pub(crate) fn kv_type(raw: sail_kv_type_raw) -> Result<Option<GgmlType>, ()> {
    match raw {
        0 => Ok(None),
        1 => Ok(Some(GgmlType::F16)),
        2 => Ok(Some(GgmlType::Q8_0)),
        3 => Ok(Some(GgmlType::F32)),
        _ => Err(()),
    }
}

/// Severity of a log message (`sail_set_log_callback`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum sail_log_level {
    SAIL_LOG_ERROR = 1,
    SAIL_LOG_WARN = 2,
    SAIL_LOG_INFO = 3,
    SAIL_LOG_DEBUG = 4,
    SAIL_LOG_TRACE = 5,
}

/// `sail_log_level` as it crosses the boundary.
pub type sail_log_level_raw = i32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_formats_match_the_runtime_order() {
        let named = [
            (sail_pixel_format::SAIL_PIXEL_RGB8, PixelFormat::Rgb8),
            (sail_pixel_format::SAIL_PIXEL_RGBA8, PixelFormat::Rgba8),
            (sail_pixel_format::SAIL_PIXEL_BGRA8, PixelFormat::Bgra8),
            (sail_pixel_format::SAIL_PIXEL_NV12, PixelFormat::Nv12),
            (sail_pixel_format::SAIL_PIXEL_NV21, PixelFormat::Nv21),
            (sail_pixel_format::SAIL_PIXEL_YUYV, PixelFormat::Yuyv),
            (sail_pixel_format::SAIL_PIXEL_I420, PixelFormat::I420),
            (sail_pixel_format::SAIL_PIXEL_I422, PixelFormat::I422),
            (sail_pixel_format::SAIL_PIXEL_I444, PixelFormat::I444),
            (sail_pixel_format::SAIL_PIXEL_GREY, PixelFormat::Grey),
        ];
        assert_eq!(named.len(), PixelFormat::ALL.len());
        for (c, rust) in named {
            assert_eq!(pixel_format(c as i32), Some(rust), "{c:?}");
        }
        assert_eq!(pixel_format(-1), None);
        assert_eq!(pixel_format(10), None);
        assert_eq!(pixel_format(i32::MAX), None);
    }

    #[test]
    fn kv_types_are_checked() {
        assert_eq!(kv_type(sail_kv_type::SAIL_KV_Q8_0 as i32), Ok(Some(GgmlType::Q8_0)));
        assert_eq!(kv_type(0), Ok(None));
        assert_eq!(kv_type(4), Err(()));
        assert_eq!(kv_type(-7), Err(()));
    }
}
