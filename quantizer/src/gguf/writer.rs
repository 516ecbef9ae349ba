//! Streaming GGUF v3 writer.
//!
//! All offsets are computed before the first byte is written, so the header goes out first and
//! tensor data follows one tensor at a time (even in pieces): memory is O(header + one chunk).
//! [`GgufWriter::create_file`] writes to a temporary file in the destination directory and renames
//! it to the final name only in [`GgufFileWriter::finish`]; any earlier error or drop removes it
//! (the [`crate::outfile`] rules: links followed, read-only and non-regular targets refused).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::outfile::OutFile;

use super::types::{GgmlType, MetaArray, MetaValue};
use super::{align_up, DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, MAX_DIMS};

/// A tensor to be written. `dims` is in ggml order (`dims[0]` = row length).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
}

impl TensorSpec {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    pub fn n_bytes(&self) -> u64 {
        self.ty.bytes_for(self.n_elements()).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("disk full while writing {path} (the complete file needs {needed} bytes); nothing was left under the final name")]
    DiskFull { path: PathBuf, needed: u64 },
    #[error("I/O error while {op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("invalid tensor {tensor:?}: {reason}")]
    InvalidTensor { tensor: String, reason: String },
    #[error("tensor {tensor:?}: expected {expected} bytes of data, got {got}")]
    SizeMismatch { tensor: String, expected: u64, got: u64 },
    #[error("all {count} tensors were already written")]
    NoMoreTensors { count: usize },
    #[error("finished after {written} of {count} tensors")]
    Incomplete { written: usize, count: usize },
    #[error("bad alignment {0}: must be a power of two")]
    BadAlignment(u64),
}

fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC)
}

/// Map an I/O error, turning ENOSPC into [`WriteError::DiskFull`].
fn io_err<'a>(op: &'static str, path: &'a Path, needed: u64) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| {
        if is_disk_full(&source) {
            WriteError::DiskFull { path: path.to_path_buf(), needed }
        } else {
            WriteError::Io { op, path: path.to_path_buf(), source }
        }
    }
}

/// Collects metadata and tensor descriptions, then lays the file out.
#[derive(Clone, Debug)]
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<TensorSpec>,
    alignment: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter { metadata: Vec::new(), tensors: Vec::new(), alignment: DEFAULT_ALIGNMENT }
    }

    /// Sets the alignment and records it as `general.alignment`.
    pub fn set_alignment(&mut self, alignment: u32) -> Result<(), WriteError> {
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(WriteError::BadAlignment(alignment as u64));
        }
        self.alignment = alignment as u64;
        self.set("general.alignment", MetaValue::U32(alignment));
        Ok(())
    }

    /// Sets a metadata key, replacing an earlier value of the same key in place.
    pub fn set(&mut self, key: &str, value: MetaValue) {
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key.to_owned(), value));
        }
    }

    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    pub fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    pub fn add_tensor(&mut self, spec: TensorSpec) -> Result<(), WriteError> {
        let bad = |reason: String| WriteError::InvalidTensor { tensor: spec.name.clone(), reason };
        if spec.dims.is_empty() || spec.dims.len() > MAX_DIMS {
            return Err(bad(format!("{} dimensions, must be 1..=4", spec.dims.len())));
        }
        if spec.dims.contains(&0) {
            return Err(bad(format!("zero dimension in {:?}", spec.dims)));
        }
        let n = spec.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if n.and_then(|n| spec.ty.bytes_for(n)).is_none() {
            return Err(bad(format!("dimensions {:?} overflow", spec.dims)));
        }
        if spec.dims[0] % spec.ty.block_size() != 0 {
            return Err(bad(format!("row length {} is not a multiple of the {} block size", spec.dims[0], spec.ty)));
        }
        if self.tensors.iter().any(|t| t.name == spec.name) {
            return Err(bad("duplicate name".into()));
        }
        self.tensors.push(spec);
        Ok(())
    }

    /// Serialised header (everything before the data section, including its padding) and the
    /// data offset of each tensor relative to the data section.
    pub fn layout(&self) -> (Vec<u8>, Vec<u64>, u64) {
        let mut h = Vec::new();
        h.extend_from_slice(&GGUF_MAGIC);
        h.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut h, k);
            h.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut h, v);
        }
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut off = 0u64;
        for t in &self.tensors {
            put_str(&mut h, &t.name);
            h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&t.ty.id().to_le_bytes());
            h.extend_from_slice(&off.to_le_bytes());
            offsets.push(off);
            off = align_up(off + t.n_bytes(), self.alignment).unwrap_or(u64::MAX);
        }
        let padded = align_up(h.len() as u64, self.alignment).unwrap_or(u64::MAX);
        h.resize(padded as usize, 0);
        let total = padded + off;
        (h, offsets, total)
    }

    /// Writes the header to `w` and returns a writer that accepts the tensor data in order.
    pub fn begin<W: Write>(self, mut w: W) -> io::Result<GgufStreamWriter<W>> {
        let (header, _offsets, total) = self.layout();
        w.write_all(&header)?;
        Ok(GgufStreamWriter {
            w,
            sizes: self.tensors.iter().map(|t| (t.name.clone(), t.n_bytes())).collect(),
            alignment: self.alignment,
            next: 0,
            in_tensor: 0,
            total,
        })
    }

    /// Opens the output as [`crate::outfile::OutFile`] does (a temporary `.<name>.tmp-PID` beside
    /// the target, links followed, read-only and non-regular targets refused; a character device
    /// such as `/dev/null` is written directly), preallocates the full size where the filesystem
    /// supports it (so a full disk is reported before any work), and writes the header.
    pub fn create_file(self, path: impl AsRef<Path>) -> Result<GgufFileWriter, WriteError> {
        let final_path = path.as_ref().to_path_buf();
        let (_, _, total) = self.layout();
        let out = OutFile::create(&final_path, false).map_err(|source| WriteError::Io {
            op: "creating",
            path: final_path.clone(),
            source,
        })?;
        let tmp = out.temporary().unwrap_or(&final_path).to_path_buf();
        if let Some(f) = out.file().filter(|_| out.seekable()) {
            preallocate(f, total).map_err(io_err("preallocating", &tmp, total))?;
        }
        let inner =
            self.begin(BufWriter::with_capacity(8 << 20, out)).map_err(io_err("writing the header of", &tmp, total))?;
        Ok(GgufFileWriter { inner: Some(inner), tmp, final_path })
    }
}

fn preallocate(file: &File, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(len) = libc::off_t::try_from(len) else { return Ok(()) };
        // SAFETY: plain syscall on a valid, open file descriptor.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        match rc {
            0 => Ok(()),
            libc::ENOSPC => Err(io::Error::from_raw_os_error(rc)),
            // EOPNOTSUPP, EINVAL (e.g. tmpfs quirks, pipes): fall back to plain writes.
            _ => Ok(()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, len);
        Ok(())
    }
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => h.push(*x),
        MetaValue::I8(x) => h.push(*x as u8),
        MetaValue::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => h.push(*x as u8),
        MetaValue::String(s) => put_str(h, s),
        MetaValue::Array(a) => put_array(h, a),
        MetaValue::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(h: &mut Vec<u8>, a: &MetaArray) {
    h.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
    h.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                h.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        MetaArray::U8(v) => h.extend_from_slice(v),
        MetaArray::I8(v) => h.extend(v.iter().map(|&x| x as u8)),
        MetaArray::Bool(v) => h.extend(v.iter().map(|&x| x as u8)),
        MetaArray::U16(v) => le!(v),
        MetaArray::I16(v) => le!(v),
        MetaArray::U32(v) => le!(v),
        MetaArray::I32(v) => le!(v),
        MetaArray::F32(v) => le!(v),
        MetaArray::U64(v) => le!(v),
        MetaArray::I64(v) => le!(v),
        MetaArray::F64(v) => le!(v),
        MetaArray::String(v) => {
            for s in v {
                put_str(h, s);
            }
        }
        MetaArray::Array(v) => {
            for inner in v {
                put_array(h, inner);
            }
        }
    }
}

const ZEROS: [u8; 4096] = [0; 4096];

/// Accepts tensor data in declaration order, each tensor in one or more pieces.
pub struct GgufStreamWriter<W: Write> {
    w: W,
    sizes: Vec<(String, u64)>,
    alignment: u64,
    next: usize,
    in_tensor: u64,
    total: u64,
}

impl<W: Write> GgufStreamWriter<W> {
    /// Total size of the finished file.
    pub fn total_size(&self) -> u64 {
        self.total
    }

    /// Name and byte size of the tensor that the next data belongs to.
    pub fn current(&self) -> Option<(&str, u64)> {
        self.sizes.get(self.next).map(|(n, s)| (n.as_str(), *s))
    }

    /// Appends bytes to the current tensor.
    pub fn write_data(&mut self, data: &[u8]) -> Result<(), StreamError> {
        let Some((name, size)) = self.sizes.get(self.next) else {
            return Err(StreamError::Format(WriteError::NoMoreTensors { count: self.sizes.len() }));
        };
        let got = self.in_tensor + data.len() as u64;
        if got > *size {
            return Err(StreamError::Format(WriteError::SizeMismatch { tensor: name.clone(), expected: *size, got }));
        }
        self.w.write_all(data).map_err(StreamError::Io)?;
        self.in_tensor = got;
        Ok(())
    }

    /// Closes the current tensor (which must be complete) and writes its alignment padding.
    pub fn end_tensor(&mut self) -> Result<(), StreamError> {
        let Some((name, size)) = self.sizes.get(self.next) else {
            return Err(StreamError::Format(WriteError::NoMoreTensors { count: self.sizes.len() }));
        };
        if self.in_tensor != *size {
            return Err(StreamError::Format(WriteError::SizeMismatch {
                tensor: name.clone(),
                expected: *size,
                got: self.in_tensor,
            }));
        }
        let mut pad = align_up(*size, self.alignment).unwrap_or(*size) - *size;
        while pad > 0 {
            let n = pad.min(ZEROS.len() as u64) as usize;
            self.w.write_all(&ZEROS[..n]).map_err(StreamError::Io)?;
            pad -= n as u64;
        }
        self.next += 1;
        self.in_tensor = 0;
        Ok(())
    }

    /// Writes one whole tensor.
    pub fn write_tensor(&mut self, data: &[u8]) -> Result<(), StreamError> {
        self.write_data(data)?;
        self.end_tensor()
    }

    /// Checks that every tensor was written, flushes, and returns the sink.
    pub fn finish(mut self) -> Result<W, StreamError> {
        if self.next != self.sizes.len() {
            return Err(StreamError::Format(WriteError::Incomplete { written: self.next, count: self.sizes.len() }));
        }
        self.w.flush().map_err(StreamError::Io)?;
        Ok(self.w)
    }
}

/// Error of the generic stream writer: a format error, or an I/O error of the sink.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Format(WriteError),
    #[error(transparent)]
    Io(io::Error),
}

/// A GGUF file being written to a temporary name; see [`GgufWriter::create_file`].
pub struct GgufFileWriter {
    inner: Option<GgufStreamWriter<BufWriter<OutFile>>>,
    tmp: PathBuf,
    final_path: PathBuf,
}

impl GgufFileWriter {
    fn map(&self, e: StreamError, op: &'static str) -> WriteError {
        let total = self.inner.as_ref().map_or(0, |w| w.total);
        match e {
            StreamError::Format(f) => f,
            StreamError::Io(io) => io_err(op, &self.tmp, total)(io),
        }
    }

    fn inner(&mut self) -> &mut GgufStreamWriter<BufWriter<OutFile>> {
        // `inner` is only taken by `finish`, which consumes self.
        self.inner.as_mut().expect("GgufFileWriter used after finish")
    }

    pub fn total_size(&self) -> u64 {
        self.inner.as_ref().map_or(0, |w| w.total)
    }

    pub fn current(&self) -> Option<(&str, u64)> {
        self.inner.as_ref().and_then(|w| w.current())
    }

    pub fn write_data(&mut self, data: &[u8]) -> Result<(), WriteError> {
        self.inner().write_data(data).map_err(|e| self.map(e, "writing"))
    }

    pub fn end_tensor(&mut self) -> Result<(), WriteError> {
        self.inner().end_tensor().map_err(|e| self.map(e, "writing"))
    }

    pub fn write_tensor(&mut self, data: &[u8]) -> Result<(), WriteError> {
        self.inner().write_tensor(data).map_err(|e| self.map(e, "writing"))
    }

    /// Flushes, fsyncs and renames the temporary file to the final name.
    pub fn finish(mut self) -> Result<PathBuf, WriteError> {
        let total = self.total_size();
        let inner = self.inner.take().expect("finish called twice");
        let buf = inner.finish().map_err(|e| match e {
            StreamError::Format(f) => f,
            StreamError::Io(io) => io_err("flushing", &self.tmp, total)(io),
        })?;
        let out = buf.into_inner().map_err(|e| io_err("flushing", &self.tmp, total)(e.into_error()))?;
        out.commit().map_err(io_err("syncing and renaming", &self.tmp, total))?;
        Ok(self.final_path.clone())
    }
}
