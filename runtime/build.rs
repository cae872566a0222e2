//! With the `vulkan` feature: the compute shaders (shaders/*.comp, GLSL) as SPIR-V in OUT_DIR, compiled by
//! `glslc` when it is on PATH (or named by `GLSLC`) and otherwise the committed shaders/*.spv, so builds
//! for Android and iOS need no shader compiler. The crate's tests check that the two are the same bytes
//! wherever glslc ran (runtime/src/vulkan/shaders.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=shaders");
    println!("cargo:rerun-if-env-changed=GLSLC");
    if std::env::var_os("CARGO_FEATURE_VULKAN").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let glslc = std::env::var("GLSLC").unwrap_or_else(|_| "glslc".into());
    let version = Command::new(&glslc).arg("--version").output().ok().filter(|o| o.status.success());
    let mut names: Vec<PathBuf> = std::fs::read_dir("shaders")
        .expect("runtime/shaders")
        .map(|e| e.expect("runtime/shaders entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "comp"))
        .collect();
    names.sort();
    for src in &names {
        let stem = src.file_stem().expect("a shader file name").to_string_lossy().into_owned();
        let dst = out.join(format!("{stem}.spv"));
        match &version {
            Some(_) => compile(&glslc, src, &dst),
            None => {
                let committed = Path::new("shaders").join(format!("{stem}.spv"));
                std::fs::copy(&committed, &dst)
                    .unwrap_or_else(|e| panic!("no glslc and no {}: {e}", committed.display()));
            }
        }
    }
    let source = match &version {
        Some(v) => {
            let first = String::from_utf8_lossy(&v.stdout).lines().next().unwrap_or("").trim().to_string();
            format!("glslc ({first})")
        }
        None => "committed".to_string(),
    };
    println!("cargo:rustc-env=SAIL_EDGE_SPIRV_FROM={source}");
}

/// `glslc --target-env=vulkan1.1 -O`: SPIR-V 1.3 (subgroup operations), optimized, no debug information
/// (so the bytes do not depend on the checkout's path).
fn compile(glslc: &str, src: &Path, dst: &Path) {
    let status = Command::new(glslc)
        .args(["--target-env=vulkan1.1", "-O", "-o"])
        .arg(dst)
        .arg(src)
        .status()
        .unwrap_or_else(|e| panic!("running {glslc} on {}: {e}", src.display()));
    assert!(status.success(), "{glslc} failed on {}", src.display());
}
