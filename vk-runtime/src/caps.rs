//! Device capabilities, read once: what kernels may use and which variant is fastest.

use std::fmt;

use ash::{ext, khr, vk};

use crate::instance::Instance;

/// The kind of a Vulkan device, with the runtime's preference order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Discrete,
    Integrated,
    Virtual,
    Cpu,
    Other,
}

impl DeviceKind {
    /// GPUs before CPU implementations (lavapipe).
    pub fn preference(self) -> u8 {
        match self {
            DeviceKind::Discrete => 4,
            DeviceKind::Integrated => 3,
            DeviceKind::Virtual => 2,
            DeviceKind::Other => 1,
            DeviceKind::Cpu => 0,
        }
    }
    fn from_vk(t: vk::PhysicalDeviceType) -> Self {
        match t {
            vk::PhysicalDeviceType::DISCRETE_GPU => DeviceKind::Discrete,
            vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceKind::Integrated,
            vk::PhysicalDeviceType::VIRTUAL_GPU => DeviceKind::Virtual,
            vk::PhysicalDeviceType::CPU => DeviceKind::Cpu,
            _ => DeviceKind::Other,
        }
    }
}

/// One memory heap, with the budget where VK_EXT_memory_budget reports it.
#[derive(Debug, Clone)]
pub struct HeapInfo {
    pub size: u64,
    pub device_local: bool,
    pub budget: Option<u64>,
    pub usage: Option<u64>,
}

/// What the device can do, gathered once.
#[derive(Debug, Clone)]
pub struct Caps {
    pub name: String,
    pub kind: DeviceKind,
    pub vendor_id: u32,
    pub device_id: u32,
    pub driver_name: String,
    pub driver_info: String,
    pub driver_version: u32,
    pub api_version: u32,
    pub pipeline_cache_uuid: [u8; 16],

    pub int8: bool,
    pub int16: bool,
    pub float16: bool,
    pub storage_8bit: bool,
    pub storage_16bit: bool,
    /// `shaderIntegerDotProduct` (GL_EXT_integer_dot_product works).
    pub int_dot: bool,
    /// 4×8-bit packed signed dot product is hardware accelerated.
    pub int_dot_accelerated: bool,

    pub subgroup_size: u32,
    pub min_subgroup_size: u32,
    pub max_subgroup_size: u32,
    pub subgroup_size_control: bool,
    pub compute_full_subgroups: bool,
    /// `maxComputeWorkgroupSubgroups` (VK 1.3; 0 when unknown): a required subgroup size R needs
    /// a workgroup of at most R × this many invocations.
    pub max_compute_workgroup_subgroups: u32,
    pub subgroup_arithmetic: bool,
    pub subgroup_clustered: bool,
    pub subgroup_shuffle: bool,

    pub max_storage_buffer_range: u64,
    pub min_storage_buffer_offset_alignment: u64,
    pub max_push_constants: u32,
    pub max_shared_memory: u32,
    pub max_workgroup_invocations: u32,
    pub max_workgroup_size: [u32; 3],
    pub max_workgroup_count: [u32; 3],
    pub max_memory_allocation_size: u64,
    pub max_buffer_size: u64,
    pub timestamp_period_ns: f32,
    pub timestamp_valid_bits: u32,
    pub queue_family: Option<u32>,

    pub heaps: Vec<HeapInfo>,
    /// (heap index, property flags) per memory type.
    pub memory_types: Vec<(u32, vk::MemoryPropertyFlags)>,
    /// Integrated GPU with a DEVICE_LOCAL|HOST_VISIBLE memory type: weights are written in place.
    pub uma: bool,
    /// Size of the heap behind the largest DEVICE_LOCAL|HOST_VISIBLE type (0 if none).
    pub host_visible_device_local: u64,
    /// Discrete GPU whose whole device-local heap is host visible (resizable BAR).
    pub full_bar: bool,

    pub push_descriptor: bool,
    pub memory_budget: bool,
    pub cooperative_matrix: bool,
    /// VK_KHR_shader_clock (enabled only with `QWEN3VK_CLOCKS=1`, for timing marks).
    pub shader_clock: bool,
    /// Streaming multiprocessors (NVIDIA, VK_NV_shader_sm_builtins) or compute units (AMD,
    /// VK_AMD_shader_core_properties); 0 where the driver does not say (lavapipe, others).
    pub compute_units: u32,
}

impl Caps {
    pub(crate) fn query(inst: &Instance, pd: vk::PhysicalDevice) -> Caps {
        let i = &inst.raw;
        // SAFETY: `pd` came from this instance; every pNext struct lives on this stack frame.
        unsafe {
            let exts = i.enumerate_device_extension_properties(pd).unwrap_or_default();
            let has =
                |n: &std::ffi::CStr| exts.iter().any(|e| e.extension_name_as_c_str().map(|x| x == n).unwrap_or(false));
            let push_descriptor = has(khr::push_descriptor::NAME);
            let memory_budget = has(ext::memory_budget::NAME);
            let cooperative_matrix = has(khr::cooperative_matrix::NAME);
            let shader_clock = has(khr::shader_clock::NAME);
            let nv_sm = has(vk::NV_SHADER_SM_BUILTINS_NAME);
            let amd_core = has(vk::AMD_SHADER_CORE_PROPERTIES_NAME);

            let base = i.get_physical_device_properties(pd);
            let api_version = base.api_version;
            let v13 = api_version >= vk::API_VERSION_1_3;

            let mut p11 = vk::PhysicalDeviceVulkan11Properties::default();
            let mut p13 = vk::PhysicalDeviceVulkan13Properties::default();
            let mut drv = vk::PhysicalDeviceDriverProperties::default();
            let mut sm = vk::PhysicalDeviceShaderSMBuiltinsPropertiesNV::default();
            let mut core = vk::PhysicalDeviceShaderCorePropertiesAMD::default();
            let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut p11).push_next(&mut drv);
            if v13 {
                props2 = props2.push_next(&mut p13);
            }
            if nv_sm {
                props2 = props2.push_next(&mut sm);
            }
            if amd_core {
                props2 = props2.push_next(&mut core);
            }
            i.get_physical_device_properties2(pd, &mut props2);
            let props = props2.properties;

            let mut f11 = vk::PhysicalDeviceVulkan11Features::default();
            let mut f12 = vk::PhysicalDeviceVulkan12Features::default();
            let mut f13 = vk::PhysicalDeviceVulkan13Features::default();
            let mut feats2 = vk::PhysicalDeviceFeatures2::default().push_next(&mut f11).push_next(&mut f12);
            if v13 {
                feats2 = feats2.push_next(&mut f13);
            }
            i.get_physical_device_features2(pd, &mut feats2);
            let f = feats2.features;

            let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
            let mut mem2 = vk::PhysicalDeviceMemoryProperties2::default();
            if memory_budget {
                mem2 = mem2.push_next(&mut budget);
            }
            i.get_physical_device_memory_properties2(pd, &mut mem2);
            let mem = mem2.memory_properties;

            let qfs = i.get_physical_device_queue_family_properties(pd);
            let qf = qfs
                .iter()
                .enumerate()
                .filter(|(_, q)| q.queue_flags.contains(vk::QueueFlags::COMPUTE))
                .max_by_key(|(_, q)| (q.timestamp_valid_bits > 0, q.queue_flags.contains(vk::QueueFlags::GRAPHICS)))
                .map(|(n, q)| (n as u32, q.timestamp_valid_bits));

            let heaps: Vec<HeapInfo> = (0..mem.memory_heap_count as usize)
                .map(|h| HeapInfo {
                    size: mem.memory_heaps[h].size,
                    device_local: mem.memory_heaps[h].flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL),
                    budget: memory_budget.then(|| budget.heap_budget[h]),
                    usage: memory_budget.then(|| budget.heap_usage[h]),
                })
                .collect();
            let memory_types: Vec<(u32, vk::MemoryPropertyFlags)> = (0..mem.memory_type_count as usize)
                .map(|t| (mem.memory_types[t].heap_index, mem.memory_types[t].property_flags))
                .collect();
            let sizes: Vec<u64> = heaps.iter().map(|h| h.size).collect();
            let host_visible_device_local = crate::memplan::host_visible_device_local(&sizes, &memory_types);
            let kind = DeviceKind::from_vk(props.device_type);
            let hs: Vec<(u64, bool)> = heaps.iter().map(|h| (h.size, h.device_local)).collect();
            let (uma, full_bar) = crate::memplan::detect_uma_bar(kind, &hs, &memory_types);

            let sg_ops = p11.subgroup_supported_operations;
            Caps {
                name: props.device_name_as_c_str().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                kind,
                vendor_id: props.vendor_id,
                device_id: props.device_id,
                driver_name: drv.driver_name_as_c_str().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                driver_info: drv.driver_info_as_c_str().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                driver_version: props.driver_version,
                api_version,
                pipeline_cache_uuid: props.pipeline_cache_uuid,
                int8: f12.shader_int8 != 0,
                int16: f.shader_int16 != 0,
                float16: f12.shader_float16 != 0,
                storage_8bit: f12.storage_buffer8_bit_access != 0,
                storage_16bit: f11.storage_buffer16_bit_access != 0,
                int_dot: f13.shader_integer_dot_product != 0,
                int_dot_accelerated: p13.integer_dot_product4x8_bit_packed_signed_accelerated != 0,
                subgroup_size: p11.subgroup_size,
                min_subgroup_size: if v13 { p13.min_subgroup_size } else { p11.subgroup_size },
                max_subgroup_size: if v13 { p13.max_subgroup_size } else { p11.subgroup_size },
                subgroup_size_control: f13.subgroup_size_control != 0
                    && p13.required_subgroup_size_stages.contains(vk::ShaderStageFlags::COMPUTE),
                compute_full_subgroups: f13.compute_full_subgroups != 0,
                max_compute_workgroup_subgroups: if v13 { p13.max_compute_workgroup_subgroups } else { 0 },
                subgroup_arithmetic: sg_ops.contains(vk::SubgroupFeatureFlags::ARITHMETIC)
                    && p11.subgroup_supported_stages.contains(vk::ShaderStageFlags::COMPUTE),
                subgroup_clustered: sg_ops.contains(vk::SubgroupFeatureFlags::CLUSTERED),
                subgroup_shuffle: sg_ops.contains(vk::SubgroupFeatureFlags::SHUFFLE),
                max_storage_buffer_range: props.limits.max_storage_buffer_range as u64,
                min_storage_buffer_offset_alignment: props.limits.min_storage_buffer_offset_alignment.max(1),
                max_push_constants: props.limits.max_push_constants_size,
                max_shared_memory: props.limits.max_compute_shared_memory_size,
                max_workgroup_invocations: props.limits.max_compute_work_group_invocations,
                max_workgroup_size: props.limits.max_compute_work_group_size,
                max_workgroup_count: props.limits.max_compute_work_group_count,
                max_memory_allocation_size: p11.max_memory_allocation_size,
                max_buffer_size: if v13 { p13.max_buffer_size } else { u64::MAX },
                timestamp_period_ns: props.limits.timestamp_period,
                timestamp_valid_bits: qf.map(|q| q.1).unwrap_or(0),
                queue_family: qf.map(|q| q.0),
                heaps,
                memory_types,
                uma,
                host_visible_device_local,
                full_bar,
                push_descriptor,
                memory_budget,
                cooperative_matrix,
                shader_clock,
                compute_units: if nv_sm {
                    sm.shader_sm_count
                } else if amd_core {
                    core.shader_engine_count * core.shader_arrays_per_engine_count * core.compute_units_per_shader_array
                } else {
                    0
                },
            }
        }
    }

    /// Why this device cannot run our kernels, or `None` if it can.
    pub fn unsuitable_reason(&self) -> Option<String> {
        let mut missing = Vec::new();
        if self.api_version < vk::API_VERSION_1_3 {
            missing.push(format!(
                "Vulkan 1.3 (device has {}.{})",
                vk::api_version_major(self.api_version),
                vk::api_version_minor(self.api_version)
            ));
        }
        if self.queue_family.is_none() {
            missing.push("a compute queue".into());
        }
        for (ok, what) in [
            (self.int8, "shaderInt8"),
            (self.int16, "shaderInt16"),
            (self.float16, "shaderFloat16"),
            (self.storage_8bit, "storageBuffer8BitAccess"),
            (self.storage_16bit, "storageBuffer16BitAccess"),
            (self.subgroup_arithmetic, "subgroup arithmetic in compute"),
        ] {
            if !ok {
                missing.push(what.into());
            }
        }
        if self.max_push_constants < 128 {
            missing.push(format!("128 bytes of push constants (device has {})", self.max_push_constants));
        }
        (!missing.is_empty()).then(|| format!("lacks {}", missing.join(", ")))
    }

    /// Whether weights can be written straight into device memory through a mapped pointer.
    pub fn direct_weight_writes(&self) -> bool {
        self.uma || self.full_bar
    }

    /// Total device-local bytes (the largest device-local heap).
    pub fn device_local_bytes(&self) -> u64 {
        self.heaps.iter().filter(|h| h.device_local).map(|h| h.size).max().unwrap_or(0)
    }
}

fn mib(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.api_version;
        writeln!(
            f,
            "{} ({:?}, vendor 0x{:04x}, device 0x{:04x})",
            self.name, self.kind, self.vendor_id, self.device_id
        )?;
        writeln!(
            f,
            "  driver: {} {} · Vulkan {}.{}.{}",
            self.driver_name,
            self.driver_info,
            vk::api_version_major(v),
            vk::api_version_minor(v),
            vk::api_version_patch(v)
        )?;
        writeln!(
            f,
            "  int8 dot product: {} (accelerated: {}) · int8 {} · int16 {} · fp16 {} · 8-bit storage {} · 16-bit storage {}",
            self.int_dot, self.int_dot_accelerated, self.int8, self.int16, self.float16, self.storage_8bit, self.storage_16bit
        )?;
        writeln!(
            f,
            "  subgroup: {} (min {}, max {}; size control {}, full subgroups {}, arithmetic {}, clustered {}, shuffle {})",
            self.subgroup_size,
            self.min_subgroup_size,
            self.max_subgroup_size,
            self.subgroup_size_control,
            self.compute_full_subgroups,
            self.subgroup_arithmetic,
            self.subgroup_clustered,
            self.subgroup_shuffle
        )?;
        writeln!(
            f,
            "  limits: maxStorageBufferRange {} · push constants {} B · shared memory {} B · workgroup {} invocations · maxMemoryAllocationSize {} · maxBufferSize {}",
            mib(self.max_storage_buffer_range),
            self.max_push_constants,
            self.max_shared_memory,
            self.max_workgroup_invocations,
            mib(self.max_memory_allocation_size),
            mib(self.max_buffer_size)
        )?;
        writeln!(
            f,
            "  memory: UMA {} · full BAR {} · DEVICE_LOCAL|HOST_VISIBLE heap {} · budget ext {}",
            self.uma,
            self.full_bar,
            mib(self.host_visible_device_local),
            self.memory_budget
        )?;
        for (n, h) in self.heaps.iter().enumerate() {
            let types: Vec<String> = self
                .memory_types
                .iter()
                .enumerate()
                .filter(|(_, (hi, _))| *hi as usize == n)
                .map(|(t, (_, fl))| format!("{t}:{fl:?}"))
                .collect();
            let budget = match (h.budget, h.usage) {
                (Some(b), Some(u)) => format!(" (budget {}, used {})", mib(b), mib(u)),
                _ => String::new(),
            };
            writeln!(
                f,
                "    heap {n}: {}{}{} — types {}",
                mib(h.size),
                if h.device_local { " DEVICE_LOCAL" } else { "" },
                budget,
                types.join(", ")
            )?;
        }
        write!(
            f,
            "  extensions: push_descriptor {} · cooperative_matrix {} · timestamps {} bits, {} ns/tick · compute units {}",
            self.push_descriptor, self.cooperative_matrix, self.timestamp_valid_bits, self.timestamp_period_ns, self.compute_units
        )
    }
}
