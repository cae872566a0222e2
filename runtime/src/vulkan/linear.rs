//! Linear layers on a Vulkan device: weights uploaded once from the map, then `x · wᵀ` for any number of
//! input rows with one submission per call (the activations quantized on the CPU exactly as the CPU kernels
//! quantize them, so the device computes the same integer block sums).

use std::collections::HashMap;
use std::sync::Mutex;

use super::shaders::{self, Shader};
use super::{u32_of, Buffer, Gpu, Kernel, MemoryKind, VulkanError};
use crate::kernels::kquants::{quantize_q8_k_activations, Q8KBlock};
use crate::kernels::scalar::{quantize_q8_0_activations, Q8Block};
use crate::tensor::Matrix;
use crate::GgmlType;

/// The activation format a weight type's shader reads ([`DeviceLinear::input_of`]); quantized on the host
/// for a layer-by-layer call, on the device by [`InputQuantizer`] in a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationFormat {
    /// Q8_0 blocks (Q8_0 and Q4_0 weights).
    Q8_0,
    /// Q8_K super-blocks (Q4_K and Q6_K weights).
    Q8K,
    /// Plain f32 rows (F16 and F32 weights).
    F32,
}

/// The shader and activation format of a weight type, or `None` where there is no shader for it; `idot`:
/// the device has integer dot-product instructions.
fn route_on(ty: GgmlType, idot: bool) -> Option<(&'static Shader, ActivationFormat)> {
    Some(match ty {
        GgmlType::Q8_0 if idot => (&shaders::MAT_VEC_Q8_0_IDOT, ActivationFormat::Q8_0),
        GgmlType::Q4_0 if idot => (&shaders::MAT_VEC_Q4_0_IDOT, ActivationFormat::Q8_0),
        GgmlType::Q4K if idot => (&shaders::MAT_VEC_Q4_K_IDOT, ActivationFormat::Q8K),
        GgmlType::Q6K if idot => (&shaders::MAT_VEC_Q6_K_IDOT, ActivationFormat::Q8K),
        GgmlType::Q8_0 => (&shaders::MAT_VEC_Q8_0, ActivationFormat::Q8_0),
        GgmlType::Q4_0 => (&shaders::MAT_VEC_Q4_0, ActivationFormat::Q8_0),
        GgmlType::Q4K => (&shaders::MAT_VEC_Q4_K, ActivationFormat::Q8K),
        GgmlType::Q6K => (&shaders::MAT_VEC_Q6_K, ActivationFormat::Q8K),
        GgmlType::F16 => (&shaders::MAT_VEC_F16, ActivationFormat::F32),
        GgmlType::F32 => (&shaders::MAT_VEC_F32, ActivationFormat::F32),
        _ => return None,
    })
}

/// The shader and activation format of a weight type on any device.
fn route(ty: GgmlType) -> Option<(&'static Shader, ActivationFormat)> {
    route_on(ty, false)
}

/// Whether a weight type has a shader.
pub fn supported(ty: GgmlType) -> bool {
    route(ty).is_some()
}

/// A weight on the device: its shape and its rows in one buffer, or split by rows over several where it is
/// larger than one storage buffer may be.
struct Resident {
    parts: Vec<(std::ops::Range<u32>, Buffer)>,
    ty: GgmlType,
    rows: usize,
    cols: usize,
}

/// Host-visible buffers the calls reuse, grown to the largest call so far (so bounded by the largest layer
/// times the largest batch of input rows).
#[derive(Default)]
struct Scratch {
    /// Activation quants, scales and sums of 16, per input format.
    q8_0: [Option<Buffer>; 2],
    q8_k: [Option<Buffer>; 3],
    f32: Option<Buffer>,
    /// One output per weight of a call.
    outs: Vec<Option<Buffer>>,
}

/// Make `slot` hold at least `bytes` (a power of two at least, so growth is rare) and fill it with `data`.
fn fill(gpu: &Gpu, slot: &mut Option<Buffer>, data: &[u8], what: &str) -> Result<(), VulkanError> {
    reserve(gpu, slot, data.len() as u64, what)?;
    let buffer = slot.as_ref().expect("reserved");
    buffer.write(0, data)
}

fn reserve(gpu: &Gpu, slot: &mut Option<Buffer>, bytes: u64, what: &str) -> Result<(), VulkanError> {
    let bytes = bytes.max(16);
    if slot.as_ref().is_none_or(|b| b.bytes() < bytes) {
        *slot = None;
        *slot = Some(Buffer::new(gpu, bytes.next_power_of_two(), MemoryKind::Host, what)?);
    }
    Ok(())
}

/// The linear layers one device holds.
pub struct DeviceLinear {
    gpu: Gpu,
    kernels: HashMap<&'static str, Kernel>,
    /// Keyed by the address and length of the weight's bytes in the map (a matrix's `data`).
    weights: HashMap<(usize, usize), Resident>,
    scratch: Mutex<Scratch>,
    bytes: u64,
    /// Most bytes of one weight buffer: the device's `maxStorageBufferRange`, or less (tests).
    buffer_limit: u64,
}

impl DeviceLinear {
    /// The device with a kernel for every weight type that has a shader, holding no weights yet.
    pub fn new(gpu: Gpu) -> Result<DeviceLinear, VulkanError> {
        let mut kernels = HashMap::new();
        let idot = gpu.info().integer_dot_product;
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K, GgmlType::Q6K, GgmlType::F16, GgmlType::F32] {
            let (shader, _) = route_on(ty, idot).expect("a routed type");
            kernels.insert(shader.name, gpu.kernel(shader)?);
        }
        let buffer_limit = gpu.info().max_storage_buffer_range as u64;
        Ok(DeviceLinear {
            gpu,
            kernels,
            weights: HashMap::new(),
            scratch: Mutex::new(Scratch::default()),
            bytes: 0,
            buffer_limit,
        })
    }

    /// Split weights into buffers of at most `bytes` (never more than the device allows); for tests, and
    /// for drivers whose large buffers misbehave.
    pub fn set_buffer_limit(&mut self, bytes: u64) {
        self.buffer_limit = bytes.min(self.gpu.info().max_storage_buffer_range as u64);
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Bytes of weights on the device.
    pub fn weight_bytes(&self) -> u64 {
        self.bytes
    }

    /// Copy `w`'s rows to the device (once: a weight already there is not copied again), split by rows over
    /// several buffers where one storage buffer may not hold them all. A type without a shader, or a row
    /// larger than a buffer, is refused with the reason.
    pub fn upload(&mut self, w: &Matrix<'_>) -> Result<(), VulkanError> {
        let key = (w.data.as_ptr() as usize, w.data.len());
        if self.weights.contains_key(&key) {
            return Ok(());
        }
        if !supported(w.ty) {
            return Err(VulkanError::Usage(format!("{}: no Vulkan shader for {} weights", w.name, w.ty)));
        }
        let row_bytes = w.row_bytes();
        let per_buffer = (self.buffer_limit / row_bytes.max(1) as u64).min(u32::MAX as u64) as usize;
        if per_buffer == 0 || u32::try_from(w.rows).is_err() {
            return Err(VulkanError::Usage(format!(
                "{}: {} rows of {row_bytes} bytes do not fit buffers of at most {} bytes on {}",
                w.name,
                w.rows,
                self.buffer_limit,
                self.gpu.name()
            )));
        }
        let mut parts = Vec::new();
        for r0 in (0..w.rows).step_by(per_buffer) {
            let r1 = (r0 + per_buffer).min(w.rows);
            let what = if r1 - r0 == w.rows { w.name.to_string() } else { format!("{} rows {r0}..{r1}", w.name) };
            let buffer = Buffer::with_data(&self.gpu, w.rows_bytes(r0, r1), MemoryKind::Device, &what)?;
            parts.push((r0 as u32..r1 as u32, buffer));
        }
        self.bytes += w.data.len() as u64;
        self.weights.insert(key, Resident { parts, ty: w.ty, rows: w.rows, cols: w.cols });
        Ok(())
    }

    /// Whether `w`'s rows are on the device (the same bytes of the map, seen with the same shape).
    pub fn holds(&self, w: &Matrix<'_>) -> bool {
        self.resident(w).is_some()
    }

    fn resident(&self, w: &Matrix<'_>) -> Option<&Resident> {
        let r = self.weights.get(&(w.data.as_ptr() as usize, w.data.len()))?;
        (r.ty == w.ty && r.rows == w.rows && r.cols == w.cols).then_some(r)
    }

    /// The activation format `w`'s shader reads on this device, or `None` where `w` is not held.
    pub fn input_of(&self, w: &Matrix<'_>) -> Option<ActivationFormat> {
        self.resident(w)?;
        Some(route(w.ty)?.1)
    }

    /// Record `out[n × w.rows] = x · wᵀ` into `batch`, `x` being `n` rows already on the device in the
    /// format [`DeviceLinear::input_of`] names: for programs that keep their activations on the device
    /// from one operation to the next.
    pub fn record_matmul(
        &self,
        batch: &mut super::Batch,
        w: &Matrix<'_>,
        inputs: &DeviceInputs<'_>,
        out: &Buffer,
        n: u32,
    ) -> Result<(), VulkanError> {
        let r = self.resident(w).ok_or_else(|| VulkanError::Usage(format!("{} is not on the device", w.name)))?;
        let (shader, input) =
            route_on(r.ty, self.gpu.info().integer_dot_product).expect("resident weights have shaders");
        let kernel = &self.kernels[shader.name];
        let total = u32::try_from(w.rows)
            .map_err(|_| VulkanError::Usage(format!("{}: {} rows do not fit the shaders' u32", w.name, w.rows)))?;
        for (held, weights) in &r.parts {
            let rows = shaders::Rows { rows: total, held: held.clone() };
            record(batch, kernel, r.ty, input, weights, inputs, out, &rows, w.cols, n)?;
        }
        Ok(())
    }

    /// `outs[j][n × ws[j].rows] = x[n × k] · ws[j]ᵀ` for weights that share their input, in one submission.
    /// `Ok(false)`: a weight is not on the device (nothing was computed; the caller uses the CPU).
    pub fn matmul(
        &self,
        x: &[f32],
        n: usize,
        ws: &[&Matrix<'_>],
        outs: &mut [&mut [f32]],
    ) -> Result<bool, VulkanError> {
        let Some(resident) = ws.iter().map(|w| self.resident(w)).collect::<Option<Vec<&Resident>>>() else {
            return Ok(false);
        };
        if ws.len() != outs.len() {
            return Err(VulkanError::Usage(format!("{} weights and {} outputs", ws.len(), outs.len())));
        }
        if n == 0 || ws.is_empty() {
            return Ok(true);
        }
        let k = x.len() / n;
        for (w, out) in ws.iter().zip(outs.iter()) {
            if w.cols != k || x.len() != n * k || out.len() != n * w.rows {
                return Err(VulkanError::Usage(format!(
                    "{}: [{n} × {}] input and {} outputs for a [{} × {}] weight",
                    w.name,
                    x.len() / n.max(1),
                    out.len(),
                    w.rows,
                    w.cols
                )));
            }
        }
        let mut scratch =
            self.scratch.lock().map_err(|_| VulkanError::Usage("the scratch lock was poisoned".into()))?;
        let scratch = &mut *scratch;
        // Each input format the weights need, once.
        let needs = |f: ActivationFormat| resident.iter().any(|r| route(r.ty).map(|(_, i)| i) == Some(f));
        if needs(ActivationFormat::Q8_0) {
            let blocks: Vec<Q8Block> = x.chunks(k).flat_map(quantize_q8_0_activations).collect();
            let qs: Vec<u8> = blocks.iter().flat_map(|b| b.qs.iter().map(|q| *q as u8)).collect();
            let ds: Vec<u8> = blocks.iter().flat_map(|b| b.d.to_le_bytes()).collect();
            fill(&self.gpu, &mut scratch.q8_0[0], &qs, "Q8_0 activation quants")?;
            fill(&self.gpu, &mut scratch.q8_0[1], &ds, "Q8_0 activation scales")?;
        }
        if needs(ActivationFormat::Q8K) {
            let blocks: Vec<Q8KBlock> = x.chunks(k).flat_map(quantize_q8_k_activations).collect();
            let qs: Vec<u8> = blocks.iter().flat_map(|b| b.qs.iter().map(|q| *q as u8)).collect();
            let ds: Vec<u8> = blocks.iter().flat_map(|b| b.d.to_le_bytes()).collect();
            let ss: Vec<u8> =
                blocks.iter().flat_map(|b| b.bsums.iter().flat_map(|s| (*s as i32).to_le_bytes())).collect();
            fill(&self.gpu, &mut scratch.q8_k[0], &qs, "Q8_K activation quants")?;
            fill(&self.gpu, &mut scratch.q8_k[1], &ds, "Q8_K activation scales")?;
            fill(&self.gpu, &mut scratch.q8_k[2], &ss, "Q8_K activation sums")?;
        }
        if needs(ActivationFormat::F32) {
            let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
            fill(&self.gpu, &mut scratch.f32, &bytes, "f32 activations")?;
        }
        if scratch.outs.len() < ws.len() {
            scratch.outs.resize_with(ws.len(), || None);
        }
        for (j, w) in ws.iter().enumerate() {
            reserve(&self.gpu, &mut scratch.outs[j], (n * w.rows * 4) as u64, "linear outputs")?;
        }
        let mut batch = self.gpu.batch()?;
        let n32 = u32_of(n, "input rows")?;
        let inputs = DeviceInputs {
            f32: scratch.f32.as_ref(),
            q8_0: scratch.q8_0[0].as_ref().zip(scratch.q8_0[1].as_ref()),
            q8_k: match &scratch.q8_k {
                [Some(q), Some(d), Some(s)] => Some((q, d, s)),
                _ => None,
            },
        };
        for (j, w) in ws.iter().enumerate() {
            let out = scratch.outs[j].as_ref().expect("reserved");
            self.record_matmul(&mut batch, w, &inputs, out, n32)?;
        }
        batch.run(ws[0].name)?;
        for (j, out) in outs.iter_mut().enumerate() {
            let buffer = scratch.outs[j].as_ref().expect("reserved");
            let mut bytes = vec![0u8; out.len() * 4];
            buffer.read(0, &mut bytes)?;
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Ok(true)
    }
}

/// Activations already on the device, in the formats the matrix shaders read.
#[derive(Clone, Copy, Default)]
pub struct DeviceInputs<'b> {
    /// Plain f32 rows (F16 and F32 weights).
    pub f32: Option<&'b Buffer>,
    /// Q8_0 blocks: quants and scales (Q8_0 and Q4_0 weights).
    pub q8_0: Option<(&'b Buffer, &'b Buffer)>,
    /// Q8_K super-blocks: quants, scales and sums of 16 (Q4_K and Q6_K weights).
    pub q8_k: Option<(&'b Buffer, &'b Buffer, &'b Buffer)>,
}

/// Quantizes activations on the device for the matrices that read them, so that a program can run one
/// linear layer after another without the host (the quants are the CPU's bits: see the shaders).
pub struct InputQuantizer {
    q8_0: Kernel,
    q8_k: Kernel,
    /// Q8_0 quants and scales; Q8_K quants, scales and sums of 16; for up to `values` activations.
    xq: Buffer,
    xd: Buffer,
    kq: Buffer,
    kd: Buffer,
    ks: Buffer,
    values: usize,
}

impl InputQuantizer {
    /// Room for activations of up to `values` values (rows × width) at a time.
    pub fn new(dev: &DeviceLinear, values: usize) -> Result<InputQuantizer, VulkanError> {
        let g = &dev.gpu;
        let f = |bytes: usize, what: &str| Buffer::new(g, bytes as u64, MemoryKind::Device, what);
        Ok(InputQuantizer {
            q8_0: g.kernel(&shaders::QUANTIZE_Q8_0)?,
            q8_k: g.kernel(&shaders::QUANTIZE_Q8_K)?,
            xq: f(values, "Q8_0 activation quants")?,
            xd: f(values / 32 * 4, "Q8_0 activation scales")?,
            kq: f(values, "Q8_K activation quants")?,
            kd: f(values / 256 * 4, "Q8_K activation scales")?,
            ks: f(values / 16 * 4, "Q8_K activation sums")?,
            values,
        })
    }

    /// Record `outs[j] = input · ws[j]ᵀ` for weights sharing the `[rows, width]` activation `input` (on the
    /// device, f32), after quantizing it to each format one of them reads.
    pub fn linear(
        &self,
        dev: &DeviceLinear,
        batch: &mut super::Batch,
        input: &Buffer,
        rows: usize,
        width: usize,
        ws: &[(&Matrix<'_>, &Buffer)],
    ) -> Result<(), VulkanError> {
        if rows * width > self.values {
            return Err(VulkanError::Usage(format!(
                "{rows} × {width} activations past the quantizer's room for {}",
                self.values
            )));
        }
        let blocks = |v: usize| u32_of(v, "activation blocks");
        let reads = |f: ActivationFormat| ws.iter().any(|(w, _)| dev.input_of(w) == Some(f));
        if reads(ActivationFormat::Q8_0) {
            shaders::quantize_q8_0(batch, &self.q8_0, input, &self.xq, &self.xd, blocks(rows * width / 32)?)?;
        }
        if reads(ActivationFormat::Q8K) {
            let n = blocks(rows * width / 256)?;
            shaders::quantize_q8_k(batch, &self.q8_k, input, &self.kq, &self.kd, &self.ks, n)?;
        }
        let inputs = DeviceInputs {
            f32: Some(input),
            q8_0: Some((&self.xq, &self.xd)),
            q8_k: Some((&self.kq, &self.kd, &self.ks)),
        };
        let n = u32_of(rows, "input rows")?;
        for (w, out) in ws {
            dev.record_matmul(batch, w, &inputs, out, n)?;
        }
        Ok(())
    }
}

/// Record one weight buffer's rows × the inputs into `out`, with the shader and inputs of its type.
#[allow(clippy::too_many_arguments)]
fn record(
    batch: &mut super::Batch,
    kernel: &Kernel,
    ty: GgmlType,
    input: ActivationFormat,
    weights: &Buffer,
    inputs: &DeviceInputs<'_>,
    out: &Buffer,
    rows: &shaders::Rows,
    k: usize,
    n: u32,
) -> Result<(), VulkanError> {
    let missing = |what: &str| VulkanError::Usage(format!("{ty} weights need {what} inputs, none were given"));
    match input {
        ActivationFormat::Q8_0 => {
            let (xq, xd) = inputs.q8_0.ok_or_else(|| missing("Q8_0"))?;
            let blocks = u32_of(k / 32, "blocks per row")?;
            shaders::mat_vec_q8_0(batch, kernel, weights, xq, xd, out, rows, blocks, n)
        }
        ActivationFormat::Q8K => {
            let (xq, xd, xs) = inputs.q8_k.ok_or_else(|| missing("Q8_K"))?;
            let blocks = u32_of(k / 256, "super-blocks per row")?;
            if ty == GgmlType::Q4K {
                shaders::mat_vec_q4_k(batch, kernel, weights, xq, xd, xs, out, rows, blocks, n)
            } else {
                shaders::mat_vec_q6_k(batch, kernel, weights, xq, xd, out, rows, blocks, n)
            }
        }
        ActivationFormat::F32 => {
            let xf = inputs.f32.ok_or_else(|| missing("f32"))?;
            shaders::mat_vec_f16(batch, kernel, weights, xf, out, rows, u32_of(k, "columns")?, n)
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::vulkan::test_support::gpu;

    /// Every type through the device in calls of three weights each, against the CPU kernels: the routing
    /// (shader, strides, activation format per weight) gives the CPU's bits for quantized weights and stays
    /// within the reordered-sum bound for float ones; a weight not on the device is `Ok(false)`.
    #[test]
    fn weights_of_every_type_match_the_cpu_through_one_call() {
        let Some(gpu) = gpu("weights_of_every_type_match_the_cpu_through_one_call") else { return };
        let mut dev = DeviceLinear::new(gpu).unwrap();
        let mut rng = SmallRng::seed_from_u64(60);
        let (k, n) = (1024usize, 3usize);
        let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let types = [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K, GgmlType::Q6K, GgmlType::F16, GgmlType::F32];
        let rows = [7usize, 5, 3];
        let data: Vec<(GgmlType, usize, Vec<u8>)> = types
            .iter()
            .enumerate()
            .map(|(i, &ty)| {
                let r = rows[i % 3];
                let wf: Vec<f32> = (0..r * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                let mut w = vec![0u8; ty.row_size(k).unwrap() * r];
                crate::quant::quantize_rows(ty, &wf, k, &mut w).unwrap();
                (ty, r, w)
            })
            .collect();
        let names: Vec<String> = types.iter().map(|t| format!("w.{t}")).collect();
        let ms: Vec<Matrix<'_>> = data
            .iter()
            .zip(&names)
            .map(|((ty, r, w), name)| Matrix::from_bytes(name, *ty, *r, k, w).unwrap())
            .collect();
        for m in &ms {
            dev.upload(m).unwrap();
        }
        let other = vec![0u8; GgmlType::Q8_0.row_size(k).unwrap()];
        let absent = Matrix::from_bytes("absent", GgmlType::Q8_0, 1, k, &other).unwrap();
        let mut o = vec![0f32; n];
        assert!(!dev.matmul(&x, n, &[&absent], &mut [&mut o]).unwrap(), "a weight not uploaded is not computed");
        for group in ms.chunks(3) {
            let ws: Vec<&Matrix<'_>> = group.iter().collect();
            let mut got: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; n * w.rows]).collect();
            let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
            assert!(dev.matmul(&x, n, &ws, &mut outs).unwrap());
            for (w, got) in ws.iter().zip(&got) {
                let mut want = vec![0f32; n * w.rows];
                crate::kernels::matmul(&x, n, w, &mut want).unwrap();
                let mut wf = Vec::new();
                w.rows_f32(0, w.rows, &mut wf).unwrap();
                for (i, (a, b)) in want.iter().zip(got).enumerate() {
                    let (c, r) = (i / w.rows, i % w.rows);
                    if !matches!(w.ty, GgmlType::F16 | GgmlType::F32) {
                        // Quantized weights: each block's term made and added in the CPU's order (the shaders'
                        // own tests), and these 3-row batches take the CPU's scalar-order tiles: the same bits.
                        assert_eq!(a.to_bits(), b.to_bits(), "{} at {i}: cpu {a} gpu {b}", w.name);
                        continue;
                    }
                    // Float weights: both sides add the same k products (each rounded, or fused on the CPU) in
                    // different orders, each within k·u·Σ|w·x| of the exact sum.
                    let xc = &x[c * k..(c + 1) * k];
                    let wr = &wf[r * k..(r + 1) * k];
                    let mag: f64 = wr.iter().zip(xc).map(|(w, v)| (*w as f64 * *v as f64).abs()).sum();
                    let bound = 2.0 * k as f64 * (1.0 / (1u64 << 24) as f64) * mag;
                    assert!(((a - b).abs() as f64) <= bound, "{} at {i}: cpu {a} gpu {b} (bound {bound:e})", w.name);
                }
            }
        }
        assert_eq!(dev.weight_bytes(), data.iter().map(|d| d.2.len() as u64).sum::<u64>());
    }

    /// A weight larger than one buffer may be goes up in row ranges (here: buffers of 3 rows' bytes, so 7
    /// rows make 3 + 3 + 1), and the outputs are the same bits as from one buffer.
    #[test]
    fn a_weight_split_over_buffers_gives_the_same_bits() {
        let Some(gpu) = gpu("a_weight_split_over_buffers_gives_the_same_bits") else { return };
        let mut rng = SmallRng::seed_from_u64(61);
        let (k, n, rows) = (512usize, 3usize, 7usize);
        let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K, GgmlType::Q6K, GgmlType::F16, GgmlType::F32] {
            let wf: Vec<f32> = (0..rows * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let mut bytes = vec![0u8; ty.row_size(k).unwrap() * rows];
            crate::quant::quantize_rows(ty, &wf, k, &mut bytes).unwrap();
            let w = Matrix::from_bytes("w", ty, rows, k, &bytes).unwrap();
            let mut whole = DeviceLinear::new(gpu.clone()).unwrap();
            whole.upload(&w).unwrap();
            let mut split = DeviceLinear::new(gpu.clone()).unwrap();
            split.set_buffer_limit(3 * w.row_bytes() as u64 + 1);
            split.upload(&w).unwrap();
            let held = &split.resident(&w).unwrap().parts;
            assert_eq!(held.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(), vec![0..3, 3..6, 6..7], "{ty}");
            let (mut a, mut b) = (vec![0f32; n * rows], vec![0f32; n * rows]);
            assert!(whole.matmul(&x, n, &[&w], &mut [&mut a]).unwrap());
            assert!(split.matmul(&x, n, &[&w], &mut [&mut b]).unwrap());
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{ty}"
            );
        }
        // A row larger than a buffer cannot be split: refused by name.
        let mut tiny = DeviceLinear::new(gpu).unwrap();
        tiny.set_buffer_limit(16);
        let bytes = vec![0u8; GgmlType::Q8_0.row_size(k).unwrap()];
        let w = Matrix::from_bytes("big.row", GgmlType::Q8_0, 1, k, &bytes).unwrap();
        let e = tiny.upload(&w).unwrap_err().to_string();
        assert!(e.contains("big.row") && e.contains("at most 16 bytes"), "{e}");
    }
}
