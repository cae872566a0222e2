use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use convert::{ConvertOptions, FileSummary};
use quantize::Mix;
use runtime::GgmlType;

use super::{cancel_flag, element_progress};

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Hugging Face checkpoint folder (config.json, model*.safetensors, tokenizer.json, ...).
    pub hf_dir: PathBuf,
    /// Language-model output file [default: <folder>-<type>.gguf in the current directory].
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Vision tower + projector output file [default: mmproj-<folder>-<vision type>.gguf next to the model].
    #[arg(long)]
    pub mmproj: Option<PathBuf>,
    /// Type mix of the language model: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, q4_k_m,
    /// q5_k_s, q5_k_m, q6_k.
    #[arg(long = "type", default_value = "f16")]
    pub ty: Mix,
    /// Type of vision linear weights [default: the float type of float mixes, q8_0 otherwise].
    #[arg(long)]
    pub vision_type: Option<GgmlType>,
    /// general.name written into both files [default: the folder name].
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(a: ConvertArgs) -> Result<()> {
    if !a.hf_dir.is_dir() {
        bail!("{}: not a checkpoint folder", a.hf_dir.display());
    }
    if let Some(v) = a.vision_type {
        if !v.is_supported_block_format() {
            bail!("--vision-type {v}: not a type this build can write");
        }
    }
    let out_dir = a
        .output
        .as_ref()
        .and_then(|o| o.parent().map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let mut opts = ConvertOptions::defaults(&a.hf_dir, &out_dir, a.ty, a.vision_type);
    if let Some(o) = a.output {
        opts.lm_out = o;
    }
    if let Some(m) = a.mmproj {
        opts.mmproj_out = m;
    }
    opts.name = a.name;
    opts.cancel = Some(cancel_flag());

    let bar = element_progress("converting");
    let summary =
        convert::convert(&a.hf_dir, &opts, &bar).with_context(|| format!("converting {}", a.hf_dir.display()))?;
    bar.finish_and_clear();
    print_file("language model", &summary.lm);
    print_file("mmproj", &summary.mmproj);
    if summary.tied_output {
        println!("output: tied to token_embd (lm_head absent or bit-identical to embed_tokens)");
    } else {
        println!("output: separate output.weight (lm_head differs from embed_tokens)");
    }
    println!("time: {:.1} s", summary.elapsed.as_secs_f64());
    Ok(())
}

pub fn print_file(label: &str, f: &FileSummary) {
    println!("{label}: {f}");
}
