//! The Thinker: Qwen3-MoE text decoder (spec §5). Config from the GGUF's metadata, weights placed
//! on the GPU by the runtime's memory intents.

mod config;
pub mod cpu;
pub mod gpu;
pub(crate) mod weights;

pub use config::ThinkerConfig;
pub use weights::{expert_stride, LayerWeights, ThinkerWeights};
