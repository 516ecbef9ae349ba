//! Hardened GGUF v3 reader.
//!
//! [`GgufHeader::parse`] works on any byte slice and never panics: every count and length is capped
//! (by [`Limits`] and by the bytes that remain), every offset and size is checked against the input
//! length with checked arithmetic before use. [`GgufFile`] memory-maps a file and hands out tensor
//! data as slices of the map (zero-copy).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::types::{GgmlType, MetaArray, MetaValue, ValueType};
use super::{align_up, DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, MAX_DIMS};

/// Caps applied while parsing, on top of "no larger than the bytes that remain".
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_tensors: u64,
    pub max_metadata: u64,
    pub max_string_len: u64,
    pub max_array_len: u64,
    pub max_name_len: u64,
    pub max_nesting: u32,
    pub max_alignment: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tensors: 1 << 20,
            max_metadata: 1 << 20,
            max_string_len: 1 << 30,
            max_array_len: 1 << 28,
            max_name_len: 4096,
            max_nesting: 8,
            max_alignment: 1 << 20,
        }
    }
}

/// Why a GGUF file was rejected. Every variant names the field and the byte offset where it was read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is {what}, not a GGUF file; give the path of a .gguf file")]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("truncated file: {field} at byte {offset} needs {need} bytes, only {avail} remain")]
    Truncated { field: String, offset: u64, need: u64, avail: u64 },
    #[error("bad magic {found:02x?} at byte 0 (expected \"GGUF\")")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {version} at byte 4 (only version 3 is supported)")]
    UnsupportedVersion { version: u32 },
    #[error("{field} at byte {offset} is {value}, above the limit of {max}")]
    TooLarge { field: String, offset: u64, value: u64, max: u64 },
    #[error("{field} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { field: String, offset: u64 },
    #[error("{field} at byte {offset} has unknown value type {ty}")]
    UnknownValueType { field: String, offset: u64, ty: u32 },
    #[error("{field} at byte {offset}: arrays nested deeper than {max}")]
    NestingTooDeep { field: String, offset: u64, max: u32 },
    #[error("duplicate metadata key {key:?} at byte {offset}")]
    DuplicateKey { key: String, offset: u64 },
    #[error("general.alignment at byte {offset}: {reason}")]
    BadAlignment { offset: u64, reason: String },
    #[error("tensor {tensor:?} at byte {offset}: duplicate tensor name")]
    DuplicateTensor { tensor: String, offset: u64 },
    #[error("tensor {tensor:?}: n_dims at byte {offset} is {n_dims}, must be 1..=4")]
    BadDimCount { tensor: String, offset: u64, n_dims: u32 },
    #[error("tensor {tensor:?}: ne[{index}] at byte {offset} is {value}, must be in 1..=2^63-1")]
    BadDim { tensor: String, offset: u64, index: usize, value: u64 },
    #[error("tensor {tensor:?}: dimensions at byte {offset} overflow (element count or byte size > 2^63)")]
    DimOverflow { tensor: String, offset: u64 },
    #[error("tensor {tensor:?}: unknown ggml type {ty} at byte {offset}")]
    UnknownGgmlType { tensor: String, offset: u64, ty: u32 },
    #[error(
        "tensor {tensor:?}: row length ne[0]={ne0} (byte {offset}) is not a multiple of the {ty} block size {block}"
    )]
    RowNotBlockMultiple { tensor: String, offset: u64, ne0: u64, ty: GgmlType, block: u64 },
    #[error("tensor {tensor:?}: data offset {data_offset} (field at byte {offset}) is not a multiple of the alignment {alignment}")]
    MisalignedOffset { tensor: String, offset: u64, data_offset: u64, alignment: u64 },
    #[error("tensor {tensor:?}: data [{start}, {end}) (offset field at byte {offset}) lies beyond the end of the file ({file_len} bytes)")]
    DataOutOfBounds { tensor: String, offset: u64, start: u64, end: u64, file_len: u64 },
    #[error("tensor {second:?} (offset field at byte {offset}) overlaps tensor {first:?}: data starts at {second_start}, previous ends at {first_end}")]
    Overlap { first: String, second: String, offset: u64, first_end: u64, second_start: u64 },
}

/// One tensor's description. `dims` is in ggml order: `dims[0]` is the innermost (row) length.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset relative to the data section, as stored in the file.
    pub rel_offset: u64,
    /// Absolute byte offset of the data in the file.
    pub abs_offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Everything before the data section, parsed and validated.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    index: HashMap<String, usize>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() as u64).saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64, field: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let avail = self.remaining();
        if n > avail {
            return Err(GgufError::Truncated { field: field(), offset: self.pos, need: n, avail });
        }
        // n <= remaining <= buf.len(), so both conversions and the slice are in range.
        let start = self.pos as usize;
        let out = &self.buf[start..start + n as usize];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, field: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn string(&mut self, field: &dyn Fn() -> String, max: u64) -> Result<String, GgufError> {
        let at = self.pos;
        let len = self.u64(&|| format!("{} (length)", field()))?;
        if len > max {
            return Err(GgufError::TooLarge { field: format!("{} (length)", field()), offset: at, value: len, max });
        }
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::InvalidUtf8 { field: field(), offset: at + 8 }),
        }
    }

    /// Read an element count and check it against `max` and against the bytes that remain.
    fn count(&mut self, field: &dyn Fn() -> String, max: u64, min_elem: u64) -> Result<u64, GgufError> {
        let at = self.pos;
        let n = self.u64(field)?;
        if n > max {
            return Err(GgufError::TooLarge { field: field(), offset: at, value: n, max });
        }
        // More entries than the rest of the file can hold (each takes at least `min_elem` bytes):
        // a file cut short, said as such (not as a limit of "0").
        let min_elem = min_elem.max(1);
        if n > self.remaining() / min_elem {
            return Err(GgufError::Truncated {
                field: format!("{} = {n}", field()),
                offset: at,
                need: n.saturating_mul(min_elem),
                avail: self.remaining(),
            });
        }
        Ok(n)
    }
}

fn read_array(c: &mut Cursor<'_>, field: &str, lim: &Limits, depth: u32) -> Result<MetaArray, GgufError> {
    let at = c.pos;
    let f = || format!("{field} (array element type)");
    let tyv = c.u32(&f)?;
    let ty = ValueType::from_u32(tyv).ok_or(GgufError::UnknownValueType { field: f(), offset: at, ty: tyv })?;
    if ty == ValueType::Array && depth + 1 >= lim.max_nesting {
        return Err(GgufError::NestingTooDeep { field: field.to_owned(), offset: at, max: lim.max_nesting });
    }
    let n = c.count(&|| format!("{field} (array length)"), lim.max_array_len, ty.min_encoded_size())?;
    let elem = || format!("{field} (array element)");
    macro_rules! fixed {
        ($variant:ident, $t:ty) => {{
            let mut v = Vec::with_capacity(n as usize);
            for _ in 0..n {
                v.push(<$t>::from_le_bytes(c.array(&elem)?));
            }
            MetaArray::$variant(v)
        }};
    }
    Ok(match ty {
        ValueType::U8 => MetaArray::U8(c.take(n, &elem)?.to_vec()),
        ValueType::I8 => fixed!(I8, i8),
        ValueType::U16 => fixed!(U16, u16),
        ValueType::I16 => fixed!(I16, i16),
        ValueType::U32 => fixed!(U32, u32),
        ValueType::I32 => fixed!(I32, i32),
        ValueType::F32 => fixed!(F32, f32),
        ValueType::U64 => fixed!(U64, u64),
        ValueType::I64 => fixed!(I64, i64),
        ValueType::F64 => fixed!(F64, f64),
        ValueType::Bool => {
            let bytes = c.take(n, &elem)?;
            MetaArray::Bool(bytes.iter().map(|&b| b != 0).collect())
        }
        ValueType::String => {
            let mut v = Vec::with_capacity(n as usize);
            for _ in 0..n {
                v.push(c.string(&elem, lim.max_string_len)?);
            }
            MetaArray::String(v)
        }
        ValueType::Array => {
            let mut v = Vec::with_capacity(n as usize);
            for _ in 0..n {
                v.push(read_array(c, field, lim, depth + 1)?);
            }
            MetaArray::Array(v)
        }
    })
}

fn read_value(c: &mut Cursor<'_>, field: &str, ty: ValueType, lim: &Limits) -> Result<MetaValue, GgufError> {
    let f = || field.to_owned();
    Ok(match ty {
        ValueType::U8 => MetaValue::U8(c.array::<1>(&f)?[0]),
        ValueType::I8 => MetaValue::I8(c.array::<1>(&f)?[0] as i8),
        ValueType::U16 => MetaValue::U16(u16::from_le_bytes(c.array(&f)?)),
        ValueType::I16 => MetaValue::I16(i16::from_le_bytes(c.array(&f)?)),
        ValueType::U32 => MetaValue::U32(u32::from_le_bytes(c.array(&f)?)),
        ValueType::I32 => MetaValue::I32(i32::from_le_bytes(c.array(&f)?)),
        ValueType::F32 => MetaValue::F32(f32::from_le_bytes(c.array(&f)?)),
        ValueType::U64 => MetaValue::U64(u64::from_le_bytes(c.array(&f)?)),
        ValueType::I64 => MetaValue::I64(i64::from_le_bytes(c.array(&f)?)),
        ValueType::F64 => MetaValue::F64(f64::from_le_bytes(c.array(&f)?)),
        ValueType::Bool => MetaValue::Bool(c.array::<1>(&f)?[0] != 0),
        ValueType::String => MetaValue::String(c.string(&f, lim.max_string_len)?),
        ValueType::Array => MetaValue::Array(read_array(c, field, lim, 0)?),
    })
}

impl GgufHeader {
    /// Parse and validate with the default [`Limits`].
    pub fn parse(buf: &[u8]) -> Result<Self, GgufError> {
        Self::parse_with_limits(buf, &Limits::default())
    }

    pub fn parse_with_limits(buf: &[u8], lim: &Limits) -> Result<Self, GgufError> {
        let mut c = Cursor { buf, pos: 0 };
        let magic: [u8; 4] = c.array(&|| "magic".into())?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = c.u32(&|| "version".into())?;
        if version != GGUF_VERSION {
            return Err(GgufError::UnsupportedVersion { version });
        }
        // Each tensor info takes at least 8 (name len) + 4 (n_dims) + 8 (ne[0]) + 4 (type) + 8 (offset).
        let n_tensors = c.count(&|| "tensor_count".into(), lim.max_tensors, 32)?;
        // Each key/value takes at least 8 (key len) + 4 (type) + 1.
        let n_kv = c.count(&|| "metadata_kv_count".into(), lim.max_metadata, 13)?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut keys = HashSet::new();
        let mut alignment = DEFAULT_ALIGNMENT;
        for i in 0..n_kv {
            let at = c.pos;
            let key = c.string(&|| format!("metadata[{i}].key"), lim.max_string_len)?;
            if !keys.insert(key.clone()) {
                return Err(GgufError::DuplicateKey { key, offset: at });
            }
            let tat = c.pos;
            let tf = || format!("metadata {key:?} (value type)");
            let tyv = c.u32(&tf)?;
            let ty =
                ValueType::from_u32(tyv).ok_or(GgufError::UnknownValueType { field: tf(), offset: tat, ty: tyv })?;
            let vat = c.pos;
            let value = read_value(&mut c, &format!("metadata {key:?}"), ty, lim)?;
            if key == "general.alignment" {
                alignment = match value {
                    MetaValue::U32(a) => a as u64,
                    _ => {
                        return Err(GgufError::BadAlignment {
                            offset: tat,
                            reason: format!("type is {ty:?}, expected U32"),
                        })
                    }
                };
                if alignment == 0 || !alignment.is_power_of_two() || alignment > lim.max_alignment {
                    return Err(GgufError::BadAlignment {
                        offset: vat,
                        reason: format!("{alignment} is not a power of two in 1..={}", lim.max_alignment),
                    });
                }
            }
            metadata.push((key, value));
        }

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut index = HashMap::with_capacity(n_tensors as usize);
        // Offset of each tensor's offset field, for error messages in the second pass.
        let mut offset_fields = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let at = c.pos;
            let name = c.string(&|| format!("tensor[{i}].name"), lim.max_name_len)?;
            if index.contains_key(&name) {
                return Err(GgufError::DuplicateTensor { tensor: name, offset: at });
            }
            let nat = c.pos;
            let n_dims = c.u32(&|| format!("tensor {name:?} n_dims"))?;
            if n_dims == 0 || n_dims as usize > MAX_DIMS {
                return Err(GgufError::BadDimCount { tensor: name, offset: nat, n_dims });
            }
            let dims_at = c.pos;
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims as usize {
                let dat = c.pos;
                let v = c.u64(&|| format!("tensor {name:?} ne[{d}]"))?;
                if v == 0 || v > i64::MAX as u64 {
                    return Err(GgufError::BadDim { tensor: name, offset: dat, index: d, value: v });
                }
                dims.push(v);
            }
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d).filter(|&p| p <= i64::MAX as u64))
                .ok_or_else(|| GgufError::DimOverflow { tensor: name.clone(), offset: dims_at })?;
            let tat = c.pos;
            let tyv = c.u32(&|| format!("tensor {name:?} type"))?;
            let ty = GgmlType::from_id(tyv).ok_or_else(|| GgufError::UnknownGgmlType {
                tensor: name.clone(),
                offset: tat,
                ty: tyv,
            })?;
            if dims[0] % ty.block_size() != 0 {
                return Err(GgufError::RowNotBlockMultiple {
                    tensor: name,
                    offset: dims_at,
                    ne0: dims[0],
                    ty,
                    block: ty.block_size(),
                });
            }
            let n_bytes = ty
                .bytes_for(n_elements)
                .filter(|&b| b <= i64::MAX as u64)
                .ok_or_else(|| GgufError::DimOverflow { tensor: name.clone(), offset: dims_at })?;
            let oat = c.pos;
            let rel_offset = c.u64(&|| format!("tensor {name:?} offset"))?;
            if rel_offset % alignment != 0 {
                return Err(GgufError::MisalignedOffset {
                    tensor: name,
                    offset: oat,
                    data_offset: rel_offset,
                    alignment,
                });
            }
            index.insert(name.clone(), tensors.len());
            offset_fields.push(oat);
            tensors.push(TensorInfo { name, dims, ty, rel_offset, abs_offset: 0, n_bytes });
        }

        let file_len = buf.len() as u64;
        let data_offset = align_up(c.pos, alignment).unwrap_or(u64::MAX);
        if n_tensors > 0 && data_offset > file_len {
            return Err(GgufError::Truncated {
                field: "padding before the data section".into(),
                offset: c.pos,
                need: data_offset - c.pos,
                avail: c.remaining(),
            });
        }
        for (t, &oat) in tensors.iter_mut().zip(&offset_fields) {
            let start = data_offset.checked_add(t.rel_offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(s), Some(e)) if e <= file_len => t.abs_offset = s,
                _ => {
                    return Err(GgufError::DataOutOfBounds {
                        tensor: t.name.clone(),
                        offset: oat,
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        file_len,
                    })
                }
            }
        }
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| tensors[i].abs_offset);
        for w in order.windows(2) {
            let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
            let a_end = a.abs_offset + a.n_bytes;
            if b.abs_offset < a_end {
                return Err(GgufError::Overlap {
                    first: a.name.clone(),
                    second: b.name.clone(),
                    offset: offset_fields[w[1]],
                    first_end: a_end - data_offset,
                    second_start: b.rel_offset,
                });
            }
        }
        Ok(GgufHeader { version, metadata, tensors, alignment, data_offset, index })
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }
}

/// A memory-mapped, validated GGUF file.
pub struct GgufFile {
    mmap: Mmap,
    pub header: GgufHeader,
    pub path: PathBuf,
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io { path: path.clone(), source };
        // Looked at before opening: a FIFO would block the open forever, a directory maps as
        // "No such device".
        let meta = std::fs::metadata(&path).map_err(io)?;
        if !meta.is_file() {
            return Err(GgufError::NotRegular { what: crate::outfile::kind_of(&meta.file_type()), path });
        }
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only; a file truncated by another process while mapped would
        // raise SIGBUS, which is the documented caveat of every mmap-based loader.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header = GgufHeader::parse(&mmap)?;
        Ok(GgufFile { mmap, header, path })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    /// A tensor's raw data, borrowed from the map. Bounds were checked by the parser; a
    /// `TensorInfo` from another file that does not fit gives an empty slice.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let s = t.abs_offset as usize;
        self.mmap.get(s..s.saturating_add(t.n_bytes as usize)).unwrap_or(&[])
    }
}
