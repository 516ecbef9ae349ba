//! `vk-runtime`: a small Vulkan compute runtime on ash.
//!
//! It knows nothing of shaders or models: it opens a device (with the Khronos validation layer when
//! asked), gathers its capabilities once ([`Caps`]), places memory by intent ([`MemoryIntent`]),
//! builds compute pipelines from SPIR-V words, and records many dispatches into one command buffer
//! with barriers only on real hazards ([`Recorder`]), optionally timing each dispatch.
//!
//! It reads no environment: every choice comes in [`GpuOptions`].
#![warn(unsafe_op_in_unsafe_fn)]

mod buffer;
mod caps;
mod device;
mod error;
mod instance;
mod memplan;
mod pipeline;
mod recorder;

pub use ash::vk;
pub use buffer::{Buffer, MemoryIntent};
pub use caps::{Caps, DeviceKind, HeapInfo};
pub use device::{Gpu, GpuOptions, LiveAllocation};
pub use error::{Error, Result};
pub use instance::{list_devices, DeviceListing, ValidationStats};
pub use memplan::{
    plan, HeapDesc, HeapUse, LimitViolation, MemoryTable, Placement, Plan, PlanError, Request, Shortfall, STAGING_PIECE,
};
pub use pipeline::{KernelSource, Pipeline, SpecConst};
pub use recorder::{Access, Batch, Binding, KernelTime, Profile, Recorder};
