//! `sail-edge trace`: every stage of the pipeline as NumPy files, laid out like the goldens, so the
//! runtime can be diffed against the reference stage by stage.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use clap::Args;
use npyz::WriterBuilder;
use runtime::engine::AskOptions;
use runtime::model::decoder::Logits;

use super::infer::{report_expert_stats, InputArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct TraceArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Also greedily generate this many tokens and write `gen_ids`.
    #[arg(short = 'n', long = "n-predict")]
    pub n: Option<usize>,
    /// Also write decoder layer N's named intermediates over the prompt, as llama.cpp names them:
    /// `attn_norm-N`, `Qcur-N`, `Kcur-N`, `Vcur-N`, `kqv_out-N`, `attn_out-N`, `ffn_inp-N`, `ffn_norm-N`,
    /// `ffn_out-N`, `l_out-N` (each `[prompt tokens, width]`).
    #[arg(long, value_name = "N")]
    pub layer: Option<usize>,
}

/// Write one `.npy` through a temporary file renamed into place.
fn write_npy<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    dir: &Path,
    name: &str,
    shape: &[u64],
    data: &[T],
) -> Result<()> {
    let path = dir.join(format!("{name}.npy"));
    let tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing {}", path.display()))?;
    {
        let mut w = npyz::WriteOptions::<T>::new()
            .default_dtype()
            .shape(shape)
            .writer(std::io::BufWriter::new(tmp.as_file()))
            .begin_nd()
            .with_context(|| format!("writing {}", path.display()))?;
        w.extend(data.iter().copied()).with_context(|| format!("writing {}", path.display()))?;
        w.finish().with_context(|| format!("writing {}", path.display()))?;
    }
    tmp.persist(&path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn run(a: TraceArgs, verbose: u8) -> Result<()> {
    if a.out.exists() && !a.out.is_dir() {
        bail!("{}: exists and is not a folder", a.out.display());
    }
    fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let engine = a.model.open_engine(a.input.max_tiles)?;
    let vlm = engine.vlm();
    let layers = vlm.decoder.config.layers;
    if let Some(l) = a.layer.filter(|&l| l >= layers) {
        bail!("--layer {l}: the language model has {layers} layers (0 to {})", layers - 1);
    }
    let mut session = engine.session();
    let question = a.input.load_into(&mut session)?;

    // The vision stages of the session's pending images, tile by tile as it will take them (their
    // embeddings go into the engine's feature cache, so the session does not encode them again).
    let (mut pixels, mut vit, mut mlp1, mut counts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for tiles in session.pending_image_tiles() {
        let (v, m) = engine.encode_tiles_traced(tiles)?;
        pixels.extend_from_slice(&tiles.pixel_values);
        vit.extend(v);
        mlp1.extend(m);
        counts.push(tiles.num_tiles);
    }
    // Greedy, no stop token: the goldens' `gen_ids` recipe.
    let options = AskOptions { max_tokens: a.n.unwrap_or(0), ignore_end_of_turn: true, ..AskOptions::default() };
    let mut answer = session.ask(&question, &options)?;
    let ids = answer.prompt().to_vec();
    let logits = answer.logits().to_vec();
    for piece in answer.by_ref() {
        piece?;
    }
    let gen: Vec<i64> = answer.ids().iter().map(|&i| i as i64).collect();
    drop(answer);

    let out = &a.out;
    let n_tiles: usize = counts.iter().sum();
    if let Some(v) = &vlm.vision {
        let side = v.encoder.config.image_size as u64;
        let t = n_tiles as u64;
        if t > 0 {
            write_npy(out, "pixel_values", &[t, 3, side, side], &pixels)?;
            write_npy(out, "vit_out", &[t, v.encoder.config.tokens() as u64, v.encoder.config.width as u64], &vit)?;
            write_npy(out, "mlp1_out", &[t, v.tokens_per_tile as u64, vlm.decoder.config.hidden as u64], &mlp1)?;
        }
    }
    let ids64: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    write_npy(out, "input_ids", &[ids64.len() as u64], &ids64)?;
    write_npy(out, "logits_last", &[logits.len() as u64], &logits)?;
    let num_tiles: Vec<i64> = counts.iter().map(|&c| c as i64).collect();
    write_npy(out, "num_tiles", &[num_tiles.len() as u64], &num_tiles)?;
    if let Some(n) = a.n {
        write_npy(out, "gen_ids", &[n as u64], &gen)?;
    }
    if let Some(layer) = a.layer {
        // The prompt again, in one batch, listening to the layer's intermediates.
        let x = vlm.input_embeddings(&ids, &mlp1)?;
        let taps: Mutex<Vec<(String, Vec<f32>)>> = Mutex::new(Vec::new());
        engine.install(|vlm| -> Result<()> {
            let mut cache = vlm.decoder.new_cache();
            vlm.decoder.forward_tapped(x, &mut cache, Logits::Last, &|name, l, values| {
                if l == layer {
                    taps.lock().unwrap_or_else(|p| p.into_inner()).push((format!("{name}-{l}"), values.to_vec()));
                }
            })?;
            Ok(())
        })?;
        for (name, values) in taps.into_inner().unwrap_or_else(|p| p.into_inner()) {
            let rows = ids.len() as u64;
            write_npy(out, &name, &[rows, values.len() as u64 / rows], &values)?;
        }
    }
    eprintln!("wrote {} ({} tiles, {} prompt tokens)", out.display(), n_tiles, ids.len());
    report_expert_stats(vlm, verbose);
    Ok(())
}
