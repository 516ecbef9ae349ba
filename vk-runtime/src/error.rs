//! Errors of the runtime: each says what failed and which limit or setting to look at.

use ash::vk;

/// Everything the runtime can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no Vulkan loader could be opened ({0}); install the Vulkan loader \
         (Debian/Ubuntu: `apt-get install libvulkan1`) and a driver \
         (`mesa-vulkan-drivers` for lavapipe/RADV, or your GPU vendor's)"
    )]
    NoLoader(String),
    #[error(
        "the Vulkan loader found no device: no Vulkan driver is installed, or \
         VK_DRIVER_FILES / VK_ICD_FILENAMES point to none (Debian: `apt-get install mesa-vulkan-drivers`)"
    )]
    NoDevice,
    #[error("QWEN3VK_DEVICE / --device asks for device {index}, but only {count} Vulkan device(s) exist (list them with `qwen3-omni-vk devices`)")]
    DeviceIndex { index: usize, count: usize },
    #[error("no suitable Vulkan device: {0}")]
    Unsuitable(String),
    #[error(
        "the Khronos validation layer (VK_LAYER_KHRONOS_validation) was requested but is not installed \
         (Debian: `apt-get install vulkan-validationlayers`), or unset QWEN3VK_VALIDATION"
    )]
    NoValidationLayer,
    #[error("{call} failed: {result:?}")]
    Vk { call: &'static str, result: vk::Result },
    #[error("buffer '{name}': a size of 0 bytes was requested")]
    ZeroSize { name: String },
    #[error("buffer '{name}': {size} bytes exceed {limit} ({max} bytes)")]
    TooLarge { name: String, size: u64, limit: &'static str, max: u64 },
    #[error("buffer '{name}': allocating {size} bytes ({intent}) failed: {source}")]
    Alloc {
        name: String,
        size: u64,
        intent: &'static str,
        #[source]
        source: gpu_allocator::AllocationError,
    },
    #[error("buffer '{name}': range {offset}..{end} is outside its {size} bytes")]
    OutOfBounds { name: String, offset: u64, end: u64, size: u64 },
    #[error(
        "kernel '{kernel}', binding {binding}: buffer '{buffer}' bound with {range} bytes, \
         beyond maxStorageBufferRange ({max} bytes); bind a smaller range or split the tensor"
    )]
    BindingRange { kernel: String, binding: usize, buffer: String, range: u64, max: u64 },
    #[error(
        "kernel '{kernel}', binding {binding}: offset {offset} of buffer '{buffer}' is not a multiple of \
         minStorageBufferOffsetAlignment ({align})"
    )]
    BindingAlign { kernel: String, binding: usize, buffer: String, offset: u64, align: u64 },
    #[error(
        "kernel '{kernel}', binding {binding}: buffer '{buffer}' is bound as {declared:?}, but the shader \
         declares {reflected:?} ({why}); fix the launcher's Binding"
    )]
    BindingAccess {
        kernel: String,
        binding: usize,
        buffer: String,
        declared: crate::recorder::Access,
        reflected: crate::recorder::Access,
        why: &'static str,
    },
    #[error("kernel '{kernel}': {what}")]
    Kernel { kernel: String, what: String },
    #[error("the GPU did not finish a batch within {secs} s (last kernels: {last})")]
    Timeout { secs: u64, last: String },
    #[error("the Vulkan device was lost while running a batch (last kernels: {last})")]
    DeviceLost { last: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps a raw `VkResult` of `call` into an [`Error`].
pub(crate) fn vkerr(call: &'static str) -> impl Fn(vk::Result) -> Error {
    move |result| Error::Vk { call, result }
}
