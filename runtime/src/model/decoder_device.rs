//! The dense decoder as one program on a Vulkan device (cargo feature `vulkan`): a whole forward pass (a
//! prompt, or one decoding step) recorded into one command buffer — per layer RMSNorm, the on-device
//! quantization of activations, q/k/v, the q/k head norms, RoPE, the append to a KV cache held on the
//! device, causal attention over it, the output projection and residual adds, SwiGLU — then the output norm
//! and head; one submission per call, nothing back on the host between operations.
//!
//! The KV cache stays authoritative on the host ([`KvCache`]): the program mirrors it on the device
//! ([`KvMirror`], inside the cache) and hands the new rows back at the end of each call, so rollback,
//! reuse, cloning and a fall back to the CPU keep working unchanged; a mirror that lags its cache (a clone,
//! a rollback past it) is brought up to date from the host rows first.
//!
//! Every shader is the CPU kernel's arithmetic in the CPU's order, activations are quantized on the device
//! as the CPU quantizes them (Q8_0 or Q8_K blocks), so with quantized weights and an f32 KV cache a step
//! gives the CPU path's bits. With an f16 cache, a decoding step's attention scores differ from the CPU's
//! SIMD dot (another order of the same products) within the reordered-sum bound; prompt blocks of 8 score
//! rows or more are bit for bit there too. A Q8_0 KV cache runs layer by layer through
//! [`crate::backend::Linear`] instead.

use std::sync::Mutex;

use super::{Decoder, Ffn, KvCache, Logits};
use crate::tensor::Matrix;
use crate::vulkan::linear::{DeviceLinear, InputQuantizer};
use crate::vulkan::shaders::{self, AttentionKernels, AttentionShape, Strided};
use crate::vulkan::{u32_of, Batch, Buffer, Gpu, Kernel, MemoryKind, VulkanError};
use crate::GgmlType;

/// A KV cache's copy on a device (see the module comment); a clone of a cache starts without one.
#[derive(Default)]
pub(crate) struct KvMirror(Option<Mirror>);

struct Mirror {
    /// Per layer, keys and values: per KV head `capacity` rows of `head_dim` values (the host layout).
    k: Vec<Buffer>,
    v: Vec<Buffer>,
    capacity: usize,
    ty: GgmlType,
    /// Positions whose rows on the device equal the host's.
    synced: usize,
}

impl Clone for KvMirror {
    /// The clone's rows are the host's; its device copy is made when it is first used there.
    fn clone(&self) -> KvMirror {
        KvMirror(None)
    }
}

impl std::fmt::Debug for KvMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(m) => write!(f, "KvMirror({} of {} positions on the device)", m.synced, m.capacity),
            None => f.write_str("KvMirror(none)"),
        }
    }
}

impl KvMirror {
    /// The host cache was cut to `len` positions.
    pub(crate) fn truncate(&mut self, len: usize) {
        if let Some(m) = &mut self.0 {
            m.synced = m.synced.min(len);
        }
    }
}

/// The kernels the program records besides the matrices.
struct Kernels {
    rms_norm: Kernel,
    add: Kernel,
    silu_mul: Kernel,
    rope: Kernel,
    kv_store: Kernel,
    attention: AttentionKernels,
}

/// One call's activations, grown to the largest call so far (so bounded by the longest prompt batch and
/// the context).
struct Activations {
    /// Tokens the buffers hold, and positions the score buffer covers.
    rows: usize,
    positions: usize,
    /// Residual stream `[n, hidden]` (host-visible: the embeddings are written here).
    x: Buffer,
    h: Buffer,
    q: Buffer,
    k: Buffer,
    v: Buffer,
    attn: Buffer,
    o: Buffer,
    gate: Buffer,
    up: Buffer,
    /// Quantizes whichever activation a quantized weight reads next (sized for the widest).
    quantizer: InputQuantizer,
    scores: Buffer,
    /// RoPE tables `[n, head_dim / 2]` (host-visible).
    cos: Buffer,
    sin: Buffer,
    /// The rows the head reads (`[m, hidden]`), their norm, and the logits (host-visible; rows for
    /// `logit_rows` outputs: one when only the last position's logits are asked for, as when decoding).
    head_in: Buffer,
    head_norm: Buffer,
    logits: Buffer,
    logit_rows: usize,
    /// The new KV rows of every layer, copied here for the host cache (host-visible).
    readback: Buffer,
}

/// A layer's vectors on the device.
struct LayerVectors {
    attn_norm: Buffer,
    q_norm: Buffer,
    k_norm: Buffer,
    ffn_norm: Buffer,
}

/// The decoder as a device program (see the module comment).
pub(super) struct DeviceDecoder {
    layers: Vec<LayerVectors>,
    output_norm: Buffer,
    /// Whether the device holds the output head (else the host computes it from the last hidden rows).
    head: bool,
    kernels: Kernels,
    activations: Mutex<Option<Activations>>,
}

impl DeviceDecoder {
    /// The program for `dec`, or why it cannot run whole on `dev`: routed experts, or a layer not held there.
    pub(super) fn build(dec: &Decoder<'_>, dev: &DeviceLinear) -> Result<DeviceDecoder, String> {
        for l in &dec.layers {
            let Ffn::Dense { gate, up, down } = &l.ffn else {
                return Err("routed experts run on the CPU: the decoder runs layer by layer on the device".into());
            };
            for w in [&l.q, &l.k, &l.v, &l.o, gate, up, down] {
                if !dev.holds(w) {
                    return Err(format!("{} is not on the device: the decoder runs layer by layer", w.name));
                }
            }
        }
        let head = dev.holds(&dec.output);
        let built = || -> Result<DeviceDecoder, VulkanError> {
            let g = dev.gpu();
            let mut layers = Vec::with_capacity(dec.layers.len());
            for l in &dec.layers {
                layers.push(LayerVectors {
                    attn_norm: Buffer::with_floats(g, &l.attn_norm, MemoryKind::Device, "attn_norm")?,
                    q_norm: Buffer::with_floats(g, &l.q_norm, MemoryKind::Device, "attn_q_norm")?,
                    k_norm: Buffer::with_floats(g, &l.k_norm, MemoryKind::Device, "attn_k_norm")?,
                    ffn_norm: Buffer::with_floats(g, &l.ffn_norm, MemoryKind::Device, "ffn_norm")?,
                });
            }
            Ok(DeviceDecoder {
                layers,
                output_norm: Buffer::with_floats(g, &dec.output_norm, MemoryKind::Device, "output_norm")?,
                head,
                kernels: Kernels {
                    rms_norm: g.kernel(&shaders::RMS_NORM)?,
                    add: g.kernel(&shaders::ADD)?,
                    silu_mul: g.kernel(&shaders::SILU_MUL)?,
                    rope: g.kernel(&shaders::ROPE)?,
                    kv_store: g.kernel(&shaders::KV_STORE)?,
                    attention: AttentionKernels::new(g)?,
                },
                activations: Mutex::new(None),
            })
        };
        built().map_err(|e| format!("the decoder's device program: {e}"))
    }

    /// Whether the output head runs on the device too.
    pub(super) fn has_head(&self) -> bool {
        self.head
    }

    /// Make `cache`'s mirror hold positions `0..first` and room for `first + n`.
    fn sync(&self, dec: &Decoder<'_>, g: &Gpu, cache: &mut KvCache, n: usize) -> Result<(), VulkanError> {
        let c = &dec.config;
        let (first, ty) = (cache.len, cache.ty);
        let rb = ty.row_size(c.head_dim).expect("checked at creation");
        let fits = |m: &Mirror| m.ty == ty && m.capacity >= first + n && m.k.first().is_none_or(|b| b.same_device(g));
        if !cache.device.0.as_ref().is_some_and(fits) {
            // Room for twice what is needed (up to the context), so a conversation grows it rarely.
            let capacity = ((first + n) * 2).max(256).min(c.context_length.max(first + n));
            let bytes = (c.kv_heads * capacity * rb) as u64;
            let mut k = Vec::with_capacity(c.layers);
            let mut v = Vec::with_capacity(c.layers);
            for l in 0..c.layers {
                k.push(Buffer::new(g, bytes, MemoryKind::Device, &format!("KV cache keys, layer {l}"))?);
                v.push(Buffer::new(g, bytes, MemoryKind::Device, &format!("KV cache values, layer {l}"))?);
            }
            cache.device.0 = Some(Mirror { k, v, capacity, ty, synced: 0 });
        }
        let m = cache.device.0.as_mut().expect("made above");
        if m.synced < first {
            // The host's rows the device lacks, one upload per layer and kind (each head's rows are at their
            // place in a staging copy of the whole range).
            let (s, cap) = (m.synced, m.capacity);
            // Every head's rows 0..first at their places; the span written runs from head 0's first lagging
            // row to the last head's last row, so it rewrites the synced rows of the later heads with their
            // own values and the unused rows past `first` with whatever the staging holds.
            let mut staged = vec![0u8; c.kv_heads * cap * rb];
            for l in 0..c.layers {
                for (dst, heads) in [(&m.k[l], &cache.k[l]), (&m.v[l], &cache.v[l])] {
                    for (g_, rows) in heads.iter().enumerate() {
                        let at = g_ * cap * rb;
                        staged[at..at + first * rb].copy_from_slice(&rows[..first * rb]);
                    }
                    let (lo, hi) = (s * rb, ((c.kv_heads - 1) * cap + first) * rb);
                    dst.write(lo as u64, &staged[lo..hi])?;
                }
            }
        }
        m.synced = first;
        Ok(())
    }

    /// One forward pass of `x: [n, hidden]` through every layer (and the head when the device holds it),
    /// appending to `cache`: the logits, or the final hidden rows (`[m, hidden]`, for the host's head) when
    /// the head stays on the host. `Ok(None)`: a cache type the program does not read (Q8_0).
    pub(super) fn forward(
        &self,
        dec: &Decoder<'_>,
        dev: &DeviceLinear,
        x: &[f32],
        cache: &mut KvCache,
        logits: Logits,
    ) -> Result<Option<Vec<f32>>, VulkanError> {
        let c = &dec.config;
        if !matches!(cache.ty, GgmlType::F32 | GgmlType::F16) {
            return Ok(None);
        }
        let f16 = cache.ty == GgmlType::F16;
        let g = dev.gpu();
        let (hd, h, ff) = (c.head_dim, c.hidden, c.ffn);
        let (qd, kvd) = (c.heads * hd, c.kv_heads * hd);
        let n = x.len() / h;
        let first = cache.len;
        let m = if logits == Logits::Last { 1 } else { n };
        self.sync(dec, g, cache, n)?;
        let mirror = cache.device.0.as_ref().expect("synced");
        let cap = mirror.capacity;
        // The largest indices the shaders compute (in their u32): the KV cache's values and the scores.
        u32_of(c.kv_heads * cap * hd, "KV cache values")?;
        u32_of(c.heads * n * (first + n), "attention scores")?;
        let rb = cache.ty.row_size(hd).expect("checked at creation");

        let mut guard =
            self.activations.lock().map_err(|_| VulkanError::Usage("the decoder lock was poisoned".into()))?;
        if guard.as_ref().is_none_or(|a| a.rows < n || a.positions < first + n || a.logit_rows < m) {
            let rows = n.next_power_of_two().max(guard.as_ref().map_or(1, |a| a.rows));
            let positions = (first + n).next_power_of_two().max(guard.as_ref().map_or(1, |a| a.positions));
            let logit_rows = m.next_power_of_two().max(guard.as_ref().map_or(1, |a| a.logit_rows));
            *guard = None;
            let f = |len: usize, kind, what: &str| Buffer::new(g, (len * 4) as u64, kind, what);
            let widest = h.max(qd).max(ff);
            *guard = Some(Activations {
                rows,
                positions,
                x: f(rows * h, MemoryKind::Host, "decoder residual stream")?,
                h: f(rows * h, MemoryKind::Device, "attn_norm / ffn_norm")?,
                q: f(rows * qd, MemoryKind::Device, "Qcur")?,
                k: f(rows * kvd, MemoryKind::Device, "Kcur")?,
                v: f(rows * kvd, MemoryKind::Device, "Vcur")?,
                attn: f(rows * qd, MemoryKind::Device, "kqv_out")?,
                o: f(rows * h, MemoryKind::Device, "attn_out / ffn_out")?,
                gate: f(rows * ff, MemoryKind::Device, "ffn_gate")?,
                up: f(rows * ff, MemoryKind::Device, "ffn_up")?,
                quantizer: InputQuantizer::new(dev, rows * widest)?,
                scores: f(c.heads * rows * positions, MemoryKind::Device, "attention scores")?,
                cos: f(rows * hd / 2, MemoryKind::Host, "rope cos")?,
                sin: f(rows * hd / 2, MemoryKind::Host, "rope sin")?,
                head_in: f(rows * h, MemoryKind::Device, "output rows")?,
                head_norm: f(rows * h, MemoryKind::Device, "result_norm")?,
                logits: f(logit_rows * if self.head { c.vocab } else { h }, MemoryKind::Host, "result_output")?,
                logit_rows,
                // Rows of f32 at most (an f16 cache's take half).
                readback: f(c.layers * 2 * c.kv_heads * rows * hd, MemoryKind::Host, "new KV rows")?,
            });
        }
        let a = guard.as_ref().expect("allocated above");
        a.x.write_f32(x)?;
        let (cos, sin) = dec.rope_tables(first, n);
        a.cos.write_f32(&cos)?;
        a.sin.write_f32(&sin)?;

        let k = &self.kernels;
        let (n32, h32, qd32, ff32) =
            (u32_of(n, "tokens")?, u32_of(h, "width")?, u32_of(qd, "q width")?, u32_of(ff, "ffn")?);
        let (hd32, heads32, kv32) =
            (u32_of(hd, "head_dim")?, u32_of(c.heads, "heads")?, u32_of(c.kv_heads, "kv heads")?);
        let mut batch = g.batch()?;
        let linear = |batch: &mut Batch, input: &Buffer, rows: usize, width: usize, ws: &[(&Matrix<'_>, &Buffer)]| {
            a.quantizer.linear(dev, batch, input, rows, width, ws)
        };
        let shape = AttentionShape {
            nq: n32,
            nk: u32_of(first + n, "positions")?,
            heads: heads32,
            kv_heads: kv32,
            d: hd32,
            causal: Some(u32_of(first, "position")?),
            kv_f16: f16,
        };
        let cache_rows = |buffer| Strided { buffer, offset: 0, stride: hd32, head_stride: (cap * hd) as u32 };
        for (l, (layer, v)) in dec.layers.iter().zip(&self.layers).enumerate() {
            let Ffn::Dense { gate, up, down } = &layer.ffn else {
                return Err(VulkanError::Usage("routed experts in a device decoder".into()));
            };
            shaders::rms_norm(&mut batch, &k.rms_norm, &a.x, &v.attn_norm, &a.h, n32, h32, c.eps)?;
            linear(&mut batch, &a.h, n, h, &[(&layer.q, &a.q), (&layer.k, &a.k), (&layer.v, &a.v)])?;
            shaders::rms_norm(&mut batch, &k.rms_norm, &a.q, &v.q_norm, &a.q, n32 * heads32, hd32, c.eps)?;
            shaders::rms_norm(&mut batch, &k.rms_norm, &a.k, &v.k_norm, &a.k, n32 * kv32, hd32, c.eps)?;
            shaders::rope_rows(&mut batch, &k.rope, &a.q, &a.cos, &a.sin, n32, heads32, hd32)?;
            shaders::rope_rows(&mut batch, &k.rope, &a.k, &a.cos, &a.sin, n32, kv32, hd32)?;
            let (cap32, first32) = (u32_of(cap, "capacity")?, u32_of(first, "position")?);
            shaders::kv_store(&mut batch, &k.kv_store, &a.k, &mirror.k[l], n32, kv32, hd32, cap32, first32, f16)?;
            shaders::kv_store(&mut batch, &k.kv_store, &a.v, &mirror.v[l], n32, kv32, hd32, cap32, first32, f16)?;
            let q_rows = Strided { buffer: &a.q, offset: 0, stride: qd32, head_stride: hd32 };
            let (keys, values) = (cache_rows(&mirror.k[l]), cache_rows(&mirror.v[l]));
            shaders::attention(&mut batch, &k.attention, &shape, q_rows, keys, values, &a.scores, &a.attn)?;
            linear(&mut batch, &a.attn, n, qd, &[(&layer.o, &a.o)])?;
            shaders::add(&mut batch, &k.add, &a.x, &a.o, &a.x, n32 * h32)?;
            shaders::rms_norm(&mut batch, &k.rms_norm, &a.x, &v.ffn_norm, &a.h, n32, h32, c.eps)?;
            linear(&mut batch, &a.h, n, h, &[(gate, &a.gate), (up, &a.up)])?;
            shaders::silu_mul(&mut batch, &k.silu_mul, &a.gate, &a.up, n32 * ff32)?;
            linear(&mut batch, &a.gate, n, ff, &[(down, &a.o)])?;
            shaders::add(&mut batch, &k.add, &a.x, &a.o, &a.x, n32 * h32)?;
            // This layer's new rows, per kind and head, for the host cache.
            for (kind, cache_buf) in [&mirror.k[l], &mirror.v[l]].into_iter().enumerate() {
                for g_ in 0..c.kv_heads {
                    let src = ((g_ * cap + first) * rb) as u64;
                    let dst = ((((l * 2 + kind) * c.kv_heads + g_) * n) * rb) as u64;
                    batch.copy(cache_buf, src, &a.readback, dst, (n * rb) as u64)?;
                }
            }
        }
        // The rows the head reads: the last, or all.
        let m32 = u32_of(m, "output rows")?;
        batch.copy(&a.x, ((n - m) * h * 4) as u64, &a.head_in, 0, (m * h * 4) as u64)?;
        if self.head {
            shaders::rms_norm(&mut batch, &k.rms_norm, &a.head_in, &self.output_norm, &a.head_norm, m32, h32, c.eps)?;
            linear(&mut batch, &a.head_norm, m, h, &[(&dec.output, &a.logits)])?;
        } else {
            batch.copy(&a.head_in, 0, &a.logits, 0, (m * h * 4) as u64)?;
        }
        batch.run("the decoder")?;

        let width = if self.head { c.vocab } else { h };
        let out = a.logits.read_f32(m * width)?;
        let mut rows = vec![0u8; c.layers * 2 * c.kv_heads * n * rb];
        a.readback.read(0, &mut rows)?;
        // Only now, with everything read, does the host cache change.
        let per_head = n * rb;
        for l in 0..c.layers {
            for (kind, store) in [&mut cache.k[l], &mut cache.v[l]].into_iter().enumerate() {
                for (g_, head) in store.iter_mut().enumerate() {
                    let at = ((l * 2 + kind) * c.kv_heads + g_) * per_head;
                    head.extend_from_slice(&rows[at..at + per_head]);
                }
            }
        }
        cache.len += n;
        if let Some(m) = &mut cache.device.0 {
            m.synced = cache.len;
        }
        Ok(Some(out))
    }
}
