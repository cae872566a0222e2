//! Generate a synthetic full-size SAIL-VL2 checkpoint (real names, shapes and config files, random weights)
//! for measuring the converter at real scale.
//!
//! ```text
//! cargo run --release -p convert --example synth -- --preset 2b --out /work/synth/sailvl2-2b
//! cargo run --release -p convert --example synth -- --preset a3b --layers 2 --format gguf --type q4_0 --out DIR
//! ```
//!
//! `--format safetensors` (default for 2b/8b) writes a Hugging Face folder like the released repo;
//! `--format gguf` (default for a3b, whose BF16 folder would be 61 GB) writes the GGUF pair the converter
//! would make from that folder, directly. See `convert::synth`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use convert::synth::{self, Preset, SynthSpec, SAILVL2_2B_TOTAL_SIZE};
use convert::ConvertOptions;
use indicatif::{ProgressBar, ProgressStyle};
use quantize::Mix;
use runtime::GgmlType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Hugging Face folder: config.json, sharded BF16 safetensors + index, tokenizer files.
    Safetensors,
    /// The converter's GGUF pair (language model + mmproj), written directly.
    Gguf,
}

#[derive(Parser, Debug)]
#[command(about = "Generate a synthetic full-size SAIL-VL2 checkpoint with deterministic random weights")]
struct Args {
    /// Model size: 2b, 8b, a3b (also tiny, tiny-moe: the test fixtures' dims).
    #[arg(long)]
    preset: Preset,
    /// Output folder (created if missing). For gguf, the files go inside it, named like the converter's
    /// defaults after the folder name.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder to copy (safetensors) or read (gguf) the tokenizer files from
    /// [default: <workspace>/../shared/fixtures/sailvl2-tiny].
    #[arg(long)]
    tokenizer_from: Option<PathBuf>,
    /// Override the number of LLM layers (smaller tests at real width).
    #[arg(long)]
    layers: Option<usize>,
    /// Override the number of vision blocks.
    #[arg(long)]
    vision_layers: Option<usize>,
    /// Output format [default: gguf for a3b, safetensors otherwise].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// GGUF type mix (gguf format only).
    #[arg(long = "type", default_value = "q4_k_m")]
    ty: Mix,
    /// Type of vision linear weights (gguf format only) [default: as the converter].
    #[arg(long)]
    vision_type: Option<GgmlType>,
    /// Largest safetensors shard in bytes, for models without a fixed layout (8b, a3b).
    #[arg(long, default_value_t = synth::DEFAULT_SHARD_BYTES)]
    shard_bytes: u64,
}

fn progress(len: u64, bytes: bool) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let counts = if bytes { "{bytes}/{total_bytes} {bytes_per_sec}" } else { "{human_pos}/{human_len}" };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "[{{elapsed_precise}}] {{wide_bar}} {{percent:>3}}% {counts} eta {{eta}}"
        ))
        .expect("static template")
        .progress_chars("=> "),
    );
    bar
}

fn gb(b: u64) -> String {
    format!("{:.3} GB", b as f64 / 1e9)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mut spec = SynthSpec::preset(a.preset, a.seed);
    if let Some(n) = a.layers {
        if n == 0 {
            bail!("--layers must be at least 1");
        }
        spec.layers = n;
    }
    if let Some(n) = a.vision_layers {
        if n == 0 {
            bail!("--vision-layers must be at least 1");
        }
        spec.vision_layers = n;
    }
    spec.shard_bytes = a.shard_bytes;
    let format = a.format.unwrap_or(if a.preset == Preset::A3B { Format::Gguf } else { Format::Safetensors });
    let tokenizer_dir = a
        .tokenizer_from
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/sailvl2-tiny"));
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;

    let tensors = spec.tensors();
    let params: u64 = tensors.iter().map(|t| t.n_elements()).sum();
    let bf16_bytes: u64 = tensors.iter().map(|t| t.bytes()).sum();
    println!(
        "preset {} (seed {}): vision {} blocks, LLM {} layers{}; {} tensors, {:.3} G params, {} as BF16",
        spec.preset,
        spec.seed,
        spec.vision_layers,
        spec.layers,
        spec.moe.map(|m| format!(" × {} experts", m.num_experts)).unwrap_or_default(),
        tensors.len(),
        params as f64 / 1e9,
        gb(bf16_bytes),
    );
    drop(tensors);

    match format {
        Format::Safetensors => {
            let bar = progress(0, true);
            let s = synth::write_safetensors(&spec, &a.out, &tokenizer_dir, &bar)
                .with_context(|| format!("writing {}", a.out.display()))?;
            bar.finish_and_clear();
            for (name, n, bytes) in &s.shards {
                println!("  {name}: {n} tensors, {bytes} bytes");
            }
            println!(
                "wrote {}: {} tensors, {} params, metadata.total_size {} bytes, {} on disk, {:.1} s ({:.0} MB/s)",
                s.dir.display(),
                s.tensors,
                s.params,
                s.total_size,
                gb(s.file_bytes),
                s.elapsed.as_secs_f64(),
                s.file_bytes as f64 / 1e6 / s.elapsed.as_secs_f64().max(1e-9),
            );
            if a.preset == Preset::B2 && a.layers.is_none() && a.vision_layers.is_none() {
                if s.total_size != SAILVL2_2B_TOTAL_SIZE {
                    bail!("total_size {} differs from the released 2B's {SAILVL2_2B_TOTAL_SIZE}", s.total_size);
                }
                println!("total_size matches the released SAIL-VL2-2B ({SAILVL2_2B_TOTAL_SIZE} bytes)");
            }
        }
        Format::Gguf => {
            let opts = ConvertOptions::defaults(&a.out, &a.out, a.ty, a.vision_type);
            let bar = progress(0, false);
            let s = synth::write_gguf(&spec, &tokenizer_dir, &opts, &bar).context("writing the GGUF pair")?;
            bar.finish_and_clear();
            for (label, f) in [("language model", &s.lm), ("mmproj", &s.mmproj)] {
                println!("{label}: {f}");
            }
            println!(
                "output: {}; {:.3} G source params; {:.1} s",
                if s.tied_output { "tied to token_embd" } else { "separate output.weight" },
                s.source_params as f64 / 1e9,
                s.elapsed.as_secs_f64()
            );
        }
    }
    Ok(())
}
