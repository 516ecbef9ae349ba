//! The model file: one memory-mapped Q8_0 GGUF (written by `quantizer`) holding every component,
//! with lookups that check each tensor's shape and type and name the tensor when they don't match.

use std::path::{Path, PathBuf};

use quantizer::gguf::{GgmlType, GgufError, GgufFile, TensorInfo};
use qwen3_omni_vk::layout::{repack_q8_0_planar_checked, RepackError};

/// What can go wrong reading a model file or placing it on the GPU.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The reader's own message, prefixed with the path unless it already names it.
    #[error("{}", gguf_message(.path, .source))]
    Gguf {
        path: PathBuf,
        #[source]
        source: GgufError,
    },
    #[error(
        "{path}: metadata key {key} is missing (is this a qwen3-omni-vk GGUF? write one with `qwen3-omni-vk quantize`)"
    )]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: config field {field}: {what}")]
    Config { path: PathBuf, field: String, what: String },
    #[error("{path}: tensor {name} is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor {name} has shape {got:?}, expected {want:?} (torch order)")]
    Shape { path: PathBuf, name: String, got: Vec<u64>, want: Vec<u64> },
    #[error("{path}: tensor {name} is {got}, expected {want}")]
    Type { path: PathBuf, name: String, got: &'static str, want: String },
    #[error("{path}: tensor {name}: {what}; the file is damaged or was converted from a diverged checkpoint")]
    NonFinite { path: PathBuf, name: String, what: String },
    /// The memory plan refused the load before anything was allocated.
    #[error(transparent)]
    Memory(#[from] Box<crate::memory_plan::MemoryError>),
    #[error("--cache-type {ty}: {what}")]
    CacheType { ty: qwen3_omni_vk::CacheType, what: String },
    #[error(transparent)]
    Gpu(#[from] qwen3_omni_vk::Error),
}

fn gguf_message(path: &Path, e: &GgufError) -> String {
    match e {
        GgufError::Io { .. } | GgufError::NotRegular { .. } => e.to_string(),
        _ => format!("{}: {e}", path.display()),
    }
}

/// A tensor found in the file: its info (ggml dims) and its bytes in the map.
pub struct TensorRef<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
    path: &'a Path,
}

impl TensorRef<'_> {
    pub fn ty(&self) -> GgmlType {
        self.info.ty
    }
    /// Shape in torch order (ggml dims reversed).
    pub fn shape(&self) -> Vec<u64> {
        self.info.dims.iter().rev().copied().collect()
    }

    fn non_finite(&self, what: String) -> ModelError {
        ModelError::NonFinite { path: self.path.to_path_buf(), name: self.info.name.clone(), what }
    }

    /// The values as f32: Q8_0 dequantised, F16 / BF16 widened, anything else read as F32 (callers
    /// take tensors through [`ModelFile::tensor_typed`] with the types they accept). A NaN or
    /// infinite value (for Q8_0: a block scale) is refused, naming the tensor.
    pub fn to_f32(&self) -> Result<Vec<f32>, ModelError> {
        let v: Vec<f32> = match self.ty() {
            GgmlType::Q8_0 => quantizer::codec::dequantize_q8_0(self.data),
            GgmlType::F16 => {
                self.data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            GgmlType::BF16 => {
                self.data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            _ => self.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        };
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            // A Q8_0 value is its int8 quant times the block's f16 scale: only the scale can be
            // non-finite, and then the whole block is.
            return Err(match self.ty() {
                GgmlType::Q8_0 => {
                    let b = &self.data[i / 32 * 34..i / 32 * 34 + 2];
                    let scale = half::f16::from_le_bytes([b[0], b[1]]);
                    self.non_finite(format!("Q8_0 block {} has the non-finite scale {scale}", i / 32))
                }
                _ => self.non_finite(format!("element {i} is {}", v[i])),
            });
        }
        Ok(v)
    }

    /// Refuses a NaN or infinite element of an F32, F16 or BF16 tensor (other types pass: Q8_0
    /// scales are checked where the blocks are repacked or dequantised).
    pub fn check_finite(&self) -> Result<(), ModelError> {
        let d = self.data;
        let half2 = |f: fn([u8; 2]) -> f32| d.chunks_exact(2).map(move |b| f([b[0], b[1]])).enumerate();
        let bad = match self.ty() {
            GgmlType::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .enumerate()
                .find(|(_, x)| !x.is_finite()),
            GgmlType::F16 => half2(|b| half::f16::from_le_bytes(b).to_f32()).find(|(_, x)| !x.is_finite()),
            GgmlType::BF16 => half2(|b| half::bf16::from_le_bytes(b).to_f32()).find(|(_, x)| !x.is_finite()),
            _ => None,
        };
        match bad {
            Some((i, v)) => Err(self.non_finite(format!("element {i} is {v}"))),
            None => Ok(()),
        }
    }

    /// Repacks this `[rows, cols]` Q8_0 tensor into the planar layout (`out`: at least
    /// `PlanarLayout::new(rows, cols).total()` bytes), refusing a non-finite block scale.
    pub fn repack_planar_into(&self, rows: u64, cols: u64, out: &mut [u8]) -> Result<(), ModelError> {
        match repack_q8_0_planar_checked(self.data, rows as usize, cols as usize, out) {
            Ok(()) => Ok(()),
            Err(e @ RepackError::NonFiniteScale { .. }) => Err(self.non_finite(e.to_string())),
            Err(e) => Err(ModelError::Gpu(qwen3_omni_vk::Error::Kernel {
                kernel: self.info.name.clone(),
                what: e.to_string(),
            })),
        }
    }
}

/// An open model file.
pub struct ModelFile {
    pub gguf: GgufFile,
    config: serde_json::Value,
}

impl ModelFile {
    pub fn open(path: impl AsRef<Path>) -> Result<ModelFile, ModelError> {
        let path = path.as_ref();
        let gguf = GgufFile::open(path).map_err(|source| ModelError::Gguf { path: path.to_path_buf(), source })?;
        let key = "qwen3omni.config_json";
        let text = gguf
            .header
            .get(key)
            .and_then(|v| v.as_str())
            .ok_or_else(|| ModelError::MissingKey { path: path.to_path_buf(), key: key.into() })?;
        let config = parse_config(text).map_err(|what| ModelError::Config {
            path: path.to_path_buf(),
            field: key.into(),
            what,
        })?;
        Ok(ModelFile { gguf, config })
    }

    pub fn path(&self) -> &Path {
        &self.gguf.path
    }

    /// config.json as stored in the file.
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    /// A config value by JSON pointer (e.g. `/thinker_config/text_config/hidden_size`).
    pub fn config_u64(&self, pointer: &str) -> Result<u64, ModelError> {
        self.config
            .pointer(pointer)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| self.config_err(pointer, "missing or not an unsigned integer"))
    }

    pub fn config_f64(&self, pointer: &str) -> Result<f64, ModelError> {
        self.config
            .pointer(pointer)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| self.config_err(pointer, "missing or not a number"))
    }

    pub fn config_err(&self, field: &str, what: &str) -> ModelError {
        ModelError::Config { path: self.path().to_path_buf(), field: field.into(), what: what.into() }
    }

    /// The tensor `name`, which must have torch shape `shape`.
    pub fn tensor(&self, name: &str, shape: &[u64]) -> Result<TensorRef<'_>, ModelError> {
        let info = self
            .gguf
            .header
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor { path: self.path().to_path_buf(), name: name.into() })?;
        let t = TensorRef { info, data: self.gguf.tensor_data(info), path: &self.gguf.path };
        let got = t.shape();
        if got != shape {
            return Err(ModelError::Shape {
                path: self.path().to_path_buf(),
                name: name.into(),
                got,
                want: shape.to_vec(),
            });
        }
        Ok(t)
    }

    /// The tensor `name` of shape `shape` and one of the types `want`.
    /// A Q8_0, F16 or F32 tensor of `shape`, as f32 values (see [`TensorRef::to_f32`]).
    pub fn tensor_f32(&self, name: &str, shape: &[u64]) -> Result<Vec<f32>, ModelError> {
        self.tensor_typed(name, shape, &[GgmlType::Q8_0, GgmlType::F32, GgmlType::F16])?.to_f32()
    }

    pub fn tensor_typed(&self, name: &str, shape: &[u64], want: &[GgmlType]) -> Result<TensorRef<'_>, ModelError> {
        let t = self.tensor(name, shape)?;
        if !want.contains(&t.ty()) {
            let names: Vec<&str> = want.iter().map(|w| w.name()).collect();
            return Err(ModelError::Type {
                path: self.path().to_path_buf(),
                name: name.into(),
                got: t.ty().name(),
                want: names.join(" or "),
            });
        }
        // Norms, routers, biases and conv kernels are small: checked here, once, for every user.
        t.check_finite()?;
        Ok(t)
    }
}

/// config.json as serde_json reads it, except that the tokens Python's `json.dump` writes for
/// non-finite floats (`NaN`, `Infinity`, `-Infinity`) and numbers beyond the f64 range, which
/// serde_json refuses, become strings: the config checks then refuse them naming their field.
/// Other syntax errors name the key nearest before the error.
pub fn parse_config(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).or_else(|e| {
        serde_json::from_str(&quote_non_finite(text)).map_err(|_| {
            let near =
                near_key(text, e.line(), e.column()).map(|k| format!(" (near the field {k:?})")).unwrap_or_default();
            format!("not valid JSON: {e}{near}")
        })
    })
}

/// `text` with every bare `NaN`, `Infinity`, `-Infinity` and f64-overflowing number outside
/// strings wrapped in quotes.
fn quote_non_finite(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if c == b'-' || c == b'N' || c == b'I' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'.' | b'+' | b'-')) {
                    i += 1;
                }
                let tok = &text[start..i];
                let overflow =
                    tok.bytes().any(|c| c.is_ascii_digit()) && tok.parse::<f64>().is_ok_and(f64::is_infinite);
                if matches!(tok, "NaN" | "Infinity" | "-Infinity") || overflow {
                    out.push_str(&text[copied..start]);
                    out.push('"');
                    out.push_str(tok);
                    out.push('"');
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(text.get(copied..).unwrap_or(""));
    out
}

/// The last object key before line `line`, column `col` (1-based) of `text`.
fn near_key(text: &str, line: usize, col: usize) -> Option<String> {
    let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let end = text.len().min(start + col);
    let before = text.get(..end)?;
    let colon = before.rfind("\":")?;
    let open = before[..colon].rfind('"')?;
    Some(before[open + 1..colon].to_string())
}
