//! The logical device: queue, allocator, pipeline cache, live-allocation registry, teardown.

use std::collections::BTreeMap;
use std::mem::ManuallyDrop;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ash::{khr, vk};
use gpu_allocator::vulkan::{Allocator, AllocatorCreateDesc};

use crate::caps::Caps;
use crate::error::{vkerr, Error, Result};
use crate::instance::{self, Instance, ValidationStats};
use crate::memplan::MemoryTable;

/// How to open the GPU. `Default`: no validation, the best suitable device, no on-disk pipeline
/// cache, push descriptors and direct uploads where the device has them. (The compute library's
/// `EngineOptions` fills these from the CLI, the C API and the `QWEN3VK_*` overrides.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuOptions {
    pub validation: bool,
    pub device: Option<usize>,
    /// `None`: no on-disk pipeline cache.
    pub pipeline_cache: Option<PathBuf>,
    /// Bind through pooled descriptor sets even where push descriptors exist.
    pub no_push_descriptors: bool,
    /// Upload weights through staging buffers even on UMA / full-BAR devices.
    pub force_staging: bool,
    /// Enable VK_KHR_shader_clock where the device has it (timing marks of the `_clk` kernels).
    pub clocks: bool,
    /// Every barrier also names the transfer stage (for comparisons); [`Gpu::set_full_barriers`]
    /// changes it later.
    pub full_barriers: bool,
}

/// A buffer still alive, as the registry knows it.
#[derive(Debug, Clone)]
pub struct LiveAllocation {
    pub name: String,
    pub size: u64,
    pub intent: &'static str,
    /// The heap it was placed on (as planned, else gpu-allocator's preference for its use).
    pub heap: Option<u32>,
}

pub(crate) struct Shared {
    pub instance: ManuallyDrop<Instance>,
    pub device: ash::Device,
    pub queue: Mutex<vk::Queue>,
    pub queue_family: u32,
    pub allocator: ManuallyDrop<Mutex<Allocator>>,
    pub push_desc: Option<khr::push_descriptor::Device>,
    pub caps: Caps,
    pub pipeline_cache: vk::PipelineCache,
    cache_file: Option<PathBuf>,
    pub live: Mutex<BTreeMap<u64, LiveAllocation>>,
    next_id: AtomicU64,
    pub force_staging: bool,
    pub full_barriers: std::sync::atomic::AtomicBool,
    pub physical: vk::PhysicalDevice,
    /// Buffer name → memory type, from a memory plan ([`Gpu::set_placements`]).
    pub placements: Mutex<std::collections::HashMap<String, u32>>,
}

impl Shared {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// An open GPU. Cheap to clone (shared handle); the device is destroyed when the last clone and the
/// last buffer or pipeline made from it are gone.
#[derive(Clone)]
pub struct Gpu {
    pub(crate) shared: Arc<Shared>,
}

impl Gpu {
    /// Opens the device chosen by `opts.device`, else the best suitable one.
    pub fn new(opts: &GpuOptions) -> Result<Gpu> {
        let inst = Instance::new(opts.validation)?;
        let list = instance::enumerate(&inst)?;
        let index = instance::choose(&list, opts.device)?;
        let caps = list[index].caps.clone();
        let pds = inst.physical_devices()?;
        let physical = pds[index];
        let queue_family = caps.queue_family.ok_or_else(|| Error::Unsuitable("no compute queue".into()))?;

        let prio = [1.0f32];
        let qinfo = [vk::DeviceQueueCreateInfo::default().queue_family_index(queue_family).queue_priorities(&prio)];
        let use_push = caps.push_descriptor && !opts.no_push_descriptors;
        let mut exts = Vec::new();
        if use_push {
            exts.push(khr::push_descriptor::NAME.as_ptr());
        }
        if caps.memory_budget {
            exts.push(ash::ext::memory_budget::NAME.as_ptr());
        }
        // Timing marks in the `_clk` kernel variants (benchmarks only).
        let clock = caps.shader_clock && opts.clocks;
        if clock {
            exts.push(khr::shader_clock::NAME.as_ptr());
        }
        let mut fclock = vk::PhysicalDeviceShaderClockFeaturesKHR::default().shader_device_clock(true);
        let features = vk::PhysicalDeviceFeatures::default().shader_int16(true);
        let mut f11 = vk::PhysicalDeviceVulkan11Features::default().storage_buffer16_bit_access(true);
        let mut f12 = vk::PhysicalDeviceVulkan12Features::default()
            .storage_buffer8_bit_access(true)
            .shader_int8(true)
            .shader_float16(true);
        let mut f13 = vk::PhysicalDeviceVulkan13Features::default()
            .shader_integer_dot_product(caps.int_dot)
            .subgroup_size_control(caps.subgroup_size_control)
            .compute_full_subgroups(caps.compute_full_subgroups);
        let dinfo = vk::DeviceCreateInfo::default()
            .queue_create_infos(&qinfo)
            .enabled_extension_names(&exts)
            .enabled_features(&features)
            .push_next(&mut f11)
            .push_next(&mut f12)
            .push_next(&mut f13);
        let dinfo = if clock { dinfo.push_next(&mut fclock) } else { dinfo };
        // SAFETY: `physical` belongs to `inst`; every pointer in `dinfo` outlives the call.
        let device = unsafe { inst.raw.create_device(physical, &dinfo, None) }.map_err(vkerr("vkCreateDevice"))?;
        // SAFETY: family and index 0 were requested above.
        let queue = unsafe { device.get_device_queue(queue_family, 0) };
        let allocator = Allocator::new(&AllocatorCreateDesc {
            instance: inst.raw.clone(),
            device: device.clone(),
            physical_device: physical,
            debug_settings: Default::default(),
            buffer_device_address: false,
            allocation_sizes: Default::default(),
        })
        .map_err(|e| {
            // SAFETY: nothing was created from the device yet.
            unsafe { device.destroy_device(None) };
            Error::Unsuitable(format!("gpu-allocator: {e}"))
        })?;
        let push_desc = use_push.then(|| khr::push_descriptor::Device::new(&inst.raw, &device));

        let cache_file = opts.pipeline_cache.as_ref().map(|dir| {
            dir.join(format!("pipelines-{:04x}-{:04x}-{:08x}.bin", caps.vendor_id, caps.device_id, caps.driver_version))
        });
        let initial = cache_file.as_ref().and_then(|p| std::fs::read(p).ok()).filter(|d| cache_header_ok(d, &caps));
        let cinfo = vk::PipelineCacheCreateInfo::default().initial_data(initial.as_deref().unwrap_or(&[]));
        // SAFETY: valid device; data (if any) passed the header check, drivers validate the rest.
        let pipeline_cache = unsafe { device.create_pipeline_cache(&cinfo, None) }
            .or_else(|_| {
                // SAFETY: as above, with no initial data.
                unsafe { device.create_pipeline_cache(&vk::PipelineCacheCreateInfo::default(), None) }
            })
            .map_err(vkerr("vkCreatePipelineCache"))?;
        tracing::info!(
            device = %caps.name,
            index,
            validation = opts.validation,
            push_descriptors = use_push,
            "Vulkan device opened"
        );
        Ok(Gpu {
            shared: Arc::new(Shared {
                instance: ManuallyDrop::new(inst),
                device,
                queue: Mutex::new(queue),
                queue_family,
                allocator: ManuallyDrop::new(Mutex::new(allocator)),
                push_desc,
                caps,
                pipeline_cache,
                cache_file,
                live: Mutex::new(BTreeMap::new()),
                next_id: AtomicU64::new(1),
                force_staging: opts.force_staging,
                full_barriers: std::sync::atomic::AtomicBool::new(opts.full_barriers),
                physical,
                placements: Mutex::new(Default::default()),
            }),
        })
    }

    pub fn caps(&self) -> &Caps {
        &self.shared.caps
    }

    /// Validation message counts, when the layer is on.
    pub fn validation(&self) -> Option<&ValidationStats> {
        self.shared.instance.validation.as_deref()
    }

    /// Whether recorders started from now on make every barrier also wait on transfers
    /// ([`GpuOptions::full_barriers`]; comparisons).
    pub fn set_full_barriers(&self, on: bool) {
        self.shared.full_barriers.store(on, Ordering::Relaxed);
    }

    /// Whether dispatches bind through push descriptors (else pooled descriptor sets).
    pub fn uses_push_descriptors(&self) -> bool {
        self.shared.push_desc.is_some()
    }

    /// The device's memory as it is now: heaps, types and limits, with budgets and usage read
    /// again (vkGetPhysicalDeviceMemoryProperties2 with VK_EXT_memory_budget where the device has
    /// it; without it, usage is what this process placed per heap).
    pub fn memory_table(&self) -> MemoryTable {
        let s = &self.shared;
        let mut t = MemoryTable::from_caps(&s.caps);
        if s.caps.memory_budget {
            let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
            let mut mem2 = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
            // SAFETY: the physical device belongs to this instance; `budget` outlives the call.
            unsafe { s.instance.raw.get_physical_device_memory_properties2(s.physical, &mut mem2) };
            for (i, h) in t.heaps.iter_mut().enumerate() {
                h.budget = Some(budget.heap_budget[i]);
                h.usage = Some(budget.heap_usage[i]);
            }
        } else {
            for (i, h) in t.heaps.iter_mut().enumerate() {
                let own: u64 =
                    self.live_allocations().iter().filter(|a| a.heap == Some(i as u32)).map(|a| a.size).sum();
                h.usage = Some(own);
            }
        }
        t
    }

    /// From now on, buffers named in `map` are allocated in the given memory type (a memory
    /// plan's [`Plan::placement_map`](crate::Plan::placement_map)); other names keep the
    /// intent's default. Replaces earlier placements with the same names.
    pub fn set_placements(&self, map: std::collections::HashMap<String, u32>) {
        if let Ok(mut p) = self.shared.placements.lock() {
            p.extend(map);
        }
    }

    /// Buffers currently alive.
    pub fn live_allocations(&self) -> Vec<LiveAllocation> {
        self.shared.live.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// The raw ash device, for tests that must make deliberately wrong calls.
    pub fn raw_device(&self) -> &ash::Device {
        &self.shared.device
    }

    /// Waits until the queue is idle.
    pub fn wait_idle(&self) -> Result<()> {
        let q = self.shared.queue.lock().map_err(|_| Error::Unsuitable("queue lock poisoned".into()))?;
        // SAFETY: the queue is externally synchronised by the mutex.
        unsafe { self.shared.device.queue_wait_idle(*q) }.map_err(vkerr("vkQueueWaitIdle"))
    }

    /// Writes the pipeline cache to disk now (it is also written at teardown).
    pub fn save_pipeline_cache(&self) {
        self.shared.save_cache();
    }
}

fn cache_header_ok(d: &[u8], caps: &Caps) -> bool {
    // VkPipelineCacheHeaderVersionOne: length, version, vendor, device, uuid[16].
    if d.len() < 32 {
        return false;
    }
    let word = |i: usize| u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
    word(4) == 1 && word(8) == caps.vendor_id && word(12) == caps.device_id && d[16..32] == caps.pipeline_cache_uuid
}

impl Shared {
    fn save_cache(&self) {
        let Some(path) = &self.cache_file else { return };
        // SAFETY: valid device and cache.
        let data = match unsafe { self.device.get_pipeline_cache_data(self.pipeline_cache) } {
            Ok(d) if !d.is_empty() => d,
            _ => return,
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &data)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::warn!("could not save the pipeline cache to {}: {e}", path.display());
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: last owner; nothing else uses the device now. Children are destroyed in reverse
        // creation order: cache, allocator (after its blocks are freed), device, instance.
        unsafe {
            let _ = self.device.device_wait_idle();
            self.save_cache();
            self.device.destroy_pipeline_cache(self.pipeline_cache, None);
            if let Ok(live) = self.live.lock() {
                for a in live.values() {
                    tracing::warn!(name = %a.name, size = a.size, "GPU allocation leaked at device teardown");
                }
            }
            ManuallyDrop::drop(&mut self.allocator);
            self.device.destroy_device(None);
            ManuallyDrop::drop(&mut self.instance);
        }
    }
}
