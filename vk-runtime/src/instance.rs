//! The Vulkan instance: loader, validation layer with a counting debug messenger, device listing.

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ash::{ext, vk};

use crate::caps::Caps;
use crate::error::{vkerr, Error, Result};

const VALIDATION_LAYER: &CStr = c"VK_LAYER_KHRONOS_validation";

/// Counts of validation messages seen by the debug messenger; tests assert they stay zero.
#[derive(Debug, Default)]
pub struct ValidationStats {
    errors: AtomicU64,
    warnings: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl ValidationStats {
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::SeqCst)
    }
    pub fn warnings(&self) -> u64 {
        self.warnings.load(Ordering::SeqCst)
    }
    /// Total of errors and warnings.
    pub fn total(&self) -> u64 {
        self.errors() + self.warnings()
    }
    /// The first messages received (at most 16), for test failure output.
    pub fn first_messages(&self) -> Vec<String> {
        self.first.lock().map(|v| v.clone()).unwrap_or_default()
    }
    fn record(&self, error: bool, text: String) {
        if error {
            self.errors.fetch_add(1, Ordering::SeqCst);
        } else {
            self.warnings.fetch_add(1, Ordering::SeqCst);
        }
        if let Ok(mut v) = self.first.lock() {
            if v.len() < 16 {
                v.push(text);
            }
        }
    }
}

unsafe extern "system" fn debug_callback(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    user: *mut c_void,
) -> vk::Bool32 {
    // SAFETY: the loader passes a valid callback-data pointer for the duration of the call; the
    // user pointer is the `ValidationStats` kept alive by `Instance` until the messenger is destroyed.
    let (text, stats) = unsafe {
        let msg = if data.is_null() || (*data).p_message.is_null() {
            "(no message)".to_string()
        } else {
            CStr::from_ptr((*data).p_message).to_string_lossy().into_owned()
        };
        (msg, &*(user as *const ValidationStats))
    };
    if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR) {
        tracing::error!(target: "vulkan", "{text}");
        stats.record(true, text);
    } else if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::WARNING) {
        tracing::warn!(target: "vulkan", "{text}");
        stats.record(false, text);
    } else {
        tracing::debug!(target: "vulkan", "{text}");
    }
    vk::FALSE
}

/// Loader + instance + optional messenger. Destroyed last, after the device.
pub(crate) struct Instance {
    /// Keeps the loader library loaded for as long as the instance lives.
    #[allow(dead_code)]
    pub entry: ash::Entry,
    pub raw: ash::Instance,
    debug: Option<(ext::debug_utils::Instance, vk::DebugUtilsMessengerEXT)>,
    pub validation: Option<Arc<ValidationStats>>,
}

impl Instance {
    pub fn new(validation: bool) -> Result<Self> {
        // SAFETY: loading the system Vulkan loader library; no other Vulkan state exists yet.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| Error::NoLoader(e.to_string()))?;
        // SAFETY: plain query on a loaded entry.
        let layers = unsafe { entry.enumerate_instance_layer_properties() }
            .map_err(vkerr("vkEnumerateInstanceLayerProperties"))?;
        // SAFETY: as above.
        let exts = unsafe { entry.enumerate_instance_extension_properties(None) }
            .map_err(vkerr("vkEnumerateInstanceExtensionProperties"))?;
        let has_layer = layers.iter().any(|l| l.layer_name_as_c_str().map(|n| n == VALIDATION_LAYER).unwrap_or(false));
        let has_debug_utils =
            exts.iter().any(|e| e.extension_name_as_c_str().map(|n| n == ext::debug_utils::NAME).unwrap_or(false));
        if validation && !has_layer {
            return Err(Error::NoValidationLayer);
        }
        // SAFETY: plain query.
        let api = match unsafe { entry.try_enumerate_instance_version() } {
            Ok(Some(v)) => v,
            _ => vk::API_VERSION_1_0,
        };
        if api < vk::API_VERSION_1_3 {
            return Err(Error::Unsuitable(format!(
                "the Vulkan loader supports API {}.{} but 1.3 is needed; update libvulkan1",
                vk::api_version_major(api),
                vk::api_version_minor(api)
            )));
        }
        let app = vk::ApplicationInfo::default()
            .application_name(c"qwen3-omni-vk")
            .engine_name(c"vk-runtime")
            .api_version(vk::API_VERSION_1_3);
        let mut layer_names = Vec::new();
        let mut ext_names = Vec::new();
        let stats = validation.then(|| Arc::new(ValidationStats::default()));
        if validation {
            layer_names.push(VALIDATION_LAYER.as_ptr());
        }
        let use_debug = validation && has_debug_utils;
        if use_debug {
            ext_names.push(ext::debug_utils::NAME.as_ptr());
        }
        let user = stats.as_ref().map(|s| Arc::as_ptr(s) as *mut c_void).unwrap_or(std::ptr::null_mut());
        let mut messenger_info = vk::DebugUtilsMessengerCreateInfoEXT::default()
            .message_severity(
                vk::DebugUtilsMessageSeverityFlagsEXT::ERROR
                    | vk::DebugUtilsMessageSeverityFlagsEXT::WARNING
                    | vk::DebugUtilsMessageSeverityFlagsEXT::INFO,
            )
            .message_type(
                vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                    | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                    | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
            )
            .pfn_user_callback(Some(debug_callback))
            .user_data(user);
        let mut info = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_layer_names(&layer_names)
            .enabled_extension_names(&ext_names);
        if use_debug {
            // Also catches messages of vkCreateInstance / vkDestroyInstance themselves.
            info = info.push_next(&mut messenger_info);
        }
        // SAFETY: all pointers in `info` outlive the call.
        let raw = unsafe { entry.create_instance(&info, None) }.map_err(|r| match r {
            vk::Result::ERROR_INCOMPATIBLE_DRIVER => Error::NoDevice,
            r => Error::Vk { call: "vkCreateInstance", result: r },
        })?;
        let debug = if use_debug {
            let du = ext::debug_utils::Instance::new(&entry, &raw);
            // SAFETY: valid instance; `stats` outlives the messenger (destroyed in Drop first).
            match unsafe { du.create_debug_utils_messenger(&messenger_info, None) } {
                Ok(m) => Some((du, m)),
                Err(r) => {
                    // SAFETY: nothing else was created from this instance.
                    unsafe { raw.destroy_instance(None) };
                    return Err(Error::Vk { call: "vkCreateDebugUtilsMessengerEXT", result: r });
                }
            }
        } else {
            None
        };
        Ok(Self { entry, raw, debug, validation: stats })
    }

    pub fn physical_devices(&self) -> Result<Vec<vk::PhysicalDevice>> {
        // SAFETY: valid instance.
        let v = unsafe { self.raw.enumerate_physical_devices() }.map_err(|r| match r {
            vk::Result::ERROR_INITIALIZATION_FAILED => Error::NoDevice,
            r => Error::Vk { call: "vkEnumeratePhysicalDevices", result: r },
        })?;
        if v.is_empty() {
            return Err(Error::NoDevice);
        }
        Ok(v)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the device and every child object were destroyed before (Shared::drop).
        unsafe {
            if let Some((du, m)) = self.debug.take() {
                du.destroy_debug_utils_messenger(m, None);
            }
            self.raw.destroy_instance(None);
        }
    }
}

/// One Vulkan device as the loader reports it, with its capabilities.
#[derive(Debug, Clone)]
pub struct DeviceListing {
    pub index: usize,
    pub caps: Caps,
    /// Why it cannot be used, if it cannot.
    pub unsuitable: Option<String>,
}

/// Lists every Vulkan device and returns the index the runtime would choose given `explicit`
/// ([`GpuOptions::device`](crate::GpuOptions::device)).
pub fn list_devices(explicit: Option<usize>) -> Result<(Vec<DeviceListing>, Result<usize>)> {
    let inst = Instance::new(false)?;
    let list = enumerate(&inst)?;
    let choice = choose(&list, explicit);
    Ok((list, choice))
}

pub(crate) fn enumerate(inst: &Instance) -> Result<Vec<DeviceListing>> {
    let pds = inst.physical_devices()?;
    Ok(pds
        .into_iter()
        .enumerate()
        .map(|(index, pd)| {
            let caps = Caps::query(inst, pd);
            let unsuitable = caps.unsuitable_reason();
            DeviceListing { index, caps, unsuitable }
        })
        .collect())
}

/// Picks a device: the explicit index if given, else the best kind (discrete, integrated, virtual,
/// other, CPU) among suitable devices, the first of equals.
pub(crate) fn choose(list: &[DeviceListing], explicit: Option<usize>) -> Result<usize> {
    if let Some(i) = explicit {
        let d = list.get(i).ok_or(Error::DeviceIndex { index: i, count: list.len() })?;
        if let Some(why) = &d.unsuitable {
            return Err(Error::Unsuitable(format!("device {i} ({}): {why}", d.caps.name)));
        }
        return Ok(i);
    }
    list.iter()
        .filter(|d| d.unsuitable.is_none())
        .max_by_key(|d| (d.caps.kind.preference(), std::cmp::Reverse(d.index)))
        .map(|d| d.index)
        .ok_or_else(|| {
            let why: Vec<String> = list
                .iter()
                .map(|d| format!("device {} ({}): {}", d.index, d.caps.name, d.unsuitable.clone().unwrap_or_default()))
                .collect();
            Error::Unsuitable(why.join("; "))
        })
}
