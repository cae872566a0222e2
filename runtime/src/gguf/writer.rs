//! Streaming GGUF writer. The header is written first (all sizes follow from type and shape), then the
//! tensors in declaration order, so a 17 GB model never has to be in memory. Output goes to a temporary
//! file beside the target that is renamed into place only by [`GgufWriter::finish`]; any error, a
//! cancellation or a drop before that removes it, so no partial file is ever left under the target name.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tempfile::NamedTempFile;

use super::{align_up, GgufError, Value, DEFAULT_ALIGNMENT, KEY_ALIGNMENT, MAGIC, MAX_DIMS, MAX_NAME};
use crate::GgmlType;

/// A tensor to be written: name, ggml-order dims (`dims[0]` contiguous) and type.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dims: Vec<u64>, ty: GgmlType) -> TensorSpec {
        TensorSpec { name: name.into(), dims, ty }
    }

    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of data, or `None` if the first dimension is not a whole number of blocks or the shape is
    /// larger than ggml allows (element count within i64, as the reader requires).
    pub fn size(&self) -> Option<u64> {
        let block = self.ty.block_size() as u64;
        if self.dims.is_empty() || !self.dims[0].is_multiple_of(block) {
            return None;
        }
        let bound = self.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d.max(1)))?;
        if bound > i64::MAX as u64 {
            return None;
        }
        (self.n_elements() / block).checked_mul(self.ty.type_size() as u64)
    }
}

/// Writes one GGUF file. Call [`write`](Self::write) with each tensor's bytes in declaration order (in as
/// many pieces as convenient), then [`finish`](Self::finish).
pub struct GgufWriter {
    path: PathBuf,
    out: Option<BufWriter<NamedTempFile>>,
    specs: Vec<TensorSpec>,
    sizes: Vec<u64>,
    alignment: u64,
    current: usize,
    written_in_current: u64,
    cancel: Option<Arc<AtomicBool>>,
    bytes_written: u64,
}

impl GgufWriter {
    /// Validate the tensor list, create the temporary file next to `path` and write the header.
    ///
    /// `general.alignment` in `metadata`, if present, must be a power-of-two UINT32 and sets the alignment.
    pub fn create(
        path: impl AsRef<Path>,
        metadata: &[(String, Value)],
        tensors: Vec<TensorSpec>,
    ) -> Result<GgufWriter, GgufError> {
        let path = path.as_ref().to_path_buf();
        let bad = |message: String| GgufError::Write { path: path.clone(), message };

        let mut keys = HashSet::new();
        let mut alignment = DEFAULT_ALIGNMENT;
        for (k, v) in metadata {
            if !keys.insert(k.as_str()) {
                return Err(bad(format!("duplicate metadata key '{k}'")));
            }
            if let Value::Array(elem, items) = v {
                if *elem == super::ValueType::Array || items.iter().any(|i| i.value_type() != *elem) {
                    return Err(bad(format!("metadata '{k}': arrays must be flat and of one element type")));
                }
            }
            if k == KEY_ALIGNMENT {
                match v {
                    Value::U32(a) if *a != 0 && a.is_power_of_two() => alignment = *a as u64,
                    _ => return Err(bad(format!("'{KEY_ALIGNMENT}' must be a power-of-two UINT32, got {v:?}"))),
                }
            }
        }
        let mut names = HashSet::new();
        let mut sizes = Vec::with_capacity(tensors.len());
        for t in &tensors {
            if !names.insert(t.name.as_str()) {
                return Err(bad(format!("duplicate tensor name '{}'", t.name)));
            }
            if t.name.len() >= MAX_NAME {
                return Err(bad(format!("tensor name '{}' is longer than {} bytes", t.name, MAX_NAME - 1)));
            }
            if t.dims.is_empty() || t.dims.len() > MAX_DIMS {
                return Err(bad(format!("tensor '{}' has {} dimensions (1 to 4 allowed)", t.name, t.dims.len())));
            }
            let size = t.size().ok_or_else(|| {
                bad(format!(
                    "tensor '{}': shape {:?} is too large, or its first dimension {} is not a multiple of the {} \
                     block size {}",
                    t.name,
                    t.dims,
                    t.dims[0],
                    t.ty,
                    t.ty.block_size()
                ))
            })?;
            sizes.push(size);
        }

        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let prefix = format!(".{file_name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        // A model file is data for others to read, not a secret: the usual 0644, not tempfile's 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let tmp = builder.tempfile_in(&dir).map_err(|source| GgufError::Io { path: path.clone(), source })?;

        let mut w = GgufWriter {
            path,
            out: Some(BufWriter::with_capacity(1 << 20, tmp)),
            specs: tensors,
            sizes,
            alignment,
            current: 0,
            written_in_current: 0,
            cancel: None,
            bytes_written: 0,
        };
        w.write_header(metadata)?;
        Ok(w)
    }

    /// Abort at the next write when `flag` becomes true (e.g. set by a Ctrl-C handler).
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> GgufWriter {
        self.cancel = Some(flag);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn specs(&self) -> &[TensorSpec] {
        &self.specs
    }

    /// Bytes written so far (header, padding and tensor data).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    fn write_header(&mut self, metadata: &[(String, Value)]) -> Result<(), GgufError> {
        let mut h: Vec<u8> = Vec::new();
        h.extend_from_slice(&MAGIC);
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(self.specs.len() as u64).to_le_bytes());
        h.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in metadata {
            put_string(&mut h, k);
            h.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut h, v);
        }
        let mut offset = 0u64;
        for (t, &size) in self.specs.iter().zip(&self.sizes) {
            put_string(&mut h, &t.name);
            h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&t.ty.id().to_le_bytes());
            h.extend_from_slice(&offset.to_le_bytes());
            offset += align_up(size, self.alignment);
        }
        let padded = align_up(h.len() as u64, self.alignment) as usize;
        h.resize(padded, 0);
        self.emit(&h)
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        if self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            self.out = None; // drops and deletes the temporary file
            return Err(GgufError::Cancelled { path: self.path.clone() });
        }
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| GgufError::Write { path: self.path.clone(), message: "writer already failed".into() })?;
        if let Err(source) = out.write_all(bytes) {
            self.out = None;
            return Err(GgufError::Io { path: self.path.clone(), source });
        }
        self.bytes_written += bytes.len() as u64;
        Ok(())
    }

    /// Name of the tensor whose bytes are expected next, if any.
    pub fn next_tensor(&self) -> Option<&TensorSpec> {
        self.specs.get(self.current)
    }

    /// Append bytes of the current tensor. A piece may not run past the tensor's end; the tensor is closed
    /// (and padded) as soon as its last byte arrives.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        let Some(spec) = self.specs.get(self.current) else {
            return Err(GgufError::Write {
                path: self.path.clone(),
                message: format!("{} bytes written after the last tensor", bytes.len()),
            });
        };
        let size = self.sizes[self.current];
        if self.written_in_current + bytes.len() as u64 > size {
            let message = format!(
                "tensor '{}' is {} bytes, but {} were written",
                spec.name,
                size,
                self.written_in_current + bytes.len() as u64
            );
            self.out = None;
            return Err(GgufError::Write { path: self.path.clone(), message });
        }
        self.emit(bytes)?;
        self.written_in_current += bytes.len() as u64;
        if self.written_in_current == size {
            let pad = (align_up(size, self.alignment) - size) as usize;
            self.emit(&vec![0u8; pad])?;
            self.current += 1;
            self.written_in_current = 0;
        }
        Ok(())
    }

    /// Write one whole tensor, checking that it is the expected one.
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<(), GgufError> {
        match self.specs.get(self.current) {
            Some(s) if s.name == name && self.written_in_current == 0 => {}
            other => {
                let message = format!(
                    "tensor '{name}' written out of order (expected '{}')",
                    other.map(|s| s.name.as_str()).unwrap_or("<none>")
                );
                self.out = None;
                return Err(GgufError::Write { path: self.path.clone(), message });
            }
        }
        if bytes.len() as u64 != self.sizes[self.current] {
            let message = format!("tensor '{name}' is {} bytes, got {}", self.sizes[self.current], bytes.len());
            self.out = None;
            return Err(GgufError::Write { path: self.path.clone(), message });
        }
        if bytes.is_empty() {
            self.current += 1;
            return Ok(());
        }
        self.write(bytes)
    }

    /// Flush, sync and rename the temporary file into place. Fails if a tensor is missing.
    pub fn finish(self) -> Result<u64, GgufError> {
        let pending = self.finish_pending()?;
        let bytes = pending.bytes;
        pending.persist()?;
        Ok(bytes)
    }

    /// Like [`finish`](Self::finish) but leaves the complete file under its temporary name, so that several
    /// outputs (a model and its mmproj) can all be renamed into place only once every one of them succeeded.
    pub fn finish_pending(mut self) -> Result<PendingFile, GgufError> {
        while self.current < self.specs.len() && self.sizes[self.current] == 0 {
            self.current += 1;
        }
        if self.current != self.specs.len() {
            let message = format!("tensor '{}' was never written", self.specs[self.current].name);
            return Err(GgufError::Write { path: self.path.clone(), message });
        }
        let out = self
            .out
            .take()
            .ok_or_else(|| GgufError::Write { path: self.path.clone(), message: "writer already failed".into() })?;
        let io = |source| GgufError::Io { path: self.path.clone(), source };
        let tmp = out.into_inner().map_err(|e| io(e.into_error()))?;
        tmp.as_file().sync_all().map_err(io)?;
        Ok(PendingFile { tmp, path: self.path.clone(), bytes: self.bytes_written })
    }
}

/// A fully written GGUF file still under its temporary name; dropping it deletes it.
#[derive(Debug)]
pub struct PendingFile {
    tmp: NamedTempFile,
    path: PathBuf,
    /// File size in bytes.
    pub bytes: u64,
}

impl PendingFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rename into place (atomic on one file system).
    pub fn persist(self) -> Result<(), GgufError> {
        let path = self.path;
        self.tmp.persist(&path).map(|_| ()).map_err(|e| GgufError::Io { path: path.clone(), source: e.error })
    }
}

fn put_string(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => h.push(*x),
        Value::I8(x) => h.push(*x as u8),
        Value::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => h.push(*x as u8),
        Value::String(s) => put_string(h, s),
        Value::Array(elem, items) => {
            h.extend_from_slice(&(*elem as u32).to_le_bytes());
            h.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(h, i);
            }
        }
        Value::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
    }
}
