//! GGUF reader/writer and the streaming safetensors → Q8_0 GGUF converter for Qwen3-Omni.
//!
//! See docs/quantizer.md for the file layout, the tensor type rules and every metadata key.

#![warn(unsafe_op_in_unsafe_fn)]
#![recursion_limit = "512"]
// `is_multiple_of` needs Rust 1.87; the workspace MSRV is 1.85.
#![allow(clippy::manual_is_multiple_of)]

pub mod codec;
pub mod config;
pub mod convert;
pub mod gguf;
pub mod metadata;
pub mod outfile;
pub mod pipeline;
pub mod rules;
pub mod safetensors;
pub mod synthetic;
