//! The command recorder: many dispatches in one command buffer, barriers only on real hazards,
//! one submit and fence wait per batch, optional per-dispatch timestamps.

use std::marker::PhantomData;
use std::sync::Arc;

use ash::vk;

use crate::buffer::Buffer;
use crate::device::{Gpu, Shared};
use crate::error::{vkerr, Error, Result};
use crate::pipeline::Pipeline;

/// How a dispatch uses a binding (a [`Binding`]'s declaration), or what a shader does with it
/// (reflected from its SPIR-V: `readonly` is [`Access::Read`], `writeonly` is [`Access::Write`],
/// neither is [`Access::ReadWrite`]).
///
/// [`Recorder::dispatch`] checks each binding's declared access against the reflected one:
/// - `Read` on a binding the shader may write is an error: the write would be invisible to the
///   hazard tracking, so later readers would get no barrier.
/// - `Write` on a binding the shader never writes (`readonly`) is an error: the declaration is
///   wrong (it costs barriers and says something false about the data flow).
/// - `Write` on a binding the shader may also read (no `writeonly`) is allowed: for the hazard
///   tracking a written span already conflicts with every earlier read and write, so it orders
///   the shader's own reads exactly as `ReadWrite` would.
/// - `ReadWrite` is allowed on every binding (a superset: at worst extra barriers, e.g. a
///   launcher binding one buffer in several slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

/// A buffer range bound to one storage-buffer slot.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub buffer: &'a Buffer,
    pub offset: u64,
    pub range: u64,
    pub access: Access,
}

impl<'a> Binding<'a> {
    pub fn read(buffer: &'a Buffer) -> Self {
        Binding { buffer, offset: 0, range: buffer.size(), access: Access::Read }
    }
    pub fn write(buffer: &'a Buffer) -> Self {
        Binding { buffer, offset: 0, range: buffer.size(), access: Access::Write }
    }
    pub fn read_write(buffer: &'a Buffer) -> Self {
        Binding { buffer, offset: 0, range: buffer.size(), access: Access::ReadWrite }
    }
    /// Narrows the binding to `len` bytes at `offset`.
    pub fn range(mut self, offset: u64, len: u64) -> Self {
        self.offset = offset;
        self.range = len;
        self
    }
}

/// GPU time of one dispatch in a profiled batch.
#[derive(Debug, Clone)]
pub struct KernelTime {
    pub name: String,
    pub ns: f64,
}

/// What a submitted batch reports.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// GPU time from the batch's first command to its last, when timestamps exist.
    pub total_ns: Option<f64>,
    /// Per dispatch, in profile mode.
    pub kernels: Vec<KernelTime>,
    pub dispatches: u32,
    pub barriers: u32,
}

#[derive(Clone, Copy)]
struct Span {
    buf: u64,
    start: u64,
    end: u64,
}

impl Span {
    fn overlaps(&self, o: &Span) -> bool {
        self.buf == o.buf && self.start < o.end && o.start < self.end
    }
}

const SETS_PER_POOL: u32 = 128;
const DESCRIPTORS_PER_SET: u32 = 16;
const MAX_TIMED: u32 = 4096;

/// A recorded command buffer that can be submitted (and re-submitted) and waited for. It borrows
/// every buffer it binds, so none can be dropped while it exists.
pub struct Batch<'a> {
    shared: Arc<Shared>,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
    desc_pools: Vec<vk::DescriptorPool>,
    query_pool: Option<vk::QueryPool>,
    timed: Vec<String>,
    pipelines: Vec<Arc<Pipeline>>,
    names: Vec<String>,
    dispatches: u32,
    barriers: u32,
    /// Submitted by [`Batch::submit_nowait`] and not yet waited for.
    pending: bool,
    _buffers: PhantomData<&'a Buffer>,
}

/// Records a [`Batch`].
pub struct Recorder<'a> {
    batch: Batch<'a>,
    written: Vec<Span>,
    read: Vec<Span>,
    profile: bool,
    sets_in_pool: u32,
    /// A copy was recorded since the last barrier.
    transfer_since_barrier: bool,
    /// What was touched since the last barrier whose second scope includes transfers: a copy must
    /// be ordered after all of it (a compute-only barrier in between does not order a copy).
    written_t: Vec<Span>,
    read_t: Vec<Span>,
    /// `GpuOptions::full_barriers` (`QWEN3VK_BARRIER_FULL=1`): every barrier also names the transfer stage (for comparisons).
    force_transfer_barriers: bool,
    /// [`Recorder::set_clock_buffer`]: (buffer, bytes per dispatch).
    clock: Option<(&'a Buffer, u64)>,
}

impl Gpu {
    /// Starts recording. In `profile` mode every dispatch is timed (and serialised by a barrier).
    pub fn recorder<'a>(&self, profile: bool) -> Result<Recorder<'a>> {
        Recorder::new(self.shared.clone(), profile)
    }
}

impl<'a> Recorder<'a> {
    fn new(shared: Arc<Shared>, profile: bool) -> Result<Self> {
        let dev = &shared.device;
        let mut batch = Batch {
            shared: shared.clone(),
            pool: vk::CommandPool::null(),
            cmd: vk::CommandBuffer::null(),
            fence: vk::Fence::null(),
            desc_pools: Vec::new(),
            query_pool: None,
            timed: Vec::new(),
            pipelines: Vec::new(),
            names: Vec::new(),
            dispatches: 0,
            barriers: 0,
            pending: false,
            _buffers: PhantomData,
        };
        // SAFETY: valid device; objects are owned by `batch` and destroyed by its Drop.
        unsafe {
            batch.pool = dev
                .create_command_pool(
                    &vk::CommandPoolCreateInfo::default().queue_family_index(shared.queue_family),
                    None,
                )
                .map_err(vkerr("vkCreateCommandPool"))?;
            batch.cmd = dev
                .allocate_command_buffers(
                    &vk::CommandBufferAllocateInfo::default()
                        .command_pool(batch.pool)
                        .level(vk::CommandBufferLevel::PRIMARY)
                        .command_buffer_count(1),
                )
                .map_err(vkerr("vkAllocateCommandBuffers"))?[0];
            batch.fence = dev.create_fence(&vk::FenceCreateInfo::default(), None).map_err(vkerr("vkCreateFence"))?;
            if shared.caps.timestamp_valid_bits > 0 {
                let count = if profile { 2 + 2 * MAX_TIMED } else { 2 };
                let qp = dev
                    .create_query_pool(
                        &vk::QueryPoolCreateInfo::default().query_type(vk::QueryType::TIMESTAMP).query_count(count),
                        None,
                    )
                    .map_err(vkerr("vkCreateQueryPool"))?;
                batch.query_pool = Some(qp);
            }
            dev.begin_command_buffer(batch.cmd, &vk::CommandBufferBeginInfo::default())
                .map_err(vkerr("vkBeginCommandBuffer"))?;
            if let Some(qp) = batch.query_pool {
                let count = if profile { 2 + 2 * MAX_TIMED } else { 2 };
                dev.cmd_reset_query_pool(batch.cmd, qp, 0, count);
                dev.cmd_write_timestamp(batch.cmd, vk::PipelineStageFlags::TOP_OF_PIPE, qp, 0);
            }
        }
        Ok(Recorder {
            batch,
            written: Vec::new(),
            read: Vec::new(),
            profile,
            sets_in_pool: SETS_PER_POOL,
            transfer_since_barrier: false,
            written_t: Vec::new(),
            read_t: Vec::new(),
            force_transfer_barriers: shared.full_barriers.load(std::sync::atomic::Ordering::Relaxed),
            clock: None,
        })
    }

    /// A memory barrier ordering everything recorded so far before everything recorded next.
    /// Its stages and access types name transfers only where one was recorded since the previous
    /// barrier (first scope) or is about to be (second scope): a compute-to-compute barrier is
    /// much cheaper on some drivers than one that also waits on the transfer stage. Earlier
    /// commands are covered through the chain of barriers between them.
    fn barrier_for(&mut self, next_is_transfer: bool) {
        let src_transfer = self.transfer_since_barrier;
        let b = &mut self.batch;
        let mut src_access = vk::AccessFlags::SHADER_WRITE;
        let mut dst_access = vk::AccessFlags::SHADER_READ | vk::AccessFlags::SHADER_WRITE;
        let mut src_stage = vk::PipelineStageFlags::COMPUTE_SHADER;
        let mut dst_stage = vk::PipelineStageFlags::COMPUTE_SHADER;
        if src_transfer || self.force_transfer_barriers {
            src_access |= vk::AccessFlags::TRANSFER_WRITE;
            src_stage |= vk::PipelineStageFlags::TRANSFER;
        }
        if next_is_transfer || self.force_transfer_barriers {
            dst_access |= vk::AccessFlags::TRANSFER_READ | vk::AccessFlags::TRANSFER_WRITE;
            dst_stage |= vk::PipelineStageFlags::TRANSFER;
        }
        let mb = [vk::MemoryBarrier::default().src_access_mask(src_access).dst_access_mask(dst_access)];
        // SAFETY: recording command buffer.
        unsafe {
            b.shared.device.cmd_pipeline_barrier(
                b.cmd,
                src_stage,
                dst_stage,
                vk::DependencyFlags::empty(),
                &mb,
                &[],
                &[],
            )
        };
        b.barriers += 1;
        self.written.clear();
        self.read.clear();
        if next_is_transfer || self.force_transfer_barriers {
            self.written_t.clear();
            self.read_t.clear();
        }
        self.transfer_since_barrier = false;
    }

    /// A full compute/transfer memory barrier now. At the start of a batch it orders the batch
    /// after everything submitted before it on the queue (batches chained on the GPU without a
    /// host wait between them, e.g. decode steps that feed each other's outputs).
    pub fn full_barrier(&mut self) {
        // Whatever ran before may have been a transfer.
        self.transfer_since_barrier = true;
        self.barrier_for(true);
    }

    /// Timing instrumentation: a dispatch of a kernel that declares one binding more than it is
    /// given (a `_clk` variant) gets `slot` bytes of `buf` at (its dispatch index × `slot`) there.
    pub fn set_clock_buffer(&mut self, buf: &'a Buffer, slot: u64) {
        self.clock = Some((buf, slot));
    }

    /// Inserts a barrier if `reads`/`writes` conflict with what was touched since the last one
    /// (read after write, write after write, write after read), then records them.
    fn track(&mut self, reads: &[Span], writes: &[Span], is_transfer: bool) {
        let conflict = |written: &[Span], read: &[Span]| {
            reads.iter().any(|r| written.iter().any(|w| w.overlaps(r)))
                || writes.iter().any(|x| written.iter().chain(read.iter()).any(|o| o.overlaps(x)))
        };
        let hazard = conflict(&self.written, &self.read);
        // A copy also conflicts with anything since the last barrier that ordered transfers.
        let hazard_t = is_transfer && conflict(&self.written_t, &self.read_t);
        if hazard || hazard_t || (self.profile && self.batch.dispatches > 0) {
            self.barrier_for(is_transfer);
        }
        self.transfer_since_barrier |= is_transfer;
        self.read.extend_from_slice(reads);
        self.written.extend_from_slice(writes);
        self.read_t.extend_from_slice(reads);
        self.written_t.extend_from_slice(writes);
    }

    /// Records one dispatch of `p` with `bindings` (in binding order), push constants `push`
    /// (exactly the pipeline's push size) and `groups` workgroups.
    pub fn dispatch(
        &mut self,
        p: &Arc<Pipeline>,
        bindings: &[Binding<'a>],
        push: &[u8],
        groups: [u32; 3],
    ) -> Result<()> {
        let caps = &self.batch.shared.caps;
        let kerr = |what: String| Error::Kernel { kernel: p.name.clone(), what };
        let with_clock: Vec<Binding<'a>>;
        let bindings = match self.clock {
            Some((buf, slot)) if bindings.len() + 1 == p.bindings as usize => {
                let at = self.batch.dispatches as u64 * slot;
                with_clock = bindings.iter().copied().chain([Binding::write(buf).range(at, slot)]).collect();
                &with_clock[..]
            }
            _ => bindings,
        };
        if bindings.len() != p.bindings as usize {
            return Err(kerr(format!("{} buffers bound, the kernel declares {}", bindings.len(), p.bindings)));
        }
        for (i, (b, &shader)) in bindings.iter().zip(p.access.iter()).enumerate() {
            let wrong = match (b.access, shader) {
                (Access::Read, Access::Write | Access::ReadWrite) => Some("the shader writes it"),
                (Access::Write, Access::Read) => Some("the shader only reads it"),
                _ => None,
            };
            if let Some(why) = wrong {
                return Err(Error::BindingAccess {
                    kernel: p.name.clone(),
                    binding: i,
                    buffer: b.buffer.name().into(),
                    declared: b.access,
                    reflected: shader,
                    why,
                });
            }
        }
        if push.len() != p.push_size as usize {
            return Err(kerr(format!(
                "{} bytes of push constants given, the kernel declares {}",
                push.len(),
                p.push_size
            )));
        }
        for (axis, (&g, &max)) in groups.iter().zip(caps.max_workgroup_count.iter()).enumerate() {
            if g == 0 || g > max {
                return Err(kerr(format!("{g} workgroups on axis {axis}; the device allows 1..={max}")));
            }
        }
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        let mut infos = Vec::with_capacity(bindings.len());
        for (i, b) in bindings.iter().enumerate() {
            let end = b.offset.checked_add(b.range).filter(|&e| e <= b.buffer.size() && b.range > 0);
            let Some(end) = end else {
                return Err(Error::OutOfBounds {
                    name: b.buffer.name().into(),
                    offset: b.offset,
                    end: b.offset.saturating_add(b.range),
                    size: b.buffer.size(),
                });
            };
            if b.range > caps.max_storage_buffer_range {
                return Err(Error::BindingRange {
                    kernel: p.name.clone(),
                    binding: i,
                    buffer: b.buffer.name().into(),
                    range: b.range,
                    max: caps.max_storage_buffer_range,
                });
            }
            if b.offset % caps.min_storage_buffer_offset_alignment != 0 {
                return Err(Error::BindingAlign {
                    kernel: p.name.clone(),
                    binding: i,
                    buffer: b.buffer.name().into(),
                    offset: b.offset,
                    align: caps.min_storage_buffer_offset_alignment,
                });
            }
            let span = Span { buf: b.buffer.id, start: b.offset, end };
            match b.access {
                Access::Read => reads.push(span),
                Access::Write => writes.push(span),
                Access::ReadWrite => {
                    reads.push(span);
                    writes.push(span)
                }
            }
            infos.push([vk::DescriptorBufferInfo { buffer: b.buffer.raw, offset: b.offset, range: b.range }]);
        }
        self.track(&reads, &writes, false);

        let shared = self.batch.shared.clone();
        let dev = &shared.device;
        let cmd = self.batch.cmd;
        let timed_index =
            if self.profile && self.batch.query_pool.is_some() && (self.batch.timed.len() as u32) < MAX_TIMED {
                Some(self.batch.timed.len() as u32)
            } else {
                None
            };
        // SAFETY: recording; all handles are alive (pipelines kept by the batch, buffers borrowed).
        unsafe {
            if let (Some(t), Some(qp)) = (timed_index, self.batch.query_pool) {
                dev.cmd_write_timestamp(cmd, vk::PipelineStageFlags::COMPUTE_SHADER, qp, 2 + 2 * t);
            }
            dev.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, p.raw);
            let writes_ds: Vec<vk::WriteDescriptorSet> = infos
                .iter()
                .enumerate()
                .map(|(i, info)| {
                    vk::WriteDescriptorSet::default()
                        .dst_binding(i as u32)
                        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                        .buffer_info(info)
                })
                .collect();
            if p.bindings > 0 {
                match (&shared.push_desc, p.push_descriptors) {
                    (Some(pd), true) => {
                        pd.cmd_push_descriptor_set(cmd, vk::PipelineBindPoint::COMPUTE, p.layout, 0, &writes_ds)
                    }
                    _ => {
                        let set = self.alloc_set(p)?;
                        let w: Vec<vk::WriteDescriptorSet> = writes_ds.into_iter().map(|w| w.dst_set(set)).collect();
                        dev.update_descriptor_sets(&w, &[]);
                        dev.cmd_bind_descriptor_sets(cmd, vk::PipelineBindPoint::COMPUTE, p.layout, 0, &[set], &[]);
                    }
                }
            }
            if !push.is_empty() {
                dev.cmd_push_constants(cmd, p.layout, vk::ShaderStageFlags::COMPUTE, 0, push);
            }
            dev.cmd_dispatch(cmd, groups[0], groups[1], groups[2]);
            if let (Some(t), Some(qp)) = (timed_index, self.batch.query_pool) {
                dev.cmd_write_timestamp(cmd, vk::PipelineStageFlags::COMPUTE_SHADER, qp, 3 + 2 * t);
                self.batch.timed.push(p.name.clone());
            }
        }
        if !self.batch.pipelines.iter().any(|q| Arc::ptr_eq(q, p)) {
            self.batch.pipelines.push(p.clone());
        }
        self.batch.names.push(p.name.clone());
        self.batch.dispatches += 1;
        Ok(())
    }

    fn alloc_set(&mut self, p: &Pipeline) -> Result<vk::DescriptorSet> {
        let dev = &self.batch.shared.device;
        if p.bindings > DESCRIPTORS_PER_SET {
            return Err(Error::Kernel {
                kernel: p.name.clone(),
                what: format!("more than {DESCRIPTORS_PER_SET} bindings"),
            });
        }
        // SAFETY: valid device; pools are owned by the batch.
        unsafe {
            if self.sets_in_pool >= SETS_PER_POOL {
                let sizes = [vk::DescriptorPoolSize {
                    ty: vk::DescriptorType::STORAGE_BUFFER,
                    descriptor_count: SETS_PER_POOL * DESCRIPTORS_PER_SET,
                }];
                let pool = dev
                    .create_descriptor_pool(
                        &vk::DescriptorPoolCreateInfo::default().max_sets(SETS_PER_POOL).pool_sizes(&sizes),
                        None,
                    )
                    .map_err(vkerr("vkCreateDescriptorPool"))?;
                self.batch.desc_pools.push(pool);
                self.sets_in_pool = 0;
            }
            let layouts = [p.set_layout];
            let pool = *self.batch.desc_pools.last().expect("a pool was just ensured");
            let set = dev
                .allocate_descriptor_sets(
                    &vk::DescriptorSetAllocateInfo::default().descriptor_pool(pool).set_layouts(&layouts),
                )
                .map_err(vkerr("vkAllocateDescriptorSets"))?[0];
            self.sets_in_pool += 1;
            Ok(set)
        }
    }

    /// Records a buffer-to-buffer copy of `len` bytes.
    pub fn copy(&mut self, src: &'a Buffer, src_offset: u64, dst: &'a Buffer, dst_offset: u64, len: u64) -> Result<()> {
        for (b, off) in [(src, src_offset), (dst, dst_offset)] {
            if off.checked_add(len).is_none_or(|e| e > b.size()) || len == 0 {
                return Err(Error::OutOfBounds {
                    name: b.name().into(),
                    offset: off,
                    end: off.saturating_add(len),
                    size: b.size(),
                });
            }
        }
        self.track(
            &[Span { buf: src.id, start: src_offset, end: src_offset + len }],
            &[Span { buf: dst.id, start: dst_offset, end: dst_offset + len }],
            true,
        );
        let region = [vk::BufferCopy { src_offset, dst_offset, size: len }];
        // SAFETY: recording; both buffers borrowed for the batch's lifetime.
        unsafe { self.batch.shared.device.cmd_copy_buffer(self.batch.cmd, src.raw, dst.raw, &region) };
        Ok(())
    }

    /// Ends recording.
    pub fn finish(mut self) -> Result<Batch<'a>> {
        let b = &mut self.batch;
        let dev = &b.shared.device;
        // Make every write visible to the host once the fence signals.
        let mb = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::SHADER_WRITE | vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(vk::AccessFlags::HOST_READ)];
        // SAFETY: recording command buffer.
        unsafe {
            if let Some(qp) = b.query_pool {
                dev.cmd_write_timestamp(b.cmd, vk::PipelineStageFlags::BOTTOM_OF_PIPE, qp, 1);
            }
            dev.cmd_pipeline_barrier(
                b.cmd,
                vk::PipelineStageFlags::COMPUTE_SHADER | vk::PipelineStageFlags::TRANSFER,
                vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &mb,
                &[],
                &[],
            );
            dev.end_command_buffer(b.cmd).map_err(vkerr("vkEndCommandBuffer"))?;
        }
        Ok(self.batch)
    }

    /// Ends recording, submits once and waits.
    pub fn submit(self) -> Result<Profile> {
        let mut b = self.finish()?;
        b.submit()
    }

    pub fn dispatches(&self) -> u32 {
        self.batch.dispatches
    }
}

impl Batch<'_> {
    /// Submits the recorded commands and waits for them; may be called again to replay.
    pub fn submit(&mut self) -> Result<Profile> {
        self.submit_nowait()?;
        self.wait()
    }

    /// Submits the recorded commands without waiting; [`Batch::wait`] collects the result. A
    /// pending batch cannot be submitted again (record two to keep the queue busy).
    pub fn submit_nowait(&mut self) -> Result<()> {
        if self.pending {
            return Err(Error::Unsuitable(
                "a batch was submitted again before its previous submission was waited for".into(),
            ));
        }
        let s = &self.shared;
        let dev = &s.device;
        let cmds = [self.cmd];
        let info = [vk::SubmitInfo::default().command_buffers(&cmds)];
        {
            let q = s.queue.lock().map_err(|_| Error::Unsuitable("queue lock poisoned".into()))?;
            // SAFETY: queue access serialised by the mutex; the command buffer is executable and
            // not pending (checked above).
            unsafe { dev.queue_submit(*q, &info, self.fence) }.map_err(|r| self.lost(r, "vkQueueSubmit"))?;
        }
        self.pending = true;
        Ok(())
    }

    /// Waits for the last [`Batch::submit_nowait`] and returns its profile.
    pub fn wait(&mut self) -> Result<Profile> {
        if !self.pending {
            return Err(Error::Unsuitable("waiting for a batch that was not submitted".into()));
        }
        let s = &self.shared;
        let dev = &s.device;
        let secs = 600u64;
        // SAFETY: fence owned by this batch.
        match unsafe { dev.wait_for_fences(&[self.fence], true, secs * 1_000_000_000) } {
            Ok(()) => {}
            Err(vk::Result::TIMEOUT) => return Err(Error::Timeout { secs, last: self.last_names() }),
            Err(r) => return Err(self.lost(r, "vkWaitForFences")),
        }
        self.pending = false;
        // SAFETY: the fence is signalled and not in use.
        unsafe { dev.reset_fences(&[self.fence]) }.map_err(vkerr("vkResetFences"))?;
        let mut prof =
            Profile { total_ns: None, kernels: Vec::new(), dispatches: self.dispatches, barriers: self.barriers };
        if let Some(qp) = self.query_pool {
            let n = 2 + 2 * self.timed.len();
            let mut ticks = vec![0u64; n];
            // SAFETY: the batch completed, so every written query is available.
            unsafe {
                dev.get_query_pool_results(
                    qp,
                    0,
                    &mut ticks,
                    vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
                )
            }
            .map_err(vkerr("vkGetQueryPoolResults"))?;
            let bits = s.caps.timestamp_valid_bits;
            let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
            let period = s.caps.timestamp_period_ns as f64;
            let span = |a: u64, b: u64| ((b & mask).wrapping_sub(a & mask) & mask) as f64 * period;
            prof.total_ns = Some(span(ticks[0], ticks[1]));
            prof.kernels = self
                .timed
                .iter()
                .enumerate()
                .map(|(i, name)| KernelTime { name: name.clone(), ns: span(ticks[2 + 2 * i], ticks[3 + 2 * i]) })
                .collect();
        }
        Ok(prof)
    }

    fn last_names(&self) -> String {
        let n = self.names.len();
        self.names[n.saturating_sub(3)..].join(", ")
    }

    fn lost(&self, r: vk::Result, call: &'static str) -> Error {
        if r == vk::Result::ERROR_DEVICE_LOST {
            Error::DeviceLost { last: self.last_names() }
        } else {
            Error::Vk { call, result: r }
        }
    }

    pub fn dispatches(&self) -> u32 {
        self.dispatches
    }
    /// The kernel of each dispatch, in recording order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
    pub fn barriers(&self) -> u32 {
        self.barriers
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let dev = &self.shared.device;
        if self.pending {
            // SAFETY: fence owned by this batch; nothing may be destroyed while it is in flight.
            let _ = unsafe { dev.wait_for_fences(&[self.fence], true, 600_000_000_000) };
        }
        // SAFETY: every submission has been waited for, so nothing here is in flight.
        unsafe {
            for p in self.desc_pools.drain(..) {
                dev.destroy_descriptor_pool(p, None);
            }
            if let Some(qp) = self.query_pool.take() {
                dev.destroy_query_pool(qp, None);
            }
            if self.fence != vk::Fence::null() {
                dev.destroy_fence(self.fence, None);
            }
            if self.pool != vk::CommandPool::null() {
                dev.destroy_command_pool(self.pool, None);
            }
        }
    }
}

/// Records `f` into a throw-away command buffer, submits it and waits (uploads, readbacks).
pub(crate) fn one_shot(shared: &Arc<Shared>, f: impl FnOnce(&ash::Device, vk::CommandBuffer)) -> Result<()> {
    let mut r = Recorder::new(shared.clone(), false)?;
    f(&shared.device, r.batch.cmd);
    r.batch.dispatches += 1;
    r.batch.names.push("copy".into());
    r.submit().map(|_| ())
}
