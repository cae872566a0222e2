use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use quantize::{Mix, QuantizeOptions};
use runtime::GgmlType;

use super::{cancel_flag, element_progress, human_bytes};

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Input GGUF (language model or mmproj).
    pub input: PathBuf,
    /// Output GGUF (written to a temporary file and renamed into place).
    pub output: PathBuf,
    /// The recommended 4-bit mix: q4_k_m (Q4_K with Q6_K on attention V, FFN down of the sensitive layers
    /// and the output).
    #[arg(long, conflicts_with_all = ["q8", "ty"])]
    pub q4: bool,
    /// 8-bit: q8_0 everywhere.
    #[arg(long, conflicts_with_all = ["q4", "ty"])]
    pub q8: bool,
    /// Any mix: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k.
    #[arg(long = "type")]
    pub ty: Option<Mix>,
    /// Type of vision linear weights when the input is an mmproj file [default: q8_0 for quantized mixes].
    #[arg(long)]
    pub vision_type: Option<GgmlType>,
    /// Allow re-quantizing tensors that are already quantized.
    #[arg(long)]
    pub allow_requantize: bool,
}

pub fn run(a: QuantizeArgs) -> Result<()> {
    let mix = match (a.q4, a.q8, a.ty) {
        (true, _, _) => Mix::Q4KM,
        (_, true, _) => Mix::Q8_0,
        (_, _, Some(m)) => m,
        _ => bail!("choose a target: --q4, --q8 or --type <mix>"),
    };
    if let Some(v) = a.vision_type {
        if !v.is_supported_block_format() {
            bail!("--vision-type {v}: not a type this build can write");
        }
    }
    let mut opts = QuantizeOptions::new(mix);
    opts.vision_type = a.vision_type;
    opts.allow_requantize = a.allow_requantize;
    opts.cancel = Some(cancel_flag());
    let bar = element_progress("quantizing");
    let s = quantize::quantize_file(&a.input, &a.output, &opts, &bar)
        .with_context(|| format!("quantizing {} to {mix}", a.input.display()))?;
    bar.finish_and_clear();
    println!(
        "{}: {} tensors, {} → {} ({:.2} bits/weight), {:.1} s",
        a.output.display(),
        s.tensors,
        human_bytes(s.bytes_in),
        human_bytes(s.bytes_out),
        s.bytes_out as f64 * 8.0 / s.elements.max(1) as f64,
        s.elapsed.as_secs_f64()
    );
    Ok(())
}
