//! Buffers placed by intent. Every allocation is named and registered while alive.

use std::sync::Arc;

use ash::vk;
use gpu_allocator::vulkan::{Allocation, AllocationCreateDesc, AllocationScheme};
use gpu_allocator::MemoryLocation;

use crate::device::{Gpu, LiveAllocation, Shared};
use crate::error::{vkerr, Error, Result};
use crate::recorder::one_shot;

/// What a buffer is for; decides its memory type and how the host reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryIntent {
    /// Model weights: written once by the host, read by kernels. On UMA and full-BAR devices they
    /// live in DEVICE_LOCAL|HOST_VISIBLE memory and are written in place through a mapped pointer;
    /// elsewhere in DEVICE_LOCAL memory filled through a staging upload.
    Weights,
    /// Activations, KV caches, intermediates: device only; the host goes through staging.
    Scratch,
    /// Results the host reads back (sampled ids, audio chunks): HOST_VISIBLE, cached if possible.
    Readback,
    /// Small per-step inputs the host writes (positions, lengths): HOST_VISIBLE.
    Upload,
}

impl MemoryIntent {
    pub fn label(self) -> &'static str {
        match self {
            MemoryIntent::Weights => "weights",
            MemoryIntent::Scratch => "scratch",
            MemoryIntent::Readback => "readback",
            MemoryIntent::Upload => "upload",
        }
    }
}

/// A storage buffer with its memory. Freed on drop (callers wait for the work that uses it first:
/// every batch submitted by this runtime is waited for before `submit` returns).
pub struct Buffer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) raw: vk::Buffer,
    allocation: Option<Allocation>,
    size: u64,
    name: String,
    intent: MemoryIntent,
    pub(crate) id: u64,
    /// The host may read and write it through `allocation`'s mapping.
    host_access: bool,
}

impl Gpu {
    /// Creates a buffer of `size` bytes named `name` (names appear in errors and leak reports).
    pub fn buffer(&self, name: &str, size: u64, intent: MemoryIntent) -> Result<Buffer> {
        let s = &self.shared;
        let caps = &s.caps;
        if size == 0 {
            return Err(Error::ZeroSize { name: name.into() });
        }
        let too_large = |limit: &'static str, max: u64| Error::TooLarge { name: name.into(), size, limit, max };
        if size > caps.max_buffer_size {
            return Err(too_large("maxBufferSize", caps.max_buffer_size));
        }
        if size > caps.max_memory_allocation_size {
            return Err(too_large("maxMemoryAllocationSize", caps.max_memory_allocation_size));
        }
        let direct = caps.direct_weight_writes() && !s.force_staging;
        let (mut location, mut host_access) = match intent {
            MemoryIntent::Weights if direct => (MemoryLocation::CpuToGpu, true),
            MemoryIntent::Weights | MemoryIntent::Scratch => (MemoryLocation::GpuOnly, false),
            MemoryIntent::Readback => (MemoryLocation::GpuToCpu, true),
            MemoryIntent::Upload => (MemoryLocation::CpuToGpu, true),
        };
        // A planned memory type: gpu-allocator takes exactly that type when the requirements'
        // type bits name only it and the location asks for no flags.
        let planned = s.placements.lock().ok().and_then(|p| p.get(name).copied());
        if let Some(t) = planned {
            let Some(&(_, flags)) = caps.memory_types.get(t as usize) else {
                return Err(Error::Unsuitable(format!("buffer '{name}': planned memory type {t} does not exist")));
            };
            let hv = flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT);
            host_access = match intent {
                MemoryIntent::Weights => hv && !s.force_staging,
                MemoryIntent::Scratch => false,
                MemoryIntent::Readback | MemoryIntent::Upload => hv,
            };
            if matches!(intent, MemoryIntent::Readback | MemoryIntent::Upload) && !hv {
                return Err(Error::Unsuitable(format!(
                    "buffer '{name}': planned memory type {t} ({flags:?}) is not host visible"
                )));
            }
            location = MemoryLocation::Unknown;
        }
        let info = vk::BufferCreateInfo::default()
            .size(size)
            .usage(
                vk::BufferUsageFlags::STORAGE_BUFFER
                    | vk::BufferUsageFlags::TRANSFER_SRC
                    | vk::BufferUsageFlags::TRANSFER_DST,
            )
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        // SAFETY: valid device; size checked against maxBufferSize.
        let raw = unsafe { s.device.create_buffer(&info, None) }.map_err(vkerr("vkCreateBuffer"))?;
        // SAFETY: `raw` was just created on this device.
        let mut req = unsafe { s.device.get_buffer_memory_requirements(raw) };
        if let Some(t) = planned {
            if req.memory_type_bits & (1 << t) == 0 {
                // SAFETY: unbound buffer, never used.
                unsafe { s.device.destroy_buffer(raw, None) };
                return Err(Error::Unsuitable(format!(
                    "buffer '{name}': planned memory type {t} is not allowed for storage buffers (type bits {:#x})",
                    req.memory_type_bits
                )));
            }
            req.memory_type_bits = 1 << t;
        }
        let heap = match planned {
            Some(t) => Some(caps.memory_types[t as usize].0 as usize),
            None => heap_for(caps, req.memory_type_bits, location),
        };
        if let Some(heap) = heap {
            let hsize = caps.heaps[heap].size;
            if req.size > hsize {
                // SAFETY: unbound buffer, never used.
                unsafe { s.device.destroy_buffer(raw, None) };
                return Err(Error::TooLarge { name: name.into(), size, limit: "the memory heap size", max: hsize });
            }
        }
        let alloc = s.allocator.lock().map_err(|_| Error::Unsuitable("allocator lock poisoned".into()))?.allocate(
            &AllocationCreateDesc {
                name,
                requirements: req,
                location,
                linear: true,
                allocation_scheme: AllocationScheme::GpuAllocatorManaged,
            },
        );
        let alloc = match alloc {
            Ok(a) => a,
            Err(e) => {
                // SAFETY: unbound buffer, never used.
                unsafe { s.device.destroy_buffer(raw, None) };
                return Err(Error::Alloc { name: name.into(), size, intent: intent.label(), source: e });
            }
        };
        // SAFETY: memory from the allocator satisfies `req`; the buffer is unbound.
        if let Err(r) = unsafe { s.device.bind_buffer_memory(raw, alloc.memory(), alloc.offset()) } {
            // SAFETY: as above.
            unsafe { s.device.destroy_buffer(raw, None) };
            let _ = s.allocator.lock().map(|mut a| a.free(alloc));
            return Err(Error::Vk { call: "vkBindBufferMemory", result: r });
        }
        let host_access = host_access && alloc.mapped_ptr().is_some();
        let id = s.next_id();
        if let Ok(mut live) = s.live.lock() {
            live.insert(
                id,
                LiveAllocation { name: name.into(), size, intent: intent.label(), heap: heap.map(|h| h as u32) },
            );
        }
        Ok(Buffer { shared: s.clone(), raw, allocation: Some(alloc), size, name: name.into(), intent, id, host_access })
    }

    /// A buffer filled with `data` (any `Pod` slice), by the intent's path.
    pub fn buffer_from<T: bytemuck::Pod>(&self, name: &str, data: &[T], intent: MemoryIntent) -> Result<Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let b = self.buffer(name, bytes.len() as u64, intent)?;
        b.write(0, bytes)?;
        Ok(b)
    }
}

/// The heap gpu-allocator will pick for `location` (its preference order, simplified).
fn heap_for(caps: &crate::Caps, bits: u32, location: MemoryLocation) -> Option<usize> {
    use vk::MemoryPropertyFlags as F;
    let (pref, req) = match location {
        MemoryLocation::GpuOnly => (F::DEVICE_LOCAL, F::DEVICE_LOCAL),
        MemoryLocation::CpuToGpu => {
            (F::HOST_VISIBLE | F::HOST_COHERENT | F::DEVICE_LOCAL, F::HOST_VISIBLE | F::HOST_COHERENT)
        }
        _ => (F::HOST_VISIBLE | F::HOST_COHERENT | F::HOST_CACHED, F::HOST_VISIBLE | F::HOST_COHERENT),
    };
    let find = |want: F| {
        caps.memory_types
            .iter()
            .enumerate()
            .find(|(i, (_, fl))| bits & (1 << i) != 0 && fl.contains(want))
            .map(|(_, (h, _))| *h as usize)
    };
    find(pref).or_else(|| find(req))
}

impl Buffer {
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn intent(&self) -> MemoryIntent {
        self.intent
    }
    /// Whether the host writes and reads it in place (no staging).
    pub fn is_host_mapped(&self) -> bool {
        self.host_access
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::OutOfBounds {
                name: self.name.clone(),
                offset,
                end: offset.saturating_add(len),
                size: self.size,
            }),
        }
    }

    /// The mapped bytes, for writing weights in place (UMA / full BAR); `None` when staging is needed.
    pub fn mapped_mut(&mut self) -> Option<&mut [u8]> {
        if !self.host_access {
            return None;
        }
        let size = self.size as usize;
        self.allocation.as_mut().and_then(|a| a.mapped_slice_mut()).map(|s| &mut s[..size])
    }

    /// Copies `data` to `offset`: in place when mapped, else through a staging buffer. The caller
    /// makes sure no GPU work on this range is in flight (batches here complete before returning).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.check_range(offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        if self.host_access {
            if let Some(ptr) = self.allocation.as_ref().and_then(|a| a.mapped_ptr()) {
                // SAFETY: the mapping covers `size` bytes and the range was checked; the memory is
                // HOST_COHERENT and no batch is in flight (documented contract), so no data race.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        data.as_ptr(),
                        (ptr.as_ptr() as *mut u8).add(offset as usize),
                        data.len(),
                    )
                };
                return Ok(());
            }
        }
        let gpu = Gpu { shared: self.shared.clone() };
        // Stage in pieces of at most 64 MiB so an upload never needs a second copy of a big tensor.
        const PIECE: usize = crate::memplan::STAGING_PIECE as usize;
        let staging =
            gpu.buffer(&format!("{} (staging)", self.name), data.len().min(PIECE) as u64, MemoryIntent::Upload)?;
        for (n, chunk) in data.chunks(PIECE).enumerate() {
            staging.write(0, chunk)?;
            let dst_off = offset + (n * PIECE) as u64;
            let (src, dst) = (staging.raw, self.raw);
            one_shot(&self.shared, |dev, cmd| {
                let region = [vk::BufferCopy { src_offset: 0, dst_offset: dst_off, size: chunk.len() as u64 }];
                // SAFETY: both buffers are alive and large enough (checked above).
                unsafe { dev.cmd_copy_buffer(cmd, src, dst, &region) };
            })?;
        }
        Ok(())
    }

    /// Writes a `Pod` slice at `offset`.
    pub fn write_slice<T: bytemuck::Pod>(&self, offset: u64, data: &[T]) -> Result<()> {
        self.write(offset, bytemuck::cast_slice(data))
    }

    /// Copies `out.len()` bytes from `offset` into `out`.
    pub fn read(&self, offset: u64, out: &mut [u8]) -> Result<()> {
        self.check_range(offset, out.len() as u64)?;
        if out.is_empty() {
            return Ok(());
        }
        if self.host_access {
            if let Some(s) = self.allocation.as_ref().and_then(|a| a.mapped_slice()) {
                out.copy_from_slice(&s[offset as usize..offset as usize + out.len()]);
                return Ok(());
            }
        }
        let gpu = Gpu { shared: self.shared.clone() };
        let staging = gpu.buffer(&format!("{} (readback)", self.name), out.len() as u64, MemoryIntent::Readback)?;
        let (src, dst, len) = (self.raw, staging.raw, out.len() as u64);
        one_shot(&self.shared, |dev, cmd| {
            let region = [vk::BufferCopy { src_offset: offset, dst_offset: 0, size: len }];
            // SAFETY: both buffers are alive and large enough.
            unsafe { dev.cmd_copy_buffer(cmd, src, dst, &region) };
        })?;
        staging.read(0, out)
    }

    /// Reads the whole buffer as `T`s.
    pub fn read_vec<T: bytemuck::Pod + Default>(&self) -> Result<Vec<T>> {
        let n = self.size as usize / std::mem::size_of::<T>();
        let mut v = vec![T::default(); n];
        self.read(0, bytemuck::cast_slice_mut(&mut v))?;
        Ok(v)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let s = &self.shared;
        if let Ok(mut live) = s.live.lock() {
            live.remove(&self.id);
        }
        // SAFETY: no batch using this buffer is in flight (every submit waits for its fence).
        unsafe { s.device.destroy_buffer(self.raw, None) };
        if let Some(a) = self.allocation.take() {
            if let Ok(mut al) = s.allocator.lock() {
                let _ = al.free(a);
            }
        }
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({:?}, {} bytes, {})", self.name, self.size, self.intent.label())
    }
}
