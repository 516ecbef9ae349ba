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
