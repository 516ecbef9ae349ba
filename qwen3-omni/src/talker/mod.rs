//! The Talker (spec §6): projections from Thinker space, the prompt of §6.2, the MoE decoder with a
//! shared expert and codec head, code-0 sampling, and the code predictor that fills the residual
//! code groups of each 80 ms frame. Config from the GGUF's metadata, a float32 CPU oracle
//! ([`cpu::CpuTalker`]), and the GPU version ([`GpuTalker`]).
//!
//! Speaking a Thinker reply (streaming: push each new token as the Thinker produces it):
//!
//! ```no_run
//! # use qwen3_omni::model_file::ModelFile;
//! # use qwen3_omni::talker::{GpuTalker, TalkerSampling};
//! # fn f(m: &ModelFile, k: qwen3_omni_vk::Kernels, prompt_ids: &[u32], hs_accept: &[f32],
//! #      reply: &[u32]) -> Result<(), qwen3_omni::talker::TalkerError> {
//! // prompt_ids: the Thinker's prompt (ending `<|im_start|>assistant\n`); hs_accept: its hidden
//! // states after `accept_layer` layers for those positions (GpuThinker::hidden_states);
//! // reply: the Thinker's tokens before <|im_end|>.
//! let mut t = GpuTalker::load(k, m, 4096, |_, _| {})?;
//! t.set_sampling(TalkerSampling::sampled(42)); // or TalkerSampling::greedy()
//! t.start_from_thinker(m, prompt_ids, hs_accept, reply[0], "ethan")?;
//! t.push_tokens(m, &reply[1..])?; // may also come one by one, interleaved with frames
//! t.finish_text(); // then tts_eos, then tts_pad
//! t.run_frames(usize::MAX, |codes| {
//!     // codes: `groups` (16) codes of one 80 ms frame, code 0 first → Code2Wav
//!     true
//! })?; // returns at codec EOS, or when the next step's text is not pushed yet (t.ready())
//! # Ok(()) }
//! ```

mod config;
pub mod cpu;
pub mod gpu;
pub mod prompt;
mod weights;

pub use config::{DecoderConfig, TalkerConfig, TalkerIds};
pub use gpu::{BenchParts, GpuTalker, TalkerError, TalkerSampling};
pub use prompt::{plan, trailing, PromptError, Row, TalkerPlan, TextSide};
pub use weights::TalkerWeights;
