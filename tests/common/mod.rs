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

pub fn kernels() -> Kernels {
    Kernels::new(gpu())
}

/// Fails the test if the validation layer reported any error or warning.
pub fn assert_clean(gpu: &Gpu) {
    let v = gpu.validation().expect("tests run with the validation layer");
    assert_eq!(v.total(), 0, "validation messages: {:#?}", v.first_messages());
}
