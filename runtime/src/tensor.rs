//! Typed views of weights inside a mapped GGUF file: no copy for any stored type.

use crate::gguf::{GgufError, GgufFile, TensorInfo};
use crate::quant::{self, QuantError};
use crate::GgmlType;

/// What went wrong finding or using a weight.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tensor '{tensor}': shape {found:?}, expected {expected:?}")]
    Shape { tensor: String, expected: Vec<u64>, found: Vec<u64> },
    #[error("tensor '{tensor}': {source}")]
    Quant { tensor: String, source: QuantError },
    #[error("tensor '{tensor}': type {ty} has no CPU kernel in this build")]
    Unsupported { tensor: String, ty: GgmlType },
}

/// A matrix of `rows` rows of `cols` elements (a linear layer's `[out, in]` weight, ggml dims `[in, out]`),
/// borrowed from the map.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    pub name: &'a str,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    row_bytes: usize,
    /// The same rows repacked 8 at a time (Q4_0, Q8_0, Q4_K, Q6_K, from the repack cache; layouts in
    /// [`crate::kernels::interleaved`]). Where present, the kernels read these bytes and not `data`.
    x8: Option<&'a [u8]>,
}

impl<'a> Matrix<'a> {
    /// View a tensor as a matrix whose rows are `cols` long; all higher dims fold into rows.
    pub fn from_info(file: &'a GgufFile, info: &'a TensorInfo) -> Result<Matrix<'a>, WeightError> {
        if !info.ty.is_supported_block_format() {
            return Err(WeightError::Unsupported { tensor: info.name.clone(), ty: info.ty });
        }
        let cols = info.dims[0] as usize;
        let rows = info.n_rows() as usize;
        let row_bytes = info.ty.row_size(cols).expect("validated by the reader");
        Ok(Matrix { name: &info.name, ty: info.ty, rows, cols, data: file.data(info), row_bytes, x8: None })
    }

    /// A matrix over bytes the caller holds (tests, benchmarks, repacked caches); the length must match.
    pub fn from_bytes(
        name: &'a str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Matrix<'a>, WeightError> {
        let row_bytes = ty.row_size(cols).filter(|_| ty.is_supported_block_format());
        match row_bytes {
            Some(rb) if rb.checked_mul(rows) == Some(data.len()) => {
                Ok(Matrix { name, ty, rows, cols, data, row_bytes: rb, x8: None })
            }
            _ => Err(WeightError::Shape {
                tensor: name.to_string(),
                expected: vec![cols as u64, rows as u64],
                found: vec![data.len() as u64],
            }),
        }
    }

    /// The same bytes seen with a different row length (e.g. a conv kernel as `[out, in·kh·kw]`).
    pub fn reshaped(self, cols: usize) -> Result<Matrix<'a>, WeightError> {
        let total = self.rows * self.cols;
        let row_bytes = self.ty.row_size(cols);
        match row_bytes {
            Some(rb) if cols > 0 && total.is_multiple_of(cols) => {
                Ok(Matrix { rows: total / cols, cols, row_bytes: rb, x8: None, ..self })
            }
            _ => Err(WeightError::Shape {
                tensor: self.name.to_string(),
                expected: vec![cols as u64],
                found: vec![self.cols as u64, self.rows as u64],
            }),
        }
    }

    /// Rows `[r0, r1)` as a matrix of their own (one expert of a stacked expert tensor), still in place.
    pub fn slice_rows(&self, r0: usize, r1: usize) -> Matrix<'a> {
        // A group of 8 repacked rows takes the bytes of those 8 rows: whole groups slice at the same offsets.
        let g = crate::kernels::interleaved::X8_ROWS;
        let x8 = match self.x8 {
            Some(p) if r0.is_multiple_of(g) && r1.is_multiple_of(g) => {
                Some(&p[r0 * self.row_bytes..r1 * self.row_bytes])
            }
            _ => None,
        };
        Matrix { rows: r1 - r0, data: self.rows_bytes(r0, r1), x8, ..*self }
    }

    /// Attach the repacked copy of this Q4_0, Q8_0, Q4_K or Q6_K matrix (bytes in the layout of
    /// [`crate::kernels::interleaved`] for its type: whole groups of 8 rows, as many bytes as the rows).
    pub fn with_repacked(self, packed: &'a [u8]) -> Result<Matrix<'a>, WeightError> {
        let g = crate::kernels::interleaved::X8_ROWS;
        let layout = crate::kernels::interleaved::has_x8_layout(self.ty);
        if !layout || !self.rows.is_multiple_of(g) || packed.len() != self.data.len() {
            return Err(WeightError::Shape {
                tensor: format!("{} (repacked {} x8)", self.name, self.ty),
                expected: vec![self.data.len() as u64],
                found: vec![packed.len() as u64],
            });
        }
        Ok(Matrix { x8: Some(packed), ..self })
    }

    /// The repacked rows, if attached (see [`Matrix::with_repacked`]).
    pub fn repacked(&self) -> Option<&'a [u8]> {
        self.x8
    }

    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Raw bytes of rows `[r0, r1)`.
    pub fn rows_bytes(&self, r0: usize, r1: usize) -> &'a [u8] {
        &self.data[r0 * self.row_bytes..r1 * self.row_bytes]
    }

    /// Rows `[r0, r1)` as f32 into `out` (resized).
    pub fn rows_f32(&self, r0: usize, r1: usize, out: &mut Vec<f32>) -> Result<(), WeightError> {
        out.resize((r1 - r0) * self.cols, 0.0);
        quant::dequantize(self.ty, self.rows_bytes(r0, r1), out)
            .map_err(|source| WeightError::Quant { tensor: self.name.to_string(), source })
    }

    /// Check the expected `[cols, rows]` (ggml order) shape.
    pub fn expect(self, cols: usize, rows: usize) -> Result<Matrix<'a>, WeightError> {
        if self.cols != cols || self.rows != rows {
            return Err(WeightError::Shape {
                tensor: self.name.to_string(),
                expected: vec![cols as u64, rows as u64],
                found: vec![self.cols as u64, self.rows as u64],
            });
        }
        Ok(self)
    }
}

/// A vector weight (norm scale, bias), always materialized as f32 (they are tiny).
pub fn vector(file: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>, WeightError> {
    let info = file.tensor_info(name)?;
    if info.n_elements() != len as u64 {
        return Err(WeightError::Shape { tensor: name.into(), expected: vec![len as u64], found: info.dims.clone() });
    }
    let mut out = vec![0.0; len];
    quant::dequantize(info.ty, file.data(info), &mut out)
        .map_err(|source| WeightError::Quant { tensor: name.into(), source })?;
    Ok(out)
}

/// A matrix weight by name with its expected ggml shape `[cols, rows]`.
pub fn matrix<'a>(file: &'a GgufFile, name: &str, cols: usize, rows: usize) -> Result<Matrix<'a>, WeightError> {
    let info = file.tensor_info(name)?;
    Matrix::from_info(file, info)?.expect(cols, rows)
}
