//! A safetensors checkpoint as a tensor source for the streaming writer.

use std::borrow::Cow;

use quantize::{SourceError, TensorSource};
use runtime::GgmlType;

use crate::hf::checkpoint::{widen_to_f32, Checkpoint, Dtype};

pub struct CheckpointSource<'a>(pub &'a Checkpoint);

impl CheckpointSource<'_> {
    /// Byte range of rows `[row0, row0 + n)`, rows being runs of the innermost dimension.
    fn rows(&self, name: &str, row0: u64, n: u64) -> Result<(Dtype, &[u8], usize, usize), SourceError> {
        let meta = self.0.get(name).ok_or_else(|| format!("tensor '{name}' is not in the checkpoint"))?;
        let row_len = *meta.shape.last().unwrap_or(&1);
        let n_rows = meta.n_elements() / row_len.max(1);
        if row0 + n > n_rows as u64 {
            return Err(format!("rows {row0}..{} of {n_rows}", row0 + n).into());
        }
        let (dtype, bytes) = self.0.raw(name)?;
        let row_bytes = row_len * dtype.size_in_bytes();
        Ok((dtype, bytes, row0 as usize * row_bytes, n as usize * row_bytes))
    }
}

pub fn ggml_type_of(dtype: Dtype) -> GgmlType {
    match dtype {
        Dtype::BF16 => GgmlType::BF16,
        Dtype::F16 => GgmlType::F16,
        Dtype::F32 => GgmlType::F32,
    }
}

impl TensorSource for CheckpointSource<'_> {
    fn stored_type(&self, name: &str) -> Result<Option<GgmlType>, SourceError> {
        let meta = self.0.get(name).ok_or_else(|| format!("tensor '{name}' is not in the checkpoint"))?;
        Ok(Some(ggml_type_of(meta.dtype)))
    }

    fn raw_rows(&self, name: &str, row0: u64, n: u64) -> Result<Cow<'_, [u8]>, SourceError> {
        let (_, bytes, start, len) = self.rows(name, row0, n)?;
        Ok(Cow::Borrowed(&bytes[start..start + len]))
    }

    fn rows_f32(&self, name: &str, row0: u64, n: u64, out: &mut Vec<f32>) -> Result<(), SourceError> {
        let (dtype, bytes, start, len) = self.rows(name, row0, n)?;
        out.resize(len / dtype.size_in_bytes(), 0.0);
        widen_to_f32(dtype, &bytes[start..start + len], out);
        Ok(())
    }

    fn release(&self, name: &str, row0: u64, n: u64) {
        if let Ok((_, _, start, len)) = self.rows(name, row0, n) {
            self.0.release(name, start, len);
        }
    }
}
