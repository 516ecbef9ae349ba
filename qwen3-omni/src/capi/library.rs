//! Library-wide calls: version, last error, status names, logging, the device list.

use std::ffi::{c_char, c_void};

use super::args::{copy_name, zero_out};
use super::error::{guard, invalid};
use super::log;
use super::registry::{self, CError};
use super::types::*;

/// The library version, e.g. "0.1.0" (static string).
///
/// # Safety
/// None: no arguments. The returned string is never freed.
#[no_mangle]
pub extern "C" fn qwen3_omni_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last failed call on this thread ("" after a successful one). Valid until
/// the next library call on this thread.
///
/// # Safety
/// None: no arguments. Do not free the returned string.
#[no_mangle]
pub extern "C" fn qwen3_omni_last_error() -> *const c_char {
    registry::last_error_ptr()
}

/// The name of a status code, e.g. "QWEN3_OMNI_ERR_BUSY" (static string).
///
/// # Safety
/// None: any value is accepted. Do not free the returned string.
#[no_mangle]
pub extern "C" fn qwen3_omni_status_string(status: qwen3_omni_status) -> *const c_char {
    let s: &'static str = match status {
        QWEN3_OMNI_OK => "QWEN3_OMNI_OK\0",
        QWEN3_OMNI_ERR_INVALID_ARGUMENT => "QWEN3_OMNI_ERR_INVALID_ARGUMENT\0",
        QWEN3_OMNI_ERR_INVALID_HANDLE => "QWEN3_OMNI_ERR_INVALID_HANDLE\0",
        QWEN3_OMNI_ERR_BUSY => "QWEN3_OMNI_ERR_BUSY\0",
        QWEN3_OMNI_ERR_NOT_AVAILABLE => "QWEN3_OMNI_ERR_NOT_AVAILABLE\0",
        QWEN3_OMNI_ERR_CANCELLED => "QWEN3_OMNI_ERR_CANCELLED\0",
        QWEN3_OMNI_ERR_MODEL => "QWEN3_OMNI_ERR_MODEL\0",
        QWEN3_OMNI_ERR_DEVICE => "QWEN3_OMNI_ERR_DEVICE\0",
        QWEN3_OMNI_ERR_CONTEXT_FULL => "QWEN3_OMNI_ERR_CONTEXT_FULL\0",
        QWEN3_OMNI_ERR_INTERNAL => "QWEN3_OMNI_ERR_INTERNAL\0",
        _ => "unknown status\0",
    };
    s.as_ptr().cast()
}

/// Sends the library's log lines at `max_level` (`QWEN3_OMNI_LOG_*`) and more severe to
/// `callback` (NULL: stop logging). Without a callback the library logs nothing. Fails with
/// `QWEN3_OMNI_ERR_NOT_AVAILABLE` when the process already has a Rust `tracing` subscriber.
///
/// # Safety
/// `callback`, if not NULL, must be safe to call from any thread with `user_data` until it is
/// replaced by another `qwen3_omni_log_set`.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_log_set(
    callback: qwen3_omni_log_callback,
    max_level: i32,
    user_data: *mut c_void,
) -> qwen3_omni_status {
    guard(|| {
        if !(QWEN3_OMNI_LOG_ERROR..=QWEN3_OMNI_LOG_DEBUG).contains(&max_level) && callback.is_some() {
            return Err(invalid(format!("log level {max_level} is not one of QWEN3_OMNI_LOG_*")));
        }
        log::set(callback, max_level, user_data).map_err(|e| CError::new(QWEN3_OMNI_ERR_NOT_AVAILABLE, e))
    })
}

/// Lists the Vulkan devices: writes up to `capacity` entries to `devices` (may be NULL when
/// `capacity` is 0), the number of devices to `*n_devices`, and the index the library would
/// choose (-1: none suitable) to `*default_device` (may be NULL). Entries past the count are
/// zeroed; on failure all `capacity` entries are zeroed, `*n_devices` is 0 and `*default_device`
/// -1.
///
/// # Safety
/// `devices` is NULL or valid for writing `capacity` entries; `n_devices` is valid for writing;
/// `default_device` is NULL or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_device_list(
    devices: *mut qwen3_omni_device_info,
    capacity: usize,
    n_devices: *mut usize,
    default_device: *mut i32,
) -> qwen3_omni_status {
    guard(|| {
        // Written first, so that every return leaves them set.
        // SAFETY: each is NULL or writable (for `capacity` entries) by contract.
        unsafe {
            zero_out(n_devices, 1);
            zero_out(devices, capacity);
            if !default_device.is_null() {
                default_device.write_unaligned(-1);
            }
        }
        if devices.is_null() && capacity > 0 {
            return Err(invalid("devices is NULL but capacity is not 0"));
        }
        if n_devices.is_null() {
            return Err(invalid("n_devices is NULL"));
        }
        let engine = qwen3_omni_vk::EngineOptions::from_env().map_err(|e| invalid(e.to_string()))?;
        let (list, choice) = qwen3_omni_vk::vk_runtime::list_devices(engine.gpu.device)
            .map_err(|e| CError::new(QWEN3_OMNI_ERR_DEVICE, e.to_string()))?;
        for (i, d) in list.iter().take(capacity).enumerate() {
            let c = &d.caps;
            let mut info = qwen3_omni_device_info {
                index: d.index as i32,
                name: [0; QWEN3_OMNI_NAME_MAX],
                kind: match c.kind {
                    qwen3_omni_vk::vk_runtime::DeviceKind::Discrete => QWEN3_OMNI_DEVICE_DISCRETE,
                    qwen3_omni_vk::vk_runtime::DeviceKind::Integrated => QWEN3_OMNI_DEVICE_INTEGRATED,
                    qwen3_omni_vk::vk_runtime::DeviceKind::Virtual => QWEN3_OMNI_DEVICE_VIRTUAL,
                    qwen3_omni_vk::vk_runtime::DeviceKind::Cpu => QWEN3_OMNI_DEVICE_CPU,
                    qwen3_omni_vk::vk_runtime::DeviceKind::Other => QWEN3_OMNI_DEVICE_OTHER,
                },
                suitable: d.unsuitable.is_none(),
                device_local_bytes: c.heaps.iter().filter(|h| h.device_local).map(|h| h.size).max().unwrap_or(0),
                subgroup_size: c.subgroup_size,
                int_dot: c.int_dot,
            };
            copy_name(&mut info.name, &c.name);
            // SAFETY: i < capacity and `devices` holds `capacity` entries (caller's contract).
            unsafe { devices.add(i).write_unaligned(info) };
        }
        // SAFETY: checked non-NULL above; writable by contract.
        unsafe { n_devices.write_unaligned(list.len()) };
        if !default_device.is_null() {
            // SAFETY: non-NULL, writable by contract.
            unsafe { default_device.write_unaligned(choice.map(|i| i as i32).unwrap_or(-1)) };
        }
        Ok(())
    })
}
