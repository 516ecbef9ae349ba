//! Code2Wav: the vocoder turning 16 codes per 80 ms frame into 24 kHz audio (spec §7). Config
//! from the GGUF's metadata, weights checked by name, shape and type, a float32 CPU oracle
//! (streaming, so a full decode and any chunking of it agree), the GPU version and a WAV writer.

mod config;
pub mod cpu;
pub mod gpu;
pub mod wav;
mod weights;

pub use config::Code2WavConfig;
pub use gpu::{GpuCode2Wav as Code2Wav, Streamer};

/// transformers' `chunked_decode` defaults as `generate` uses them (spec §7.6).
pub const HF_CHUNK_FRAMES: usize = 300;
pub const HF_LEFT_CONTEXT: usize = 25;
pub use weights::{Block, Code2WavWeights, PreLayer, ResUnit, Snake, Upsample, CONV_K, DILATIONS};

/// What can go wrong decoding codes.
#[derive(Debug, thiserror::Error)]
pub enum Code2WavError {
    #[error("{len} codes do not make whole frames of {groups} code groups")]
    Ragged { len: usize, groups: u32 },
    #[error("frame {frame}, code group {group}: code {code} is outside the codebook (0..{size})")]
    BadCode { frame: usize, group: usize, code: u32, size: u32 },
    #[error(transparent)]
    Model(#[from] crate::model_file::ModelError),
    #[error(transparent)]
    Gpu(#[from] qwen3_omni_vk::Error),
}

/// Checks that `codes` is whole `[T, num_quantizers]` frames of in-range codes.
pub fn check_codes(c: &Code2WavConfig, codes: &[u32]) -> Result<(), Code2WavError> {
    let q = c.num_quantizers as usize;
    if !codes.len().is_multiple_of(q) {
        return Err(Code2WavError::Ragged { len: codes.len(), groups: c.num_quantizers });
    }
    for (i, &code) in codes.iter().enumerate() {
        if code >= c.codebook_size {
            return Err(Code2WavError::BadCode { frame: i / q, group: i % q, code, size: c.codebook_size });
        }
    }
    Ok(())
}

/// A malformed line of a codes file (see [`parse_codes`]).
#[derive(Debug, thiserror::Error)]
pub enum CodesFileError {
    #[error("line {line}: {text:?} is not a code")]
    NotACode { line: usize, text: String, source: std::num::ParseIntError },
    #[error("line {line}: {got} codes, expected {groups} (one frame per line)")]
    WrongCount { line: usize, got: usize, groups: usize },
}

/// Parses a codes file into `[T, groups]` codes: one frame of `groups` integers per line,
/// separated by spaces or commas; `#` starts a comment (`qwen3-omni-vk code2wav --codes`).
pub fn parse_codes(text: &str, groups: usize) -> Result<Vec<u32>, CodesFileError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let v: Vec<u32> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u32>().map_err(|source| CodesFileError::NotACode { line: i + 1, text: s.to_string(), source })
            })
            .collect::<Result<_, _>>()?;
        if v.len() != groups {
            return Err(CodesFileError::WrongCount { line: i + 1, got: v.len(), groups });
        }
        out.extend(v);
    }
    Ok(out)
}
