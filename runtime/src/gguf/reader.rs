//! Validating GGUF reader. Everything is checked against the file size before it is believed, so a hostile
//! file yields a [`FormatError`] naming the key, tensor and offset, never a panic or a huge allocation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{align_up, FormatError, GgufError, Value, ValueType, DEFAULT_ALIGNMENT, KEY_ALIGNMENT};
use super::{MAGIC, MAX_ARRAY_LEN, MAX_DIMS, MAX_NAME, MAX_STRING_LEN};
use crate::gguf::names;
use crate::mmap::MappedFile;
use crate::GgmlType;

/// One tensor's description. `dims` are in ggml order: `dims[0]` is the contiguous (row) dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Bytes of data (unpadded).
    pub size: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Elements per row (`ne[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims[0]
    }

    /// Number of rows (product of all dims but the first).
    pub fn n_rows(&self) -> u64 {
        self.dims[1..].iter().product()
    }
}

/// The parsed header of a GGUF file: everything but the tensor bytes.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    key_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

impl GgufHeader {
    /// Parse and validate a complete GGUF image (header and data) held in `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<GgufHeader, FormatError> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c.take(4, "magic")?;
        if magic != MAGIC {
            return Err(FormatError::BadMagic { found: magic.to_vec() });
        }
        let version = c.u32("version")?;
        if version & 0xFFFF == 0 && version != 0 {
            return Err(FormatError::BigEndian);
        }
        if version != 2 && version != 3 {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let n_tensors_at = c.pos as u64;
        let n_tensors = c.u64("tensor count")?;
        let n_kv_at = c.pos as u64;
        let n_kv = c.u64("metadata KV count")?;
        // Smallest possible KV: 8-byte key length + 1-byte key + type + 1-byte value.
        c.check_count("metadata KV", n_kv, 14, n_kv_at)?;
        // Smallest possible tensor info: name length + 1 byte + n_dims + one dim + type + offset.
        c.check_count("tensor", n_tensors, 33, n_tensors_at)?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut key_index = HashMap::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key_at = c.pos as u64;
            let key = c.string("metadata key")?;
            let ty_at = c.pos as u64;
            let ty_id = c.u32("value type")?;
            let ty = ValueType::from_id(ty_id).ok_or_else(|| FormatError::UnknownValueType {
                key: key.clone(),
                id: ty_id,
                offset: ty_at,
            })?;
            let value = c.value(ty, &key)?;
            if key_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(FormatError::DuplicateKey { key, offset: key_at });
            }
            metadata.push((key, value));
        }

        let alignment = match key_index.get(KEY_ALIGNMENT).map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => *a as u64,
            Some(Value::U32(a)) => {
                return Err(FormatError::BadAlignment { reason: format!("{a} is not a power of two") })
            }
            Some(other) => {
                return Err(FormatError::BadAlignment {
                    reason: format!("must be UINT32, found {:?}", other.value_type()),
                })
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let at = c.pos as u64;
            let name = c.string("tensor name")?;
            if name.len() >= MAX_NAME {
                return Err(FormatError::NameTooLong { len: name.len(), tensor: name, offset: at });
            }
            let n_dims_at = c.pos as u64;
            let n_dims = c.u32("tensor n_dims")?;
            if n_dims == 0 || n_dims as usize > MAX_DIMS {
                return Err(FormatError::BadDimCount { tensor: name, n_dims, offset: n_dims_at });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64("tensor dimension")?);
            }
            let ty_at = c.pos as u64;
            let ty_id = c.u32("tensor type")?;
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| FormatError::UnknownType {
                tensor: name.clone(),
                id: ty_id,
                offset: ty_at,
            })?;
            let offset = c.u64("tensor data offset")?;
            // ggml keeps element counts within int64. A zero dimension counts as 1 here, so that every row
            // count, stride and row size derived from the shape fits too, not only the (then zero) total.
            let bound = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d.max(1)).filter(|&n| n <= i64::MAX as u64))
                .filter(|&b| (b / ty.block_size() as u64).checked_mul(ty.type_size() as u64).is_some());
            if bound.is_none() {
                return Err(FormatError::ShapeOverflow { tensor: name, dims, offset: at });
            }
            let n_elements: u64 = dims.iter().product();
            let block = ty.block_size() as u64;
            if dims[0] % block != 0 {
                return Err(FormatError::NotBlockMultiple { tensor: name, ne0: dims[0], ty: ty.to_string(), block });
            }
            let size = (n_elements / block)
                .checked_mul(ty.type_size() as u64)
                .ok_or_else(|| FormatError::ShapeOverflow { tensor: name.clone(), dims: dims.clone(), offset: at })?;
            if offset % alignment != 0 {
                return Err(FormatError::Misaligned { tensor: name, offset, alignment });
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(FormatError::DuplicateTensor { tensor: name, offset: at });
            }
            tensors.push(TensorInfo { name, dims, ty, offset, size });
        }

        let data_offset = align_up(c.pos as u64, alignment);
        let len = bytes.len() as u64;
        // Bounds first, then overlaps between neighbours in offset order.
        for t in &tensors {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.size));
            match (start, end) {
                (Some(_), Some(end)) if end <= len => {}
                _ => {
                    return Err(FormatError::DataOutOfBounds {
                        tensor: t.name.clone(),
                        start: data_offset.saturating_add(t.offset),
                        end: data_offset.saturating_add(t.offset).saturating_add(t.size),
                        len,
                    })
                }
            }
        }
        // Zero-size tensors occupy nothing; among the rest, any overlap shows between offset-order neighbours.
        let mut order: Vec<usize> = (0..tensors.len()).filter(|&i| tensors[i].size > 0).collect();
        order.sort_by_key(|&i| (tensors[i].offset, tensors[i].size));
        for w in order.windows(2) {
            let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
            if a.offset + a.size > b.offset {
                return Err(FormatError::Overlap {
                    tensor: b.name.clone(),
                    other: a.name.clone(),
                    start: data_offset + b.offset,
                    end: data_offset + b.offset + b.size,
                });
            }
        }

        Ok(GgufHeader { version, metadata, tensors, alignment, data_offset, key_index, tensor_index })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// `general.architecture`, if present and a string.
    pub fn architecture(&self) -> Option<&str> {
        self.get(names::general::ARCHITECTURE).and_then(Value::as_str)
    }
}

/// A GGUF file mapped in memory; tensor data is borrowed straight from the map.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    map: MappedFile,
    header: GgufHeader,
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref().to_path_buf();
        let map = MappedFile::open(&path).map_err(|source| GgufError::Io { path: path.clone(), source })?;
        let header =
            GgufHeader::parse(map.bytes()).map_err(|source| GgufError::Format { path: path.clone(), source })?;
        Ok(GgufFile { path, map, header })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The file's bytes before the tensor data (header, metadata, tensor infos, padding).
    pub fn header_bytes(&self) -> &[u8] {
        &self.map.bytes()[..self.header.data_offset as usize]
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    pub fn metadata(&self) -> &[(String, Value)] {
        &self.header.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.header.get(key)
    }

    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.header
            .tensor(name)
            .ok_or_else(|| GgufError::MissingTensor { path: self.path.clone(), tensor: name.to_string() })
    }

    /// The raw bytes of a tensor, in place in the map (bounds were validated at open).
    pub fn data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.header.data_offset + info.offset) as usize;
        &self.map.bytes()[start..start + info.size as usize]
    }

    /// Absolute file offset of byte `start` of a tensor's data, and `len` clipped to the tensor.
    fn span(&self, info: &TensorInfo, start: usize, len: usize) -> (usize, usize) {
        let size = info.size as usize;
        let start = start.min(size);
        ((self.header.data_offset + info.offset) as usize + start, len.min(size - start))
    }

    /// Drop the resident pages of `len` bytes at `start` within a tensor's data (streaming readers).
    pub fn release(&self, info: &TensorInfo, start: usize, len: usize) {
        let (at, len) = self.span(info, start, len);
        self.map.release(at, len);
    }

    /// [`release`](Self::release) and drop the range's whole pages from the page cache too (expert eviction).
    pub fn evict(&self, info: &TensorInfo, start: usize, len: usize) {
        let (at, len) = self.span(info, start, len);
        self.map.evict(at, len);
    }

    /// Reads of this range will be random: faults read only the faulting page (`MADV_RANDOM`).
    pub fn advise_random(&self, info: &TensorInfo, start: usize, len: usize) {
        let (at, len) = self.span(info, start, len);
        self.map.advise_random(at, len);
    }

    /// The whole file will be read at random (`MADV_RANDOM`): no read-ahead around any fault.
    pub fn advise_random_all(&self) {
        self.map.advise_random(0, self.map.bytes().len());
    }

    /// Start reading this range into memory in the background (`MADV_WILLNEED`).
    pub fn prefetch(&self, info: &TensorInfo, start: usize, len: usize) {
        let (at, len) = self.span(info, start, len);
        self.map.prefetch(at, len);
    }

    /// Bytes of this range resident in memory (`mincore`); `None` where the OS cannot say.
    pub fn resident_bytes(&self, info: &TensorInfo, start: usize, len: usize) -> Option<usize> {
        let (at, len) = self.span(info, start, len);
        self.map.resident_bytes(at, len)
    }

    pub fn tensor_data(&self, name: &str) -> Result<&[u8], GgufError> {
        Ok(self.data(self.tensor_info(name)?))
    }

    /// Total file size in bytes.
    pub fn file_size(&self) -> u64 {
        self.map.bytes().len() as u64
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FormatError> {
        if (n as u64) > self.remaining() {
            return Err(FormatError::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                need: n as u64,
                len: self.bytes.len() as u64,
            });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FormatError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn check_count(&self, what: &'static str, count: u64, min_size: u64, offset: u64) -> Result<(), FormatError> {
        if count > self.remaining() / min_size {
            return Err(FormatError::AbsurdCount { what, count, offset, remaining: self.remaining() });
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String, FormatError> {
        let at = self.pos as u64;
        let len = self.u64(what)?;
        if len > MAX_STRING_LEN {
            return Err(FormatError::LengthOverLimit {
                what: what.to_string(),
                offset: at,
                len,
                limit: MAX_STRING_LEN,
            });
        }
        if len > self.remaining() {
            return Err(FormatError::LengthPastEnd {
                what: what.to_string(),
                offset: at,
                len,
                remaining: self.remaining(),
            });
        }
        let raw = self.take(len as usize, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| FormatError::InvalidUtf8 { what: what.to_string(), offset: at })
    }

    fn value(&mut self, ty: ValueType, key: &str) -> Result<Value, FormatError> {
        let what = || format!("value of '{key}'");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what())?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what())?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what())?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what())?)),
            ValueType::U32 => Value::U32(self.u32(&what())?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what())?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what())?)),
            ValueType::Bool => Value::Bool(self.array::<1>(&what())?[0] != 0),
            ValueType::U64 => Value::U64(self.u64(&what())?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what())?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what())?)),
            ValueType::String => Value::String(self.string(&what())?),
            ValueType::Array => {
                let at = self.pos as u64;
                let elem_id = self.u32(&what())?;
                let elem = ValueType::from_id(elem_id).ok_or_else(|| FormatError::UnknownValueType {
                    key: key.to_string(),
                    id: elem_id,
                    offset: at,
                })?;
                if elem == ValueType::Array {
                    return Err(FormatError::NestedArray { key: key.to_string(), offset: at });
                }
                let count_at = self.pos as u64;
                let count = self.u64(&what())?;
                if count > MAX_ARRAY_LEN {
                    return Err(FormatError::LengthOverLimit {
                        what: format!("array '{key}'"),
                        offset: count_at,
                        len: count,
                        limit: MAX_ARRAY_LEN,
                    });
                }
                // Strings take at least their 8-byte length each.
                let min = elem.fixed_size().unwrap_or(8) as u64;
                if count > self.remaining() / min {
                    return Err(FormatError::LengthPastEnd {
                        what: format!("array '{key}'"),
                        offset: count_at,
                        len: count,
                        remaining: self.remaining(),
                    });
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem, key)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}
