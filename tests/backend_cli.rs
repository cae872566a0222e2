//! `--backend`, `--gpu-layers`, `--vision-backend` on the CLI: through a Vulkan device (lavapipe in CI) the
//! answer of a quantized model is the CPU's, byte for byte; `auto` declines a CPU implementation; no loader
//! or no such device is a warning and the CPU's answer, never a failure; a bad value is refused by name.

mod common;

use common::{fixtures, sail_edge, stderr};

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

fn expected(tool: &str) -> bool {
    std::env::var("SAIL_EDGE_EXPECT_TOOLS").unwrap_or_default().split(',').any(|t| t.trim() == tool)
}

/// The tiny fixture converted once to q8_0: (folder, model path).
fn model() -> &'static (PathBuf, PathBuf) {
    static MODEL: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    MODEL.get_or_init(|| common::convert_tiny("q8_0"))
}

fn describe_args(extra: &[&str]) -> Vec<String> {
    let (_, lm) = model();
    let page = fixtures().join("images/astronaut.png");
    let mut args: Vec<String> = ["describe", "-m", lm.to_str().unwrap(), "-n", "6", "-t", "1", "--image"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(page.to_string_lossy().into_owned());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn describe(extra: &[&str]) -> Output {
    let args = describe_args(extra);
    sail_edge(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Whether `describe --backend vulkan` found a device (its stderr names it); if not, the reason is said,
/// and it fails where CI expects Vulkan.
fn device_used(o: &Output, test: &str) -> bool {
    let err = stderr(o);
    if err.contains("backend: vulkan: ") {
        return true;
    }
    assert!(!expected("vulkan"), "{test}: SAIL_EDGE_EXPECT_TOOLS names vulkan, but: {err}");
    eprintln!("{test}: NOT run on a device: {err}");
    false
}

#[test]
fn describe_through_vulkan_gives_the_cpu_answer() {
    let cpu = describe(&[]);
    assert!(cpu.status.success(), "{}", stderr(&cpu));
    let gpu = describe(&["--backend", "vulkan"]);
    assert!(gpu.status.success(), "{}", stderr(&gpu));
    if !device_used(&gpu, "describe_through_vulkan_gives_the_cpu_answer") {
        return;
    }
    let err = stderr(&gpu);
    assert!(err.contains("decoder layers") && err.contains("vision"), "{err}");
    assert_eq!(String::from_utf8_lossy(&gpu.stdout), String::from_utf8_lossy(&cpu.stdout), "{err}");
    // Only the vision tower on the device; the decoder's last layer only.
    for extra in [["--vision-backend", "vulkan"].as_slice(), ["--backend", "vulkan", "--gpu-layers", "1"].as_slice()] {
        let o = describe(extra);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&cpu.stdout), "{extra:?}");
        if extra.contains(&"--gpu-layers") {
            assert!(stderr(&o).contains("1/3 decoder layers"), "{}", stderr(&o));
        }
    }
}

#[test]
fn no_loader_or_no_device_falls_back_to_the_cpu_with_a_warning() {
    let cpu = describe(&[]);
    let args = describe_args(&["--backend", "vulkan"]);
    let o = Command::new(env!("CARGO_BIN_EXE_sail-edge"))
        .args(&args)
        .env("SAIL_EDGE_VULKAN_LOADER", "/nonexistent/libvulkan.so.1")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let why = if cfg!(feature = "vulkan") { "no Vulkan loader" } else { "no Vulkan backend" };
    assert!(err.contains(why) && err.contains("runs on the CPU"), "{err}");
    assert!(err.contains("backend: cpu"), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&cpu.stdout));
    let o = describe(&["--backend", "vulkan", "--vulkan-device", "99"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    if cfg!(feature = "vulkan") && !err.contains("no Vulkan loader") {
        assert!(err.contains("no Vulkan device 99"), "{err}");
    }
    assert_eq!(String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&cpu.stdout));
}

#[test]
fn auto_declines_a_cpu_implementation() {
    let o = describe(&["--backend", "auto"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    if err.contains("llvmpipe") || err.contains("CPU implementation") {
        assert!(err.contains("--backend auto") && err.contains("backend: cpu"), "{err}");
    } else {
        eprintln!("auto_declines_a_cpu_implementation: the first device is not lavapipe: {err}");
        assert!(!expected("vulkan"), "CI's device is lavapipe: {err}");
    }
}

#[test]
fn a_bad_backend_is_refused_by_name() {
    let o = describe(&["--backend", "gpu"]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("'gpu'") && err.contains("cpu, vulkan or auto"), "{err}");
    let o = describe(&["--vision-backend", "metal"]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("'metal'"), "{err}");
}

#[test]
fn bench_rows_name_the_device() {
    let (_, lm) = model();
    let o = sail_edge(&[
        "bench",
        "-m",
        lm.to_str().unwrap(),
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "1",
        "--no-image",
        "--backend",
        "vulkan",
        "--json",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    if r["backend"] == "vulkan" {
        assert_eq!(r["placement"]["decoder_layers_on_device"], r["placement"]["decoder_layers"], "{r}");
        assert!(
            err.contains("not GPU figures") || !r["placement"]["device"].as_str().unwrap().contains("CPU"),
            "{err}"
        );
    } else {
        assert!(!expected("vulkan"), "SAIL_EDGE_EXPECT_TOOLS names vulkan, but bench ran on the CPU: {err}");
        assert_eq!(r["backend"], "cpu");
    }
}
