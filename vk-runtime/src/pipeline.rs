//! Compute pipelines from SPIR-V words, with specialisation constants and the on-disk cache.

use std::sync::Arc;

use ash::vk;

use crate::device::{Gpu, Shared};
use crate::error::{Error, Result};
use crate::recorder::Access;

/// A compute kernel as the build embeds it: SPIR-V words plus its reflected interface.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource<'a> {
    pub name: &'a str,
    pub spirv: &'a [u32],
    /// Storage buffers at set 0, bindings 0..bindings.
    pub bindings: u32,
    /// Per binding, what the shader does with it (reflected): every dispatch's [`Binding`]s are
    /// checked against it (see [`Recorder::dispatch`]). Empty: not checked.
    ///
    /// [`Binding`]: crate::Binding
    /// [`Recorder::dispatch`]: crate::Recorder::dispatch
    pub access: &'a [Access],
    /// Size in bytes of the push-constant block (0: none).
    pub push_size: u32,
}

/// A specialisation constant: `layout(constant_id = id) const uint … = value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpecConst {
    pub id: u32,
    pub value: u32,
}

/// A ready compute pipeline.
pub struct Pipeline {
    shared: Arc<Shared>,
    pub(crate) name: String,
    pub(crate) raw: vk::Pipeline,
    pub(crate) layout: vk::PipelineLayout,
    pub(crate) set_layout: vk::DescriptorSetLayout,
    pub(crate) bindings: u32,
    pub(crate) access: Vec<Access>,
    pub(crate) push_size: u32,
    pub(crate) push_descriptors: bool,
}

impl Pipeline {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn bindings(&self) -> u32 {
        self.bindings
    }
    pub fn push_size(&self) -> u32 {
        self.push_size
    }
    /// The reflected access per binding (empty: unchecked).
    pub fn access(&self) -> &[Access] {
        &self.access
    }
}

impl Gpu {
    /// Builds `src` with the given specialisation constants. `subgroup_size` requires a fixed
    /// subgroup size (VK_EXT_subgroup_size_control; with full subgroups where the device has
    /// them): an error on a device that cannot give it. The caller keeps the workgroup a multiple
    /// of it.
    pub fn pipeline(
        &self,
        src: &KernelSource<'_>,
        spec: &[SpecConst],
        subgroup_size: Option<u32>,
    ) -> Result<Arc<Pipeline>> {
        let s = &self.shared;
        let caps = &s.caps;
        let kerr = |what: String| Error::Kernel { kernel: src.name.to_string(), what };
        if src.push_size > caps.max_push_constants {
            return Err(kerr(format!(
                "push constants of {} bytes exceed the device's maxPushConstantsSize ({})",
                src.push_size, caps.max_push_constants
            )));
        }
        if let Some(sg) = subgroup_size {
            if !caps.subgroup_size_control
                || !sg.is_power_of_two()
                || !(caps.min_subgroup_size..=caps.max_subgroup_size).contains(&sg)
            {
                return Err(kerr(format!(
                    "a required subgroup size of {sg} is not available: the device {} subgroup size control \
                     (sizes {}..={})",
                    if caps.subgroup_size_control { "has" } else { "has no" },
                    caps.min_subgroup_size,
                    caps.max_subgroup_size
                )));
            }
        }
        if !src.access.is_empty() && src.access.len() != src.bindings as usize {
            return Err(kerr(format!("{} access entries for {} bindings", src.access.len(), src.bindings)));
        }
        if src.spirv.first() != Some(&0x0723_0203) {
            return Err(kerr("embedded SPIR-V has no SPIR-V magic number".into()));
        }
        let push_descriptors = s.push_desc.is_some();
        let binds: Vec<vk::DescriptorSetLayoutBinding> = (0..src.bindings)
            .map(|b| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(b)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        let flags = if push_descriptors {
            vk::DescriptorSetLayoutCreateFlags::PUSH_DESCRIPTOR_KHR
        } else {
            vk::DescriptorSetLayoutCreateFlags::empty()
        };
        let dev = &s.device;
        // Objects are created in order and destroyed by `Pipeline`'s Drop (or here on error).
        let mut p = Pipeline {
            shared: s.clone(),
            name: src.name.to_string(),
            raw: vk::Pipeline::null(),
            layout: vk::PipelineLayout::null(),
            set_layout: vk::DescriptorSetLayout::null(),
            bindings: src.bindings,
            access: src.access.to_vec(),
            push_size: src.push_size,
            push_descriptors,
        };
        // SAFETY: valid device; create-info pointers live on this frame.
        unsafe {
            p.set_layout = dev
                .create_descriptor_set_layout(
                    &vk::DescriptorSetLayoutCreateInfo::default().flags(flags).bindings(&binds),
                    None,
                )
                .map_err(|r| kerr(format!("vkCreateDescriptorSetLayout: {r:?}")))?;
            let ranges =
                [vk::PushConstantRange { stage_flags: vk::ShaderStageFlags::COMPUTE, offset: 0, size: src.push_size }];
            let set_layouts = [p.set_layout];
            let mut linfo = vk::PipelineLayoutCreateInfo::default().set_layouts(&set_layouts);
            if src.push_size > 0 {
                linfo = linfo.push_constant_ranges(&ranges);
            }
            p.layout =
                dev.create_pipeline_layout(&linfo, None).map_err(|r| kerr(format!("vkCreatePipelineLayout: {r:?}")))?;
            let module = dev
                .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(src.spirv), None)
                .map_err(|r| kerr(format!("vkCreateShaderModule: {r:?}")))?;
            let entries: Vec<vk::SpecializationMapEntry> = spec
                .iter()
                .enumerate()
                .map(|(i, c)| vk::SpecializationMapEntry { constant_id: c.id, offset: (i * 4) as u32, size: 4 })
                .collect();
            let data: Vec<u8> = spec.iter().flat_map(|c| c.value.to_le_bytes()).collect();
            let sinfo = vk::SpecializationInfo::default().map_entries(&entries).data(&data);
            let mut req = vk::PipelineShaderStageRequiredSubgroupSizeCreateInfo::default();
            let mut stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main")
                .specialization_info(&sinfo);
            if let Some(sg) = subgroup_size {
                req = req.required_subgroup_size(sg);
                stage = stage.push_next(&mut req);
                if caps.compute_full_subgroups {
                    stage = stage.flags(vk::PipelineShaderStageCreateFlags::REQUIRE_FULL_SUBGROUPS);
                }
            }
            let cinfo = [vk::ComputePipelineCreateInfo::default().stage(stage).layout(p.layout)];
            let res = dev.create_compute_pipelines(s.pipeline_cache, &cinfo, None);
            dev.destroy_shader_module(module, None);
            p.raw = match res {
                Ok(v) => v[0],
                Err((_, r)) => return Err(kerr(format!("vkCreateComputePipelines: {r:?}"))),
            };
        }
        Ok(Arc::new(p))
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let d = &self.shared.device;
        // SAFETY: batches that used this pipeline hold an Arc to it, so none is in flight.
        unsafe {
            if self.raw != vk::Pipeline::null() {
                d.destroy_pipeline(self.raw, None);
            }
            if self.layout != vk::PipelineLayout::null() {
                d.destroy_pipeline_layout(self.layout, None);
            }
            if self.set_layout != vk::DescriptorSetLayout::null() {
                d.destroy_descriptor_set_layout(self.set_layout, None);
            }
        }
    }
}
