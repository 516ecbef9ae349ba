//! safetensors checkpoints: a single `model.safetensors` or shards listed by
//! `model.safetensors.index.json`. Headers are parsed here (8-byte LE length + JSON) and every
//! tensor's byte range is validated against its dtype, shape and the shard's size before any use.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap, UncheckedAdvice};
use serde_json::Value;

use crate::codec::SrcType;

/// Largest safetensors JSON header accepted (the real shards have < 200 KiB).
const MAX_HEADER: u64 = 100 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("{path}: tensor {tensor:?}: {reason}")]
    BadTensor { path: PathBuf, tensor: String, reason: String },
    #[error("{path}: {reason}")]
    BadIndex { path: PathBuf, reason: String },
    #[error("no model.safetensors.index.json or model.safetensors in {0}")]
    NoCheckpoint(PathBuf),
}

/// How far [`Shard::release`] reaches back before the range it is given: more than the largest
/// page-cache folio a fault can map (2 MiB on x86-64) plus fault-around (64 KiB).
pub const RELEASE_MARGIN: u64 = (2 << 20) + (256 << 10);

/// One tensor of a shard; `start..end` are absolute offsets in the shard file.
#[derive(Clone, Debug)]
pub struct StTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub start: u64,
    pub end: u64,
}

impl StTensor {
    pub fn src_type(&self) -> Option<SrcType> {
        match self.dtype.as_str() {
            "BF16" => Some(SrcType::BF16),
            "F16" => Some(SrcType::F16),
            "F32" => Some(SrcType::F32),
            _ => None,
        }
    }
}

fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "BF16" | "F16" | "I16" | "U16" => 2,
        "F32" | "I32" | "U32" => 4,
        "F64" | "I64" | "U64" => 8,
        _ => return None,
    })
}

/// A memory-mapped shard with its validated header.
pub struct Shard {
    pub path: PathBuf,
    mmap: Mmap,
    pub tensors: Vec<StTensor>,
}

impl Shard {
    pub fn open(path: &Path) -> Result<Self, SafetensorsError> {
        let io = |source| SafetensorsError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        // SAFETY: read-only map; the checkpoint must not be modified while converting.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let tensors = parse_header(&mmap, path)?;
        Ok(Shard { path: path.to_path_buf(), mmap, tensors })
    }

    pub fn len(&self) -> u64 {
        self.mmap.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.mmap.is_empty()
    }

    /// The tensor's bytes (range validated by the parser).
    pub fn data(&self, t: &StTensor) -> &[u8] {
        self.mmap.get(t.start as usize..t.end as usize).unwrap_or(&[])
    }

    /// Hint that `t` will be read sequentially soon.
    pub fn advise_sequential(&self, t: &StTensor) {
        // SEQUENTIAL widens readahead; no WILLNEED, which would read a whole embedding at once.
        let _ = self.mmap.advise_range(Advice::Sequential, t.start as usize, (t.end - t.start) as usize);
    }

    /// Drop the pages of a finished byte range from this process (page cache keeps them).
    /// The range is widened backwards by [`RELEASE_MARGIN`]: a page fault maps neighbouring
    /// cached pages too (fault-around, and whole large folios of up to 2 MiB on recent kernels),
    /// including pages *before* the faulting address that an earlier chunk already released.
    /// Without the margin those stay mapped and RSS grows with the input (measured: 1.2 GB for
    /// 8.7 GB of input). Releasing a page another thread still reads only costs a minor fault.
    pub fn release(&self, start: u64, end: u64) {
        let start = start.saturating_sub(RELEASE_MARGIN);
        if end > start {
            // SAFETY: DONTNEED on a read-only private file mapping only discards our page table
            // entries; later reads fault the data back in from the file, and no slice of this range
            // is used to observe changes.
            unsafe {
                let _ =
                    self.mmap.unchecked_advise_range(UncheckedAdvice::DontNeed, start as usize, (end - start) as usize);
            }
        }
    }
}

/// Parse and validate a shard header held in `buf` (the whole file).
pub fn parse_header(buf: &[u8], path: &Path) -> Result<Vec<StTensor>, SafetensorsError> {
    let bad = |reason: String| SafetensorsError::BadHeader { path: path.to_path_buf(), reason };
    let file_len = buf.len() as u64;
    if file_len < 8 {
        return Err(bad(format!("file is {file_len} bytes, too short for the 8-byte header length")));
    }
    let n = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
    if n > MAX_HEADER {
        return Err(bad(format!("header length {n} exceeds the {MAX_HEADER}-byte limit")));
    }
    if 8 + n > file_len {
        return Err(bad(format!(
            "header length {n} runs past the end of the file ({file_len} bytes): truncated shard?"
        )));
    }
    let json: Value =
        serde_json::from_slice(&buf[8..(8 + n) as usize]).map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    let obj = json.as_object().ok_or_else(|| bad("header is not a JSON object".into()))?;
    let data_start = 8 + n;
    let mut out = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        if name == "__metadata__" {
            continue;
        }
        let bt =
            |reason: String| SafetensorsError::BadTensor { path: path.to_path_buf(), tensor: name.clone(), reason };
        let dtype = v.get("dtype").and_then(Value::as_str).ok_or_else(|| bt("missing dtype".into()))?;
        let shape: Vec<u64> = v
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bt("missing shape".into()))?
            .iter()
            .map(|d| d.as_u64().ok_or_else(|| bt(format!("shape entry {d} is not a non-negative integer"))))
            .collect::<Result<_, _>>()?;
        let offs = v.get("data_offsets").and_then(Value::as_array).ok_or_else(|| bt("missing data_offsets".into()))?;
        let (b, e) = match offs.as_slice() {
            [b, e] => (
                b.as_u64().ok_or_else(|| bt("bad data_offsets".into()))?,
                e.as_u64().ok_or_else(|| bt("bad data_offsets".into()))?,
            ),
            _ => return Err(bt("data_offsets must have two entries".into())),
        };
        if b > e {
            return Err(bt(format!("data_offsets [{b}, {e}] are reversed")));
        }
        let size = dtype_size(dtype).ok_or_else(|| bt(format!("unknown dtype {dtype}")))?;
        let want = shape
            .iter()
            .try_fold(size, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bt(format!("shape {shape:?} overflows")))?;
        if e - b != want {
            return Err(bt(format!("data_offsets [{b}, {e}] hold {} bytes but {dtype} {shape:?} needs {want}", e - b)));
        }
        let (start, end) = match (data_start.checked_add(b), data_start.checked_add(e)) {
            (Some(s), Some(t)) if t <= file_len => (s, t),
            _ => {
                return Err(bt(format!(
                    "data_offsets [{b}, {e}] (+{data_start} header) lie beyond the end of the file ({file_len} bytes): truncated shard or lying header"
                )))
            }
        };
        out.push(StTensor { name: name.clone(), dtype: dtype.to_owned(), shape, start, end });
    }
    out.sort_by_key(|t| t.start);
    for w in out.windows(2) {
        if w[1].start < w[0].end {
            return Err(SafetensorsError::BadTensor {
                path: path.to_path_buf(),
                tensor: w[1].name.clone(),
                reason: format!("data overlaps tensor {:?}", w[0].name),
            });
        }
    }
    Ok(out)
}

/// All shards of a checkpoint directory.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub shards: Vec<Shard>,
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self, SafetensorsError> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        if index.exists() {
            let bi = |reason: String| SafetensorsError::BadIndex { path: index.clone(), reason };
            let text = std::fs::read(&index).map_err(|source| SafetensorsError::Io { path: index.clone(), source })?;
            let v: Value = serde_json::from_slice(&text).map_err(|e| bi(format!("not valid JSON: {e}")))?;
            let map = v.get("weight_map").and_then(Value::as_object).ok_or_else(|| bi("missing weight_map".into()))?;
            let mut files: Vec<String> = Vec::new();
            let mut expect: HashMap<&str, &str> = HashMap::new();
            for (name, f) in map {
                let f = f.as_str().ok_or_else(|| bi(format!("weight_map[{name:?}] is not a string")))?;
                if f.contains('/') || f.contains('\\') || f == ".." {
                    return Err(bi(format!("shard name {f:?} must be a plain file name")));
                }
                if !files.iter().any(|x| x == f) {
                    files.push(f.to_owned());
                }
                expect.insert(name.as_str(), f);
            }
            files.sort();
            let mut shards = Vec::with_capacity(files.len());
            for f in &files {
                shards.push(Shard::open(&dir.join(f))?);
            }
            // Every indexed tensor must be in the shard the index names, exactly once.
            let mut seen: HashMap<&str, &str> = HashMap::new();
            for (f, s) in files.iter().zip(&shards) {
                for t in &s.tensors {
                    if let Some(prev) = seen.insert(t.name.as_str(), f.as_str()) {
                        return Err(bi(format!("tensor {:?} is in both {prev} and {f}", t.name)));
                    }
                }
            }
            for (name, f) in &expect {
                match seen.get(name) {
                    Some(g) if g == f => {}
                    Some(g) => return Err(bi(format!("tensor {name:?} is listed in {f} but stored in {g}"))),
                    None => return Err(bi(format!("tensor {name:?} listed in the index is missing from {f}"))),
                }
            }
            Ok(Checkpoint { dir: dir.to_path_buf(), shards })
        } else if single.exists() {
            Ok(Checkpoint { dir: dir.to_path_buf(), shards: vec![Shard::open(&single)?] })
        } else {
            Err(SafetensorsError::NoCheckpoint(dir.to_path_buf()))
        }
    }

    /// (shard index, tensor) in file order: shards by name, tensors by offset.
    pub fn tensors(&self) -> impl Iterator<Item = (usize, &StTensor)> {
        self.shards.iter().enumerate().flat_map(|(i, s)| s.tensors.iter().map(move |t| (i, t)))
    }

    pub fn total_bytes(&self) -> u64 {
        self.tensors().map(|(_, t)| t.end - t.start).sum()
    }
}
