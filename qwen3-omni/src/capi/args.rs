//! Reading the arguments of a C call: borrowed strings, params structs, output pointers, the
//! fixed name buffers of the info structs.

use std::ffi::{c_char, CStr};

use super::error::invalid;
use super::registry::CResult;
use super::types::*;

/// A borrowed UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
pub(super) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> CResult<&'a str> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// A params struct: its first field is `struct_size: u32`, which must be `size_of::<Self>()`.
pub(super) trait Params: Copy {
    /// The C type's name, for messages.
    const NAME: &'static str;
}

impl Params for qwen3_omni_model_params {
    const NAME: &'static str = "qwen3_omni_model_params";
}
impl Params for qwen3_omni_sampling_params {
    const NAME: &'static str = "qwen3_omni_sampling_params";
}
impl Params for qwen3_omni_session_params {
    const NAME: &'static str = "qwen3_omni_session_params";
}
impl Params for qwen3_omni_generate_params {
    const NAME: &'static str = "qwen3_omni_generate_params";
}

/// `size_of::<T>()` as the `struct_size` of a params struct.
pub(super) fn struct_size<T: Params>() -> u32 {
    std::mem::size_of::<T>() as u32
}

/// Refuses a `struct_size` other than this library's `sizeof(T)`: `field` names where it was
/// found (`qwen3_omni_session_params.sampling`, say). A smaller size is a program built against an
/// older header, a larger one against a newer header (or a struct never filled in); neither
/// layout is known here, so neither is read.
pub(super) fn check_size<T: Params>(size: u32, field: &str) -> CResult<()> {
    let known = struct_size::<T>();
    if size == known {
        return Ok(());
    }
    let why = if size == 0 {
        "0: the struct was not made by its *_default_params() function"
    } else if size < known {
        "smaller: the program was built against an older qwen3_omni_vk.h, or the field was not set"
    } else {
        "larger: the program was built against a newer qwen3_omni_vk.h, or the field was not set"
    };
    Err(invalid(format!(
        "{field}.struct_size is {size}, but {} is {known} bytes in this library ({why}); \
         start from the *_default_params() function of the header this library ships",
        T::NAME
    )))
}

/// Reads a params struct: its `struct_size` first (4 bytes, so a smaller struct from an older
/// header is never read past its end), then, when that is this library's size, the rest.
///
/// # Safety
/// `p` is NULL or valid for reading 4 bytes, and for `struct_size` bytes.
pub(super) unsafe fn read_params<T: Params>(p: *const T, what: &str) -> CResult<T> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL; every params struct starts with its u32 size (caller's contract).
    let size = unsafe { p.cast::<u32>().read_unaligned() };
    check_size::<T>(size, T::NAME)?;
    // SAFETY: the caller's struct is `size` bytes, which is `size_of::<T>()`.
    Ok(unsafe { p.read_unaligned() })
}

/// Zeroes an output struct or value (a failed call leaves no stale or uninitialised bytes).
///
/// # Safety
/// `p` is NULL or valid for writing `n` values of `T`, and all-zero bytes are a valid `T`.
pub(super) unsafe fn zero_out<T>(p: *mut T, n: usize) {
    if !p.is_null() {
        // SAFETY: writable by the caller's contract; bytes have no alignment requirement.
        unsafe { p.cast::<u8>().write_bytes(0, n * std::mem::size_of::<T>()) };
    }
}

/// # Safety
/// `p` is NULL or valid for writing one `T`.
pub(super) unsafe fn write_out<T>(p: *mut T, v: T, what: &str) -> CResult<()> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and writable by the caller's contract.
    unsafe { p.write_unaligned(v) };
    Ok(())
}

pub(super) fn copy_name(dst: &mut [c_char; QWEN3_OMNI_NAME_MAX], s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(QWEN3_OMNI_NAME_MAX - 1);
    for (d, &c) in dst.iter_mut().zip(&b[..n]) {
        *d = c as c_char;
    }
    dst[n] = 0;
}
