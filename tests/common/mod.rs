//! Shared test set-up: a GPU with the validation layer on; every test ends by asserting that the
//! layer reported nothing.

#![allow(dead_code)]

use qwen3_omni_vk::vk_runtime::{Gpu, GpuOptions};
use qwen3_omni_vk::Kernels;

pub fn options() -> GpuOptions {
    GpuOptions { validation: true, pipeline_cache: None, ..GpuOptions::default() }
}

pub fn gpu() -> Gpu {
    Gpu::new(&options()).unwrap_or_else(|e| panic!("cannot open a Vulkan device with validation: {e}"))
}

/// The compute library with validation on. `QWEN3VK_TEST_SUBGROUP_SIZE=N|min|max` runs every
/// kernel with subgroup operations at a required subgroup size (tools/test.sh; the H200 runs).
pub fn kernels() -> Kernels {
    let g = gpu();
    let caps = g.caps();
    let sg = match std::env::var("QWEN3VK_TEST_SUBGROUP_SIZE").ok().as_deref().map(str::trim) {
        None | Some("") => None,
        Some("min") => Some(caps.min_subgroup_size),
        Some("max") => Some(caps.max_subgroup_size),
        Some(v) => Some(v.parse().unwrap_or_else(|_| panic!("QWEN3VK_TEST_SUBGROUP_SIZE={v}: expected N, min or max"))),
    };
    Kernels::with_options(g, qwen3_omni_vk::KernelOptions { subgroup_size: sg, ..Default::default() })
        .unwrap_or_else(|e| panic!("the compute library refuses this device: {e}"))
}

/// Fails the test if the validation layer reported any error or warning.
pub fn assert_clean(gpu: &Gpu) {
    let v = gpu.validation().expect("tests run with the validation layer");
    assert_eq!(v.total(), 0, "validation messages: {:#?}", v.first_messages());
}
pub mod moe_data;
