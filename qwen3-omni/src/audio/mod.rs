//! Audio in (spec §4): WAV → 16 kHz mono → Whisper log-mel → AudioTower → Thinker embeddings.

pub mod config;
pub mod cpu;
pub mod gpu;
pub mod mel;
#[cfg(feature = "mic")]
pub mod mic;
pub mod wav;

pub use config::{AudioConfig, ChunkPlan};
pub use mel::{LogMel, MelExtractor};
pub use wav::{load_wav, Audio16k, AudioError, LoadOptions, Resampler};
