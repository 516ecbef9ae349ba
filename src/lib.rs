//! `qwen3-omni-vk`: the compute library. Owns the GLSL kernels (compiled to SPIR-V by build.rs) and
//! one typed launcher per kernel family; picks variants from the device's capabilities.
//!
//! ```no_run
//! use qwen3_omni_vk::{Kernels, vk_runtime::{Gpu, GpuOptions, MemoryIntent}};
//! let k = Kernels::new(Gpu::new(&GpuOptions::default())?);
//! let x = k.gpu().buffer_from("x", &[1.0f32; 256], MemoryIntent::Upload)?;
//! # Ok::<(), qwen3_omni_vk::Error>(())
//! ```
#![warn(unsafe_op_in_unsafe_fn)]

pub mod kernels;
pub mod layout;
mod ops;
pub mod options;
pub mod reference;
pub mod selftest;
pub mod subgroups;

pub use kernels::{KernelInfo, KernelOptions, Kernels, LocalSize, MatvecPath, Q8_1Scratch, SubgroupUse, TuningOptions};
pub use ops::code2wav::{
    repack_conv, repack_trans_conv, AttnWindow, ConvEpilogue, ConvIo, ConvShape, ConvWeights, DwConv, LayerNorm,
    RopeSpan, SnakeBeta,
};
pub use ops::sample::{sample_mix32, sample_uniform, DecodeAdvance, SampleArgs, SampleParams, Suppress, SAMPLE_MAX_K};
pub use ops::{
    router_fold_matrix, AttnBidirWindow, AttnDecode, AttnDecodeAt, AttnDecodeFused, AttnPrefill, Conv2dShape, HeadOut,
    Heads, KvAppend, KvCache, KvStore, KvWrite, Matrix, MatvecHead, MoeDown, MoeDownGrouped, MoeGateUp,
    MoeGateUpGrouped, MoeRoute, MoeRouteGateUp, MoeSharedGate, QkNormRope, Rope, RopeRows, RouterFold, WType,
    ATTN_WINDOW_MAX, ATTN_WINDOW_MAX_HEAD_DIM, DOWN_KSPLIT, MOE_MAX_K, MOE_ROUTE_MAX_EXPERTS,
};
pub use options::{AudioOptions, CacheType, EngineOptions, ModelOptions, OptionsError, TalkerOptions, ThinkerOptions};
pub use vk_runtime;
pub use vk_runtime::{Error, Result};
