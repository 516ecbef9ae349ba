//! The Talker (spec §6): projections from Thinker space, the prompt of §6.2, the MoE decoder with a
//! shared expert and codec head, code-0 sampling, and the code predictor that fills the residual
//! code groups of each 80 ms frame. Config from the GGUF's metadata, a float32 CPU oracle, and the
//! GPU version.

mod config;
pub mod cpu;
pub mod gpu;
pub mod prompt;
mod weights;

pub use config::{DecoderConfig, TalkerConfig, TalkerIds};
pub use gpu::{GpuTalker, TalkerError, TalkerSampling};
pub use prompt::{plan, trailing, PromptError, Row, TalkerPlan, TextSide};
pub use weights::TalkerWeights;
