//! Reading the arguments of a C call: borrowed strings, params structs, output pointers, the
//! fixed name buffers of the info structs.

use std::ffi::{c_char, CStr};

use super::error::invalid;
use super::registry::CResult;
use super::types::QWEN3_OMNI_NAME_MAX;

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

/// # Safety
/// `p` is NULL or valid for reading one `T`.
pub(super) unsafe fn read_arg<T: Copy>(p: *const T, what: &str) -> CResult<T> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and valid by the caller's contract; read_unaligned tolerates packing.
    Ok(unsafe { p.read_unaligned() })
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
