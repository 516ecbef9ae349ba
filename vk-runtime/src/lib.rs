//! `vk-runtime`: a small Vulkan compute runtime on ash.
//!
//! It knows nothing of shaders or models: it opens a device (with the Khronos validation layer when
//! asked), gathers its capabilities once ([`Caps`]), places memory by intent ([`MemoryIntent`]),
//! builds compute pipelines from SPIR-V words, and records many dispatches into one command buffer
//! with barriers only on real hazards ([`Recorder`]), optionally timing each dispatch.
//!
//! Environment: `QWEN3VK_VALIDATION=1` turns the validation layer on, `QWEN3VK_DEVICE=N` picks a
//! device, `QWEN3VK_PIPELINE_CACHE=PATH|off` sets the on-disk pipeline cache,
//! `QWEN3VK_NO_PUSH_DESCRIPTOR=1` forces pooled descriptor sets, `QWEN3VK_FORCE_STAGING=1` forces
//! staging uploads even on UMA / full-BAR devices.
#![warn(unsafe_op_in_unsafe_fn)]

mod buffer;
mod caps;
mod device;
mod error;
mod instance;
mod pipeline;
mod recorder;

pub use ash::vk;
pub use buffer::{Buffer, MemoryIntent};
pub use caps::{Caps, DeviceKind, HeapInfo};
pub use device::{Gpu, GpuOptions, LiveAllocation};
pub use error::{Error, Result};
pub use instance::{list_devices, DeviceListing, ValidationStats};
pub use pipeline::{KernelSource, Pipeline, SpecConst};
pub use recorder::{Access, Batch, Binding, KernelTime, Profile, Recorder};

/// Reads a boolean environment switch: set and not `0`/`false`/`off`/empty.
pub fn env_flag(name: &str) -> bool {
    match std::env::var(name) {
        Ok(v) => !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false" | "off" | "no"),
        Err(_) => false,
    }
}
