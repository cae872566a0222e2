//! Helpers shared by the integration tests (each test binary uses a subset).
#![allow(dead_code)]

pub mod golden;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `../shared/fixtures` beside the checkout.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

/// Run the `sail-edge` binary.
pub fn sail_edge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sail-edge")).args(args).output().expect("binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The tiny fixture checkpoint converted by the binary with `--type ty` (language model, mmproj beside it)
/// into a temporary folder kept for the whole test run: (folder, model path).
pub fn convert_tiny(ty: &str) -> (PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let lm = dir.join(format!("tiny-{ty}.gguf"));
    let o = sail_edge(&[
        "convert",
        fixtures().join("sailvl2-tiny").to_str().unwrap(),
        "--type",
        ty,
        "-o",
        lm.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (dir, lm)
}

/// With `SAIL_EDGE_EXPECT_PATH=NAME` (CI sets it for its forced and emulated runs), the kernel path this
/// process runs must be `NAME` (`scalar`, `avx2`, `avx2vnni`, `neon`, `dotprod`, `i8mm`): proof that a run
/// under `SAIL_EDGE_ISA` or a given `QEMU_CPU` took the path it was meant to, not a fallback. Says which
/// path ran either way.
pub fn check_expected_kernel_path() {
    let ran = runtime::kernels::isa().name();
    eprintln!("kernel path: {ran}");
    if let Ok(want) = std::env::var("SAIL_EDGE_EXPECT_PATH") {
        assert_eq!(ran, want, "SAIL_EDGE_EXPECT_PATH={want}, but this run's kernel path is {ran}");
    }
}
