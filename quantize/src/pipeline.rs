//! Streaming tensor writer shared by `convert` and `quantize`: each output tensor is produced in bounded
//! row chunks (read → f32 → target type → file), so memory stays flat whatever the model size.

use std::borrow::Cow;

use indicatif::ProgressBar;
use runtime::gguf::{GgufWriter, TensorSpec};
use runtime::quant;
use runtime::GgmlType;

use crate::Error;

/// Error type of tensor sources (safetensors shards, GGUF files, generators).
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Where input tensors come from. Rows are `ne[0]`-long runs, numbered over all higher dimensions.
pub trait TensorSource: Sync {
    /// The ggml type the tensor is stored in, when it has one (lets equal types be copied byte for byte).
    fn stored_type(&self, name: &str) -> Result<Option<GgmlType>, SourceError>;
    /// Raw bytes of rows `[row0, row0 + n)`; only called when `stored_type` equals the target type.
    fn raw_rows(&self, name: &str, row0: u64, n: u64) -> Result<Cow<'_, [u8]>, SourceError>;
    /// Values of rows `[row0, row0 + n)` as f32, written into `out` (resized by the callee).
    fn rows_f32(&self, name: &str, row0: u64, n: u64, out: &mut Vec<f32>) -> Result<(), SourceError>;
    /// The rows will not be read again: a mapped source may drop their pages.
    fn release(&self, _name: &str, _row0: u64, _n: u64) {}
}

/// One source tensor contributing `n_rows` rows to an output tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub source: String,
    pub n_rows: u64,
}

/// An output tensor and the source tensors whose rows, concatenated, make it (several for stacked experts).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTensor {
    pub spec: TensorSpec,
    pub parts: Vec<Part>,
}

impl PlannedTensor {
    /// An output made from one source tensor of the same shape.
    pub fn single(spec: TensorSpec, source: impl Into<String>) -> PlannedTensor {
        let n_rows = spec.dims[1..].iter().product();
        PlannedTensor { spec, parts: vec![Part { source: source.into(), n_rows }] }
    }
}

/// Elements converted per step: 8 Mi f32 = 32 MiB of working memory per chunk.
const CHUNK_ELEMENTS: u64 = 8 << 20;

/// Write every planned tensor, in order, into `writer`; progress advances by elements.
pub fn write_tensors(
    writer: &mut GgufWriter,
    plan: &[PlannedTensor],
    source: &dyn TensorSource,
    progress: &ProgressBar,
) -> Result<(), Error> {
    let mut f32_buf: Vec<f32> = Vec::new();
    let mut out_buf: Vec<u8> = Vec::new();
    for t in plan {
        let spec = &t.spec;
        let row_len = spec.dims[0];
        let target = spec.ty;
        let rows_per_chunk = (CHUNK_ELEMENTS / row_len.max(1)).max(1);
        let row_bytes = target.row_size(row_len as usize).ok_or_else(|| Error::Plan {
            tensor: spec.name.clone(),
            message: format!("rows of {row_len} do not fit {target} blocks"),
        })?;
        let expected_rows: u64 = spec.dims[1..].iter().product();
        let planned_rows: u64 = t.parts.iter().map(|p| p.n_rows).sum();
        if expected_rows != planned_rows {
            return Err(Error::Plan {
                tensor: spec.name.clone(),
                message: format!("{planned_rows} source rows for {expected_rows} output rows"),
            });
        }
        for part in &t.parts {
            let src_err = |source: SourceError| Error::Source { tensor: part.source.clone(), source };
            let copy = source.stored_type(&part.source).map_err(src_err)? == Some(target);
            let mut row0 = 0;
            while row0 < part.n_rows {
                let n = rows_per_chunk.min(part.n_rows - row0);
                if copy {
                    let raw = source.raw_rows(&part.source, row0, n).map_err(src_err)?;
                    if raw.len() as u64 != n * row_bytes as u64 {
                        return Err(Error::Source {
                            tensor: part.source.clone(),
                            source: format!("{} bytes for {n} rows of {row_bytes}", raw.len()).into(),
                        });
                    }
                    writer.write(&raw)?;
                } else {
                    source.rows_f32(&part.source, row0, n, &mut f32_buf).map_err(src_err)?;
                    if f32_buf.len() as u64 != n * row_len {
                        return Err(Error::Source {
                            tensor: part.source.clone(),
                            source: format!("{} values for {n} rows of {row_len}", f32_buf.len()).into(),
                        });
                    }
                    out_buf.resize(n as usize * row_bytes, 0);
                    quant::quantize_rows(target, &f32_buf, row_len as usize, &mut out_buf)
                        .map_err(|source| Error::Quant { tensor: spec.name.clone(), source })?;
                    writer.write(&out_buf)?;
                }
                source.release(&part.source, row0, n);
                progress.inc(n * row_len);
                row0 += n;
            }
        }
        if spec.n_elements() == 0 {
            writer.write_tensor(&spec.name, &[])?;
        }
    }
    Ok(())
}
