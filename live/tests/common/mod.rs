//! Shared by the live crate's tests: external tools.

use std::path::PathBuf;

/// `tool` on PATH. Without it the test cannot run its path: that is a failure when `SAIL_EDGE_EXPECT_TOOLS`
/// names the tool (CI sets it: scripts/test.sh installs them), and a skip said aloud otherwise.
pub fn tool(name: &str) -> Option<PathBuf> {
    if let Some(p) = live::source::video::find_on_path(name) {
        return Some(p);
    }
    let expected = std::env::var("SAIL_EDGE_EXPECT_TOOLS").unwrap_or_default();
    if expected.split(',').any(|t| t.trim() == name) {
        panic!("{name} is not on PATH but SAIL_EDGE_EXPECT_TOOLS expects it");
    }
    eprintln!("SKIPPED: {name} is not on PATH (apt-get install {name}); this test's path did not run");
    None
}
