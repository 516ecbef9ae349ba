//! Qwen3-Omni model code for the qwen3-omni-vk engine.
//!
//! * [`tokenizer`]: the Qwen3 byte-level BPE tokenizer with Qwen3-Omni's added tokens, and a
//!   streaming detokenizer.
//! * [`chat`]: ChatML prompt rendering with audio placeholder expansion.
//! * [`model_file`]: the Q8_0 GGUF model file, with shape- and type-checked tensor lookups.
//! * [`thinker`]: the Thinker's config and its weights on the GPU.
//! * [`code2wav`]: the vocoder (codes → 24 kHz audio), CPU oracle, GPU version, WAV writer.
//! * [`capi`]: the C API over [`session`] (`include/qwen3_omni_vk.h`).
//! * [`session`]: the library-level engine: load a model, hold a multi-turn conversation, cancel.
//! * [`speech`]: speech out (Talker + code predictor + Code2Wav, streamed beside the Thinker).
//!
//! The command-line front end (`qwen3-omni-vk`, clap and anyhow) is the binary in
//! `src/bin/qwen3-omni-vk/`, not part of this library.

pub mod audio;
pub mod capi;
pub mod chat;
pub mod code2wav;
pub mod config_check;
pub mod memory_plan;
pub mod model_file;
pub mod session;
pub mod speech;
pub mod talker;
pub mod thinker;
pub mod tokenizer;

pub use chat::{audio_token_count, mel_frames, render, Item, Message, Prompt, Role};
pub use tokenizer::{SpecialIds, StreamDecoder, Tokenizer, TokenizerError};
