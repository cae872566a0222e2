//! Qwen3 decoder (spec §7.1): pre-norm blocks with per-head q/k RMSNorm before half-split RoPE, GQA
//! attention over a KV cache, SwiGLU MLP, final norm, tied or separate output projection.

use crate::backend::Linear;
use crate::gguf::names::{self, arch as arch_names, llm, tensor};
use crate::gguf::GgufFile;
use crate::kernels::{self, HeadRows};
use crate::model::experts::{ExpertResidency, ExpertStats, ExpertUsage, LoadOptions};
use crate::model::moe::{MoeBlock, Tracking};
use crate::model::{Meta, ModelError};
use crate::tensor::{matrix, vector, Matrix};
use crate::GgmlType;

#[cfg(feature = "vulkan")]
#[path = "decoder_device.rs"]
mod device;

#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub arch: String,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub eps: f32,
    pub rope_theta: f32,
    pub context_length: usize,
    pub vocab: usize,
}

struct Layer<'a> {
    attn_norm: Vec<f32>,
    q: Matrix<'a>,
    k: Matrix<'a>,
    v: Matrix<'a>,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    o: Matrix<'a>,
    ffn_norm: Vec<f32>,
    ffn: Ffn<'a>,
}

/// The feed-forward half of a layer: one SwiGLU MLP, or a routed mixture of them.
enum Ffn<'a> {
    Dense { gate: Matrix<'a>, up: Matrix<'a>, down: Matrix<'a> },
    Moe(MoeBlock<'a>),
}

/// Keys and values of every past position: per layer and KV head, one `head_dim` row per position, stored
/// as f16 by default (half the memory of f32, like llama.cpp), Q8_0 to halve it again, or f32 for
/// reference-exact runs. Rows are rounded once when appended; attention converts tiles back to f32.
#[derive(Debug, Clone)]
pub struct KvCache {
    ty: GgmlType,
    head_dim: usize,
    /// `[layer][kv_head]` rows, contiguous per head so attention reads whole tiles.
    k: Vec<Vec<Vec<u8>>>,
    v: Vec<Vec<Vec<u8>>>,
    len: usize,
    /// Its copy on a Vulkan device, when the decoder runs there as one program.
    #[cfg(feature = "vulkan")]
    device: device::KvMirror,
}

impl KvCache {
    /// An empty cache; `ty` must be F32, F16 or Q8_0 (Q8_0 needs `head_dim` a multiple of 32).
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, ty: GgmlType) -> Result<KvCache, ModelError> {
        if !kernels::kv_type_supported(ty, head_dim) {
            return Err(ModelError::Input(format!(
                "KV cache type {ty} is not supported for head size {head_dim} (use f32, f16 or q8_0)"
            )));
        }
        let heads = vec![vec![Vec::new(); kv_heads]; layers];
        Ok(KvCache {
            ty,
            head_dim,
            k: heads.clone(),
            v: heads,
            len: 0,
            #[cfg(feature = "vulkan")]
            device: Default::default(),
        })
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The row type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Bytes held by keys and values.
    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).flatten().map(Vec::len).sum()
    }

    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Keep the first `len` positions (a rollback): every layer and head is cut to `len` rows, so the cache
    /// is exactly what it was when it held `len` positions. `len` beyond the current length changes nothing.
    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.len);
        let rb = self.ty.row_size(self.head_dim).expect("checked at creation");
        for h in self.k.iter_mut().chain(self.v.iter_mut()).flatten() {
            h.truncate(len * rb);
        }
        self.len = len;
        #[cfg(feature = "vulkan")]
        self.device.truncate(len);
    }

    /// Bytes one position takes over every layer and KV head (keys and values).
    pub fn bytes_per_position(&self) -> usize {
        let rb = self.ty.row_size(self.head_dim).expect("checked at creation");
        2 * rb * self.k.iter().map(Vec::len).sum::<usize>()
    }

    /// Append `[n, kv_heads, head_dim]` keys and values to layer `l`, rounded to the cache type.
    fn append(&mut self, l: usize, k: &[f32], v: &[f32]) -> Result<(), ModelError> {
        let (d, ty) = (self.head_dim, self.ty);
        let rb = ty.row_size(d).expect("checked at creation");
        for (store, src) in [(&mut self.k[l], k), (&mut self.v[l], v)] {
            let kv_heads = store.len();
            for (j, row) in src.chunks(d).enumerate() {
                let head = &mut store[j % kv_heads];
                let at = head.len();
                head.resize(at + rb, 0);
                crate::quant::quantize(ty, row, &mut head[at..])
                    .map_err(|e| ModelError::Input(format!("KV cache row: {e}")))?;
            }
        }
        Ok(())
    }

    fn heads(rows: &[Vec<u8>], ty: GgmlType) -> Vec<HeadRows<'_>> {
        rows.iter().map(|data| HeadRows { ty, data }).collect()
    }
}

/// A listener for named intermediates: `(name, layer, values)` (see [`Decoder::forward_tapped`]).
pub type Tap<'a> = dyn Fn(&str, usize, &[f32]) + 'a;

/// Which logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position (generation).
    Last,
    /// Every position of the batch (`trace`, parity tests).
    All,
}

pub struct Decoder<'a> {
    pub config: DecoderConfig,
    token_embd: Matrix<'a>,
    layers: Vec<Layer<'a>>,
    output_norm: Vec<f32>,
    output: Matrix<'a>,
    /// `1 / theta^(2i/d)` in f32, as the reference computes it.
    inv_freq: Vec<f32>,
    /// Which experts are in memory (MoE models only).
    residency: Option<ExpertResidency<'a>>,
    /// Row type of new KV caches.
    kv_type: GgmlType,
    /// Where the linear layers run (the CPU unless [`Decoder::set_linear`] says otherwise).
    linear: Linear,
    /// The whole forward as one device program, where the device holds every layer in a form it can feed.
    #[cfg(feature = "vulkan")]
    device: Option<device::DeviceDecoder>,
}

/// `out = down(silu(gate(x)) · up(x))` for `n` rows of `x`.
pub(crate) fn swiglu(
    linear: &Linear,
    x: &[f32],
    n: usize,
    gate: &Matrix<'_>,
    up: &Matrix<'_>,
    down: &Matrix<'_>,
    out: &mut [f32],
) -> Result<(), ModelError> {
    let (mut g, mut u) = (vec![0f32; n * gate.rows], vec![0f32; n * up.rows]);
    linear.matmul_shared(x, n, &[gate, up], &mut [&mut g, &mut u])?;
    kernels::silu_mul(&mut g, &u);
    linear.matmul(&g, n, down, out)?;
    Ok(())
}

impl<'a> Decoder<'a> {
    pub fn load(file: &'a GgufFile) -> Result<Decoder<'a>, ModelError> {
        Decoder::load_with(file, &LoadOptions::default())
    }

    /// Load with options (the expert memory budget and prefetch of MoE models).
    pub fn load_with(file: &'a GgufFile, options: &LoadOptions) -> Result<Decoder<'a>, ModelError> {
        Decoder::load_repacked(file, None, options)
    }

    /// Load with the repack cache of `file` (see [`crate::repack`]): the weights it holds are decoded from
    /// their interleaved copies there.
    pub fn load_repacked(
        file: &'a GgufFile,
        repack: Option<&'a GgufFile>,
        options: &LoadOptions,
    ) -> Result<Decoder<'a>, ModelError> {
        let m = Meta { file };
        let matrix = |name: &str, cols: usize, rows: usize| -> Result<Matrix<'a>, ModelError> {
            Ok(crate::repack::attach(matrix(file, name, cols, rows)?, repack)?)
        };
        let arch = m.str(names::general::ARCHITECTURE)?.to_string();
        if arch != arch_names::QWEN3 && arch != arch_names::QWEN3MOE {
            return Err(ModelError::Unsupported {
                file: file.path().display().to_string(),
                message: format!("architecture '{arch}' (this decoder runs 'qwen3' and 'qwen3moe')"),
            });
        }
        if arch == arch_names::QWEN3MOE {
            // Before anything reads the data: no fault may read ahead into experts (see model::experts).
            file.advise_random_all();
        }
        let a = |k: &str| llm::key(&arch, k);
        let hidden = m.u32(&a(llm::EMBEDDING_LENGTH))? as usize;
        let heads = m.u32(&a(llm::HEAD_COUNT))? as usize;
        let config = DecoderConfig {
            hidden,
            layers: m.u32(&a(llm::BLOCK_COUNT))? as usize,
            heads,
            kv_heads: m.u32(&a(llm::HEAD_COUNT_KV))? as usize,
            head_dim: m.u32_or(&a(llm::KEY_LENGTH), (hidden / heads) as u32)? as usize,
            ffn: m.u32_or(&a(llm::FEED_FORWARD_LENGTH), 0)? as usize,
            eps: m.f32(&a(llm::RMS_NORM_EPS))?,
            rope_theta: m.f32(&a(llm::ROPE_FREQ_BASE))?,
            context_length: m.u32(&a(llm::CONTEXT_LENGTH))? as usize,
            vocab: file.tensor_info(names::tensor::TOKEN_EMBD)?.dims.get(1).copied().unwrap_or(0) as usize,
            arch,
        };
        let c = &config;
        if c.kv_heads == 0 || !c.heads.is_multiple_of(c.kv_heads) || !c.head_dim.is_multiple_of(2) {
            return Err(ModelError::Unsupported {
                file: file.path().display().to_string(),
                message: format!("{} heads / {} kv heads / head_dim {}", c.heads, c.kv_heads, c.head_dim),
            });
        }
        let (h, hd, f) = (c.hidden, c.head_dim, c.ffn);
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let n = |s: &str| tensor::blk(i, s);
            layers.push(Layer {
                attn_norm: vector(file, &n(tensor::ATTN_NORM), h)?,
                q: matrix(&n(tensor::ATTN_Q), h, c.heads * hd)?,
                k: matrix(&n(tensor::ATTN_K), h, c.kv_heads * hd)?,
                v: matrix(&n(tensor::ATTN_V), h, c.kv_heads * hd)?,
                q_norm: vector(file, &n(tensor::ATTN_Q_NORM), hd)?,
                k_norm: vector(file, &n(tensor::ATTN_K_NORM), hd)?,
                o: matrix(&n(tensor::ATTN_OUTPUT), c.heads * hd, h)?,
                ffn_norm: vector(file, &n(tensor::FFN_NORM), h)?,
                ffn: if c.arch == arch_names::QWEN3MOE {
                    Ffn::Moe(MoeBlock::load(file, i, h)?)
                } else {
                    Ffn::Dense {
                        gate: matrix(&n(tensor::FFN_GATE), h, f)?,
                        up: matrix(&n(tensor::FFN_UP), h, f)?,
                        down: matrix(&n(tensor::FFN_DOWN), f, h)?,
                    }
                },
            });
        }
        // Looked up by row from the model; a tied output head reads the cache's repacked copy where there is
        // one (see `repack::eligible`).
        let token_embd = crate::tensor::matrix(file, names::tensor::TOKEN_EMBD, h, c.vocab)?;
        let output = match file.header().tensor(names::tensor::OUTPUT) {
            Some(_) => matrix(names::tensor::OUTPUT, h, c.vocab)?,
            None => crate::repack::attach(token_embd, repack)?,
        };
        let inv_freq = (0..hd / 2).map(|i| 1.0 / c.rope_theta.powf((2 * i) as f32 / hd as f32)).collect();
        let residency = match layers.first().map(|l| &l.ffn) {
            Some(Ffn::Moe(moe)) => Some(ExpertResidency::new(file, c.layers, moe.n_experts, options)?),
            _ => {
                if let Some(budget) = options.max_expert_memory {
                    tracing::warn!(
                        "a memory budget ({budget} bytes) only applies to the experts of MoE models; {} is dense: \
                         all its weights stay mapped",
                        file.path().display()
                    );
                }
                None
            }
        };
        // Fail at load, not at the first token, on a KV type this head size cannot store.
        KvCache::new(0, config.kv_heads, config.head_dim, options.kv_type)?;
        Ok(Decoder {
            residency,
            kv_type: options.kv_type,
            output_norm: vector(file, names::tensor::OUTPUT_NORM, h)?,
            token_embd,
            output,
            layers,
            inv_freq,
            config,
            linear: Linear::cpu(),
            #[cfg(feature = "vulkan")]
            device: None,
        })
    }

    /// Run the linear layers through `linear` (see [`crate::backend`]). Where its device holds every layer
    /// in a form it can feed, each forward pass runs there as one program (see `decoder_device.rs`);
    /// otherwise the returned note says why the layers run one linear layer at a time.
    pub fn set_linear(&mut self, linear: Linear) -> Option<String> {
        self.linear = linear;
        #[cfg(feature = "vulkan")]
        let note = {
            let (program, note) = self.linear.program(|dev| device::DeviceDecoder::build(self, dev));
            self.device = program;
            note
        };
        #[cfg(not(feature = "vulkan"))]
        let note = None;
        note
    }

    /// Whether each forward pass runs on a device as one program (and whether the head does too).
    pub fn whole_on_device(&self) -> Option<bool> {
        #[cfg(feature = "vulkan")]
        if let Some(program) = &self.device {
            return self.linear.on_device().then(|| program.has_head());
        }
        None
    }

    /// RoPE tables for positions first..first + n: `[n, head_dim / 2]` cos and sin of pos · inv_freq, in f32
    /// as the reference computes them.
    fn rope_tables(&self, first: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.config.head_dim / 2;
        let mut cos = vec![0f32; n * half];
        let mut sin = vec![0f32; n * half];
        for i in 0..n {
            for (j, f) in self.inv_freq.iter().enumerate() {
                let angle = (first + i) as f32 * f;
                cos[i * half + j] = angle.cos();
                sin[i * half + j] = angle.sin();
            }
        }
        (cos, sin)
    }

    /// The dense linear weights of each layer (q, k, v, o, and gate, up, down where the FFN is not routed
    /// experts), for placing them on a device.
    pub fn layer_weights(&self) -> Vec<Vec<&Matrix<'a>>> {
        self.layers
            .iter()
            .map(|l| {
                let mut ws = vec![&l.q, &l.k, &l.v, &l.o];
                if let Ffn::Dense { gate, up, down } = &l.ffn {
                    ws.extend([gate, up, down]);
                }
                ws
            })
            .collect()
    }

    /// The output head's weight (the token embedding when they are tied).
    pub fn output_weight(&self) -> &Matrix<'a> {
        &self.output
    }

    /// Whether the feed-forward layers are routed experts.
    pub fn is_moe(&self) -> bool {
        self.residency.is_some()
    }

    /// Expert residency counters (MoE models; `None` for dense ones).
    pub fn expert_stats(&self) -> Option<ExpertStats> {
        self.residency.as_ref().map(ExpertResidency::stats)
    }

    /// Every expert's state (MoE models), by layer then expert.
    pub fn expert_usage(&self) -> Option<Vec<ExpertUsage>> {
        self.residency.as_ref().map(ExpertResidency::usage)
    }

    /// An empty KV cache of the type chosen at load ([`LoadOptions::kv_type`], checked there).
    pub fn new_cache(&self) -> KvCache {
        self.new_cache_of(self.kv_type).expect("the KV type was checked at load")
    }

    /// An empty KV cache with rows of `ty` (f32, f16 or q8_0).
    pub fn new_cache_of(&self, ty: GgmlType) -> Result<KvCache, ModelError> {
        let c = &self.config;
        KvCache::new(c.layers, c.kv_heads, c.head_dim, ty)
    }

    /// Token embeddings `[ids.len(), hidden]`.
    pub fn embed(&self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        let h = self.config.hidden;
        let mut out = vec![0f32; ids.len() * h];
        let mut row = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= self.config.vocab {
                return Err(ModelError::Input(format!(
                    "token id {id} outside the vocabulary of {}",
                    self.config.vocab
                )));
            }
            self.token_embd.rows_f32(id, id + 1, &mut row)?;
            out[i * h..(i + 1) * h].copy_from_slice(&row);
        }
        Ok(out)
    }

    /// Run `x` (`[n, hidden]` input embeddings for the next n positions) through the decoder, appending to
    /// `cache`; returns logits `[1 or n, vocab]`.
    pub fn forward(&self, x: Vec<f32>, cache: &mut KvCache, logits: Logits) -> Result<Vec<f32>, ModelError> {
        self.forward_cancellable(x, cache, logits, &|| false)
    }

    /// [`Decoder::forward`], asking `cancelled` before every layer: when it says yes, or when anything
    /// fails, the cache is cut back to where it was (no layer keeps rows of this batch) and the error is
    /// [`ModelError::Cancelled`] or the failure.
    pub fn forward_cancellable(
        &self,
        x: Vec<f32>,
        cache: &mut KvCache,
        logits: Logits,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<f32>, ModelError> {
        self.forward_undoing(x, cache, logits, cancelled, None)
    }

    /// [`Decoder::forward`] handing every named intermediate to `tap(name, layer, values)` as it is computed
    /// (`[n, width]` row-major, for the n positions of the batch), with llama.cpp's names so the two can be
    /// diffed tensor by tensor: `attn_norm`, `Qcur` / `Kcur` (after q/k norm and RoPE), `Vcur`, `kqv_out`
    /// (attention before its output projection), `attn_out`, `ffn_inp` (the residual after attention),
    /// `ffn_norm`, `ffn_out`, `l_out` (the layer's output). `trace --layer N` writes them.
    pub fn forward_tapped(
        &self,
        x: Vec<f32>,
        cache: &mut KvCache,
        logits: Logits,
        tap: &Tap<'_>,
    ) -> Result<Vec<f32>, ModelError> {
        self.forward_undoing(x, cache, logits, &|| false, Some(tap))
    }

    /// The forward pass, with the cache cut back to where it was if it fails or is cancelled.
    fn forward_undoing(
        &self,
        x: Vec<f32>,
        cache: &mut KvCache,
        logits: Logits,
        cancelled: &dyn Fn() -> bool,
        tap: Option<&Tap<'_>>,
    ) -> Result<Vec<f32>, ModelError> {
        let first = cache.len;
        let out = self.forward_inner(x, cache, logits, cancelled, tap);
        if out.is_err() {
            cache.truncate(first);
        }
        out
    }

    fn forward_inner(
        &self,
        mut x: Vec<f32>,
        cache: &mut KvCache,
        logits: Logits,
        cancelled: &dyn Fn() -> bool,
        tap: Option<&Tap<'_>>,
    ) -> Result<Vec<f32>, ModelError> {
        // Named intermediates (see `forward_tapped`); nothing is copied when no one listens.
        let cb = |name: &str, l: usize, t: &[f32]| {
            if let Some(tap) = tap {
                tap(name, l, t)
            }
        };
        let c = &self.config;
        let (h, hd) = (c.hidden, c.head_dim);
        if x.is_empty() || !x.len().is_multiple_of(h) {
            return Err(ModelError::Input(format!(
                "decoder input of {} values is not a whole number (≥ 1) of {h}-wide rows",
                x.len()
            )));
        }
        let n = x.len() / h;
        let first = cache.len;
        if first + n > c.context_length {
            return Err(ModelError::Input(format!(
                "{} positions exceed the context length {}",
                first + n,
                c.context_length
            )));
        }
        #[cfg(feature = "vulkan")]
        if let (Some(program), None) = (&self.device, tap) {
            if cancelled() {
                return Err(ModelError::Cancelled);
            }
            // On failure the cache is as it was and the CPU takes over (the device is not used again).
            let ran = self.linear.run_program(|dev| program.forward(self, dev, &x, cache, logits));
            if let Some(Some(out)) = ran {
                if program.has_head() {
                    return Ok(out);
                }
                return self.head(&out);
            }
        }
        let half = hd / 2;
        let (cos, sin) = self.rope_tables(first, n);
        let (qd, kvd) = (c.heads * hd, c.kv_heads * hd);
        let mut normed = vec![0f32; n * h];
        let mut q = vec![0f32; n * qd];
        let mut k = vec![0f32; n * kvd];
        let mut v = vec![0f32; n * kvd];
        let mut attn = vec![0f32; n * qd];
        let mut o = vec![0f32; n * h];

        for (l, layer) in self.layers.iter().enumerate() {
            if cancelled() {
                return Err(ModelError::Cancelled);
            }
            kernels::rms_norm(&x, &layer.attn_norm, c.eps, &mut normed);
            cb("attn_norm", l, &normed);
            self.linear.matmul_shared(&normed, n, &[&layer.q, &layer.k, &layer.v], &mut [&mut q, &mut k, &mut v])?;
            kernels::rms_norm_heads(&mut q, &layer.q_norm, c.eps);
            kernels::rms_norm_heads(&mut k, &layer.k_norm, c.eps);
            for i in 0..n {
                let (cs, sn) = (&cos[i * half..(i + 1) * half], &sin[i * half..(i + 1) * half]);
                kernels::rope_half_split(&mut q[i * qd..(i + 1) * qd], hd, cs, sn);
                kernels::rope_half_split(&mut k[i * kvd..(i + 1) * kvd], hd, cs, sn);
            }
            cb("Qcur", l, &q);
            cb("Kcur", l, &k);
            cb("Vcur", l, &v);
            cache.append(l, &k, &v)?;
            let (keys, values) = (KvCache::heads(&cache.k[l], cache.ty), KvCache::heads(&cache.v[l], cache.ty));
            kernels::attention_rows(&q, n, c.heads, hd, &keys, &values, first + n, Some(first), &mut attn);
            cb("kqv_out", l, &attn);
            self.linear.matmul(&attn, n, &layer.o, &mut o)?;
            cb("attn_out", l, &o);
            kernels::add_in_place(&mut x, &o);
            cb("ffn_inp", l, &x);

            kernels::rms_norm(&x, &layer.ffn_norm, c.eps, &mut normed);
            cb("ffn_norm", l, &normed);
            match &layer.ffn {
                Ffn::Dense { gate, up, down } => swiglu(&self.linear, &normed, n, gate, up, down, &mut o)?,
                Ffn::Moe(moe) => {
                    let residency = self.residency.as_ref();
                    // Look-ahead: the next layer's router on this layer's input guesses its experts; their
                    // pages stream in while this layer computes (speculative: see model::experts).
                    let next = match (residency, self.layers.get(l + 1).map(|l| &l.ffn)) {
                        (Some(r), Some(Ffn::Moe(next))) if r.prefetch_enabled() => next.experts_for(&normed, n)?,
                        _ => Vec::new(),
                    };
                    let tracking = residency.map(|residency| Tracking { residency, layer: l, next: &next });
                    moe.forward_tracked(&normed, n, &mut o, tracking)?
                }
            }
            cb("ffn_out", l, &o);
            kernels::add_in_place(&mut x, &o);
            cb("l_out", l, &x);
        }
        cache.len += n;
        let rows = match logits {
            Logits::Last => &x[(n - 1) * h..],
            Logits::All => &x[..],
        };
        self.head(rows)
    }

    /// The output norm and head over the final hidden rows (`[m, hidden]`: the rows `logits` asks for).
    fn head(&self, rows: &[f32]) -> Result<Vec<f32>, ModelError> {
        let c = &self.config;
        let m = rows.len() / c.hidden;
        let mut normed = vec![0f32; rows.len()];
        kernels::rms_norm(rows, &self.output_norm, c.eps, &mut normed);
        let mut out = vec![0f32; m * c.vocab];
        self.linear.matmul(&normed, m, &self.output, &mut out)?;
        Ok(out)
    }
}
