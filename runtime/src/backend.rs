//! Where the linear layers run: the one interface the models call `x · wᵀ` through.
//!
//! A [`Linear`] is chosen once, when the model is placed ([`crate::pipeline::Vlm::place`]): the CPU
//! kernels (which pick their instruction set once per process), or a Vulkan device holding some of the
//! weights, uploaded once from the map. Each call runs where its weight is: a weight the device does not
//! hold (layers left on the CPU by `--gpu-layers`, MoE experts, a type without a shader) runs on the CPU.
//! A device that fails (lost, out of memory, past its timeout) is not used again: that call and every later
//! one run on the CPU, after one warning. Everything else (norms, attention, RoPE) runs on the CPU.

use std::fmt;
use std::str::FromStr;
#[cfg(feature = "vulkan")]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "vulkan")]
use std::sync::Arc;

use crate::kernels;
use crate::tensor::{Matrix, WeightError};

/// `--backend` / `--vision-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The CPU kernels.
    #[default]
    Cpu,
    /// A Vulkan device, whatever it is (forced).
    Vulkan,
    /// Vulkan on discrete GPUs and NVIDIA's (Tegra), the CPU elsewhere: on the Raspberry Pi's V3D, on Mali
    /// and Adreno, public reports show Vulkan compute slower than the CPU or wrong; a CPU implementation
    /// (lavapipe) is never faster than the CPU kernels.
    Auto,
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<BackendChoice, String> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(BackendChoice::Cpu),
            "vulkan" => Ok(BackendChoice::Vulkan),
            "auto" => Ok(BackendChoice::Auto),
            _ => Err(format!("'{s}': the backend is cpu, vulkan or auto")),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Cpu => "cpu",
            BackendChoice::Vulkan => "vulkan",
            BackendChoice::Auto => "auto",
        })
    }
}

/// Which weights go where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// The language model's backend.
    pub backend: BackendChoice,
    /// Decoder layers on the device, counted from the last one as llama.cpp's `-ngl` counts them; more than
    /// the model has also puts the output head there. `None`: every layer and the head.
    pub gpu_layers: Option<usize>,
    /// The vision tower's and projector's backend; `None`: the language model's.
    pub vision: Option<BackendChoice>,
    /// The Vulkan device (its index in `sail-edge doctor`'s list).
    pub device: usize,
}

impl Placement {
    /// Everything on the CPU.
    pub fn cpu() -> Placement {
        Placement::default()
    }

    /// Whether anything may go to a device.
    pub fn wants_device(&self) -> bool {
        self.backend != BackendChoice::Cpu || self.vision.is_some_and(|v| v != BackendChoice::Cpu)
    }
}

/// What was placed where (`-v`, `describe --json`, bench rows).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlacementReport {
    /// The device used, `name (kind)`, or `None`: everything on the CPU.
    pub device: Option<String>,
    /// Decoder layers whose linear weights are all on the device, of `decoder_layers`.
    pub decoder_layers_on_device: usize,
    pub decoder_layers: usize,
    pub output_on_device: bool,
    /// The vision tower's and projector's linear weights.
    pub vision_on_device: bool,
    /// Each decoder forward pass (a prompt, a decoding step) runs on the device as one program, not layer
    /// by layer.
    pub decoder_one_submission: bool,
    /// The vision tower's blocks and the projector run on the device as one program each (two submissions
    /// per tile), not layer by layer.
    pub vision_one_submission: bool,
    /// Bytes of weights copied to the device.
    pub device_weight_bytes: u64,
    /// Why something stayed on the CPU (no loader, `auto` declining a device, a type without a shader…).
    pub notes: Vec<String>,
}

impl PlacementReport {
    /// What is on the device: `L/N decoder layers, output head, vision`.
    pub fn parts(&self) -> String {
        let mut parts = vec![format!("{}/{} decoder layers", self.decoder_layers_on_device, self.decoder_layers)];
        if self.decoder_one_submission {
            parts[0].push_str(" (one submission per step)");
        }
        if self.output_on_device {
            parts.push("output head".into());
        }
        if self.vision_on_device {
            parts.push(
                if self.vision_one_submission {
                    "vision (ViT, projector: one submission each per tile)"
                } else {
                    "vision"
                }
                .into(),
            );
        }
        parts.join(", ")
    }

    /// One line: `cpu`, or `vulkan: NAME (KIND): L/N decoder layers, output head, vision; SIZE of weights`.
    pub fn summary(&self) -> String {
        let Some(device) = &self.device else { return "cpu".to_string() };
        let mib = self.device_weight_bytes as f64 / 1048576.0;
        format!("vulkan: {device}: {}; {mib:.1} MiB of weights", self.parts())
    }
}

/// The linear layers of one model part (the decoder, or the vision tower with its projector).
#[derive(Clone, Default)]
pub struct Linear {
    #[cfg(feature = "vulkan")]
    device: Option<Arc<Device>>,
}

#[cfg(feature = "vulkan")]
struct Device {
    linear: crate::vulkan::linear::DeviceLinear,
    /// Set at the first failure: later calls go straight to the CPU.
    failed: AtomicBool,
}

impl fmt::Debug for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.on_device() { "Linear(vulkan)" } else { "Linear(cpu)" })
    }
}

impl Linear {
    /// The CPU kernels.
    pub fn cpu() -> Linear {
        Linear::default()
    }

    /// Whether a device is in use (and has not failed).
    pub fn on_device(&self) -> bool {
        #[cfg(feature = "vulkan")]
        if let Some(d) = &self.device {
            return !d.failed.load(Ordering::SeqCst);
        }
        false
    }

    /// Whether `w` runs on the device.
    pub fn holds(&self, w: &Matrix<'_>) -> bool {
        #[cfg(feature = "vulkan")]
        if let Some(d) = &self.device {
            return !d.failed.load(Ordering::SeqCst) && d.linear.holds(w);
        }
        let _ = w;
        false
    }

    /// `out[n × w.rows] = x[n × w.cols] · wᵀ` ([`kernels::matmul`]).
    pub fn matmul(&self, x: &[f32], n: usize, w: &Matrix<'_>, out: &mut [f32]) -> Result<(), WeightError> {
        if self.on_device_did(x, n, &[w], &mut [&mut *out]) {
            return Ok(());
        }
        kernels::matmul(x, n, w, out)
    }

    /// Several weights that share their input ([`kernels::matmul_shared`]); on the device in one submission
    /// when it holds them all.
    pub fn matmul_shared(
        &self,
        x: &[f32],
        n: usize,
        ws: &[&Matrix<'_>],
        outs: &mut [&mut [f32]],
    ) -> Result<(), WeightError> {
        if self.on_device_did(x, n, ws, outs) {
            return Ok(());
        }
        kernels::matmul_shared(x, n, ws, outs)
    }

    /// The device and its weights, unless there is none or it failed: for building programs that run a
    /// whole part on the device ([`Linear::run_program`]).
    #[cfg(feature = "vulkan")]
    pub(crate) fn device(&self) -> Option<&crate::vulkan::linear::DeviceLinear> {
        self.device.as_ref().filter(|d| !d.failed.load(Ordering::SeqCst)).map(|d| &d.linear)
    }

    /// A part's device program, built where this has a working device: `(program, None)`, or `(None, why
    /// not)` when `build` declines, or `(None, None)` without a device.
    #[cfg(feature = "vulkan")]
    pub(crate) fn program<P>(
        &self,
        build: impl FnOnce(&crate::vulkan::linear::DeviceLinear) -> Result<P, String>,
    ) -> (Option<P>, Option<String>) {
        match self.device().map(build) {
            None => (None, None),
            Some(Ok(p)) => (Some(p), None),
            Some(Err(note)) => (None, Some(note)),
        }
    }

    /// Run a program recorded for the device (a whole ViT forward…): `None` where there is no device, it
    /// failed earlier, or the program fails now; then, once, a warning, and the CPU from here on, as for a
    /// failing linear layer.
    #[cfg(feature = "vulkan")]
    pub(crate) fn run_program<T>(
        &self,
        program: impl FnOnce(&crate::vulkan::linear::DeviceLinear) -> Result<T, crate::vulkan::VulkanError>,
    ) -> Option<T> {
        let d = self.device.as_ref()?;
        if d.failed.load(Ordering::SeqCst) {
            return None;
        }
        match program(&d.linear) {
            Ok(v) => Some(v),
            Err(e) => {
                if !d.failed.swap(true, Ordering::SeqCst) {
                    tracing::warn!("Vulkan: {e}; the CPU runs this and everything after it");
                }
                None
            }
        }
    }

    /// Run the call on the device if it holds every weight; `false`: the CPU must (not held, or the device
    /// failed now or earlier).
    #[allow(unused_variables)]
    fn on_device_did(&self, x: &[f32], n: usize, ws: &[&Matrix<'_>], outs: &mut [&mut [f32]]) -> bool {
        #[cfg(feature = "vulkan")]
        if let Some(d) = &self.device {
            if d.failed.load(Ordering::SeqCst) {
                return false;
            }
            match d.linear.matmul(x, n, ws, outs) {
                Ok(done) => return done,
                Err(e) => {
                    if !d.failed.swap(true, Ordering::SeqCst) {
                        tracing::warn!("Vulkan: {e}; the CPU runs this and every later layer");
                    }
                    return false;
                }
            }
        }
        false
    }
}

/// The device a placement names, or why there is none (the caller stays on the CPU with that note).
#[cfg(feature = "vulkan")]
fn open_device(placement: &Placement) -> Result<crate::vulkan::Gpu, String> {
    use crate::vulkan::{Gpu, Vulkan};
    let vk = Vulkan::load().map_err(|e| format!("Vulkan: {e}"))?;
    Gpu::open(&vk, placement.device).map_err(|e| format!("Vulkan: {e}"))
}

/// Why `auto` leaves a device alone.
#[cfg(feature = "vulkan")]
fn auto_declines(info: &crate::vulkan::DeviceInfo) -> String {
    use crate::vulkan::DeviceKind;
    format!(
        "--backend auto: {} is {} (vendor {:#06x}); the CPU runs it (--backend vulkan forces the device)",
        info.name,
        match info.kind {
            DeviceKind::Cpu => "a CPU implementation of Vulkan",
            DeviceKind::Integrated => "an integrated GPU that is not NVIDIA's",
            DeviceKind::Virtual => "a virtual GPU",
            _ => "not a discrete GPU",
        },
        info.vendor_id
    )
}

/// NVIDIA's PCI vendor id (discrete GPUs and the Tegra in every Jetson).
pub const VENDOR_NVIDIA: u32 = 0x10de;

/// `auto`'s rule: discrete GPUs and NVIDIA's integrated ones (Jetson); not V3D (Broadcom), Mali (ARM),
/// Adreno (Qualcomm), other integrated GPUs, or CPU implementations.
#[cfg(feature = "vulkan")]
pub fn auto_takes(kind: crate::vulkan::DeviceKind, vendor_id: u32) -> bool {
    use crate::vulkan::DeviceKind;
    match kind {
        DeviceKind::Discrete => true,
        DeviceKind::Integrated => vendor_id == VENDOR_NVIDIA,
        _ => false,
    }
}

/// One part of a model (its linear weights) and the backend asked for it.
pub struct Part<'m, 'a> {
    pub matrices: Vec<&'m Matrix<'a>>,
    pub choice: BackendChoice,
}

/// What [`place_parts`] did.
pub struct Placed {
    /// One per part.
    pub linears: Vec<Linear>,
    /// Per part: every weight is on the device.
    pub complete: Vec<bool>,
    /// The device, `name (kind)`, when one is used.
    pub device: Option<String>,
    pub bytes: u64,
}

/// Make the [`Linear`]s for a model's parts: one device shared by the parts that get it, each weight
/// uploaded once. A part asking for the CPU, `auto` on a device it declines, no device, or a failure: that
/// part (or weight) runs on the CPU, and `notes` says why.
#[allow(unused_variables)]
pub fn place_parts(placement: &Placement, parts: &[Part<'_, '_>], notes: &mut Vec<String>) -> Placed {
    let cpu = || Placed {
        linears: vec![Linear::cpu(); parts.len()],
        complete: vec![false; parts.len()],
        device: None,
        bytes: 0,
    };
    if parts.iter().all(|p| p.choice == BackendChoice::Cpu) {
        return cpu();
    }
    #[cfg(not(feature = "vulkan"))]
    {
        notes.push("this build has no Vulkan backend (cargo feature `vulkan`): everything runs on the CPU".into());
        cpu()
    }
    #[cfg(feature = "vulkan")]
    {
        use crate::vulkan::linear::DeviceLinear;
        let gpu = match open_device(placement) {
            Ok(g) => g,
            Err(why) => {
                notes.push(format!("{why}; everything runs on the CPU"));
                return cpu();
            }
        };
        let info = gpu.info().clone();
        let takes = |choice: BackendChoice| match choice {
            BackendChoice::Cpu => false,
            BackendChoice::Vulkan => true,
            BackendChoice::Auto => auto_takes(info.kind, info.vendor_id),
        };
        if parts.iter().any(|p| p.choice == BackendChoice::Auto) && !auto_takes(info.kind, info.vendor_id) {
            notes.push(auto_declines(&info));
        }
        if !parts.iter().any(|p| takes(p.choice)) {
            return cpu();
        }
        let device = format!("{} ({})", info.name, info.kind.label());
        let mut linear = match DeviceLinear::new(gpu) {
            Ok(l) => l,
            Err(e) => {
                notes.push(format!("Vulkan: {e}; everything runs on the CPU"));
                return cpu();
            }
        };
        let mut complete = vec![false; parts.len()];
        let mut out_of_memory = false;
        let mut unsupported = std::collections::BTreeMap::new();
        for (i, part) in parts.iter().enumerate().filter(|(_, p)| takes(p.choice)) {
            let mut all = true;
            // The device adds the products of quantized weights exactly as the CPU does (the same bits), but
            // not those of f16/f32 weights (the CPU's order there is its SIMD lanes'). In a quantized part
            // the few float weights (the ViT's patch embedding) stay on the CPU, so that its answers through
            // the device are the CPU's bit for bit; a float part goes up whole.
            let float_part = part.matrices.iter().all(|w| is_float(w.ty));
            for w in &part.matrices {
                if is_float(w.ty) && !float_part {
                    tracing::info!("{} ({}) stays on the CPU: a float layer of a quantized model", w.name, w.ty);
                    continue;
                }
                if !crate::vulkan::linear::supported(w.ty) {
                    all = false;
                    *unsupported.entry(w.ty.to_string()).or_insert(0usize) += 1;
                    continue;
                }
                if out_of_memory {
                    all = false;
                    continue;
                }
                if let Err(e) = linear.upload(w) {
                    all = false;
                    if matches!(e, crate::vulkan::VulkanError::OutOfMemory { .. }) {
                        out_of_memory = true;
                        notes.push(format!("Vulkan: {e}; {} and the weights after it stay on the CPU", w.name));
                    } else {
                        notes.push(format!("Vulkan: {e}; it stays on the CPU"));
                    }
                }
            }
            complete[i] = all;
        }
        for (ty, count) in &unsupported {
            notes.push(format!("{count} {ty} weight(s) have no Vulkan shader (it has q8_0, q4_0, q4_k, q6_k, f16, f32): they run on the CPU"));
        }
        let bytes = linear.weight_bytes();
        let shared = Arc::new(Device { linear, failed: AtomicBool::new(false) });
        let linears = parts
            .iter()
            .map(|p| if takes(p.choice) { Linear { device: Some(shared.clone()) } } else { Linear::cpu() })
            .collect();
        Placed { linears, complete, device: Some(device), bytes }
    }
}

#[cfg(feature = "vulkan")]
fn is_float(ty: crate::GgmlType) -> bool {
    matches!(ty, crate::GgmlType::F16 | crate::GgmlType::F32)
}

/// Which decoder layers `gpu_layers` puts on the device, counted from the last (llama.cpp's `-ngl`), and
/// whether the output head goes too.
pub fn device_layers(gpu_layers: Option<usize>, layers: usize) -> (std::ops::Range<usize>, bool) {
    match gpu_layers {
        None => (0..layers, true),
        Some(n) => (layers - n.min(layers)..layers, n > layers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_print() {
        for c in [BackendChoice::Cpu, BackendChoice::Vulkan, BackendChoice::Auto] {
            assert_eq!(c.to_string().parse::<BackendChoice>().unwrap(), c);
        }
        assert_eq!("VULKAN".parse::<BackendChoice>().unwrap(), BackendChoice::Vulkan);
        let e = "gpu".parse::<BackendChoice>().unwrap_err();
        assert!(e.contains("'gpu'") && e.contains("cpu, vulkan or auto"), "{e}");
    }

    /// `--gpu-layers` counts from the last layer; more than the model has takes the head too (as `-ngl`).
    #[test]
    fn gpu_layers_count_from_the_last_layer() {
        assert_eq!(device_layers(None, 28), (0..28, true));
        assert_eq!(device_layers(Some(0), 28), (28..28, false));
        assert_eq!(device_layers(Some(4), 28), (24..28, false));
        assert_eq!(device_layers(Some(28), 28), (0..28, false));
        assert_eq!(device_layers(Some(29), 28), (0..28, true));
        assert_eq!(device_layers(Some(999), 28), (0..28, true));
    }

    /// A device that fails mid-call (here: past a zero timeout, as a hung or lost device is) gives that call's
    /// result from the CPU, warns once and is not used again; the results are the CPU's either way.
    #[cfg(feature = "vulkan")]
    #[test]
    fn a_failing_device_falls_back_to_the_cpu() {
        use crate::vulkan::linear::DeviceLinear;
        use crate::GgmlType;
        let Some(gpu) = crate::vulkan::test_support::gpu("a_failing_device_falls_back_to_the_cpu") else { return };
        let (rows, k, n) = (4096usize, 2048usize, 8usize);
        let wf: Vec<f32> = (0..rows * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let mut bytes = vec![0u8; GgmlType::Q8_0.row_size(k).unwrap() * rows];
        crate::quant::quantize_rows(GgmlType::Q8_0, &wf, k, &mut bytes).unwrap();
        let w = Matrix::from_bytes("w", GgmlType::Q8_0, rows, k, &bytes).unwrap();
        let x: Vec<f32> = (0..n * k).map(|i| ((i * 104729) % 997) as f32 / 400.0 - 1.2).collect();
        let mut want = vec![0f32; n * rows];
        kernels::matmul(&x, n, &w, &mut want).unwrap();
        let mut device = DeviceLinear::new(gpu.clone()).unwrap();
        device.upload(&w).unwrap();
        let linear = Linear { device: Some(Arc::new(Device { linear: device, failed: AtomicBool::new(false) })) };
        assert!(linear.holds(&w));
        let mut got = vec![0f32; n * rows];
        linear.matmul(&x, n, &w, &mut got).unwrap();
        assert_eq!(got, want, "on the device: the CPU's bits");
        gpu.set_timeout(std::time::Duration::ZERO);
        let mut got = vec![0f32; n * rows];
        linear.matmul(&x, n, &w, &mut got).unwrap();
        assert_eq!(got, want, "after the failure: the CPU's result");
        assert!(!linear.on_device() && !linear.holds(&w), "a failed device is not used again");
    }

    #[cfg(feature = "vulkan")]
    #[test]
    fn auto_takes_discrete_and_tegra_only() {
        use crate::vulkan::DeviceKind;
        assert!(auto_takes(DeviceKind::Discrete, 0x1002));
        assert!(auto_takes(DeviceKind::Integrated, VENDOR_NVIDIA));
        // Broadcom V3D, ARM Mali, Qualcomm Adreno, Intel integrated, lavapipe.
        for vendor in [0x14e4, 0x13b5, 0x5143, 0x8086] {
            assert!(!auto_takes(DeviceKind::Integrated, vendor), "{vendor:#x}");
        }
        assert!(!auto_takes(DeviceKind::Cpu, 0x10005));
        assert!(!auto_takes(DeviceKind::Virtual, VENDOR_NVIDIA));
    }
}
