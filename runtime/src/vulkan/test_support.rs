//! What the Vulkan tests share: the device they run on, or the reason there is none, said aloud.

use super::{Gpu, Vulkan};

/// Whether `SAIL_EDGE_EXPECT_TOOLS` names `tool` (CI sets it: a missing tool then fails the test).
pub fn expected(tool: &str) -> bool {
    std::env::var("SAIL_EDGE_EXPECT_TOOLS").unwrap_or_default().split(',').any(|t| t.trim() == tool)
}

/// Device `SAIL_EDGE_VULKAN_DEVICE` (default 0), or the reason there is none said aloud: a failure when
/// `SAIL_EDGE_EXPECT_TOOLS` names `vulkan` (CI, with lavapipe installed).
pub fn gpu(test: &str) -> Option<Gpu> {
    let index: usize = std::env::var("SAIL_EDGE_VULKAN_DEVICE").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    match Vulkan::load().and_then(|vk| Gpu::open(&vk, index)) {
        Ok(g) => {
            eprintln!("{test}: on Vulkan device {index}: {} ({:?})", g.info().name, g.info().kind);
            Some(g)
        }
        Err(e) => {
            assert!(!expected("vulkan"), "{test}: SAIL_EDGE_EXPECT_TOOLS names vulkan, but: {e}");
            eprintln!("{test}: NOT run: {e}");
            None
        }
    }
}
