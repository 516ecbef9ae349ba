//! The memory plan: where every buffer of a load goes, computed before anything is allocated.
//!
//! [`plan`] is a pure function of a [`MemoryTable`] (heaps with sizes and budgets, memory types
//! with their flags, the allocation and binding limits, the device kind) and the list of
//! [`Request`]s a load will make, in the order it makes them. It makes no Vulkan call, so it is
//! tested on recorded tables of devices we do not have (RADV on Strix Halo, AMDVLK, NVIDIA).
//!
//! Policy. Memory types are chosen by their flags, never by index (RADV also lists 32-bit-address,
//! AMD-coherent and protected types; the last two are never chosen, and of types with the same
//! flags the first is, as the Vulkan spec orders them). On UMA (integrated GPUs, lavapipe) every
//! heap is the same physical memory: a buffer goes to its preferred DEVICE_LOCAL type while that
//! heap's budget lasts and spills to a host-visible type of another heap after. On a discrete GPU
//! weights and scratch stay device-local (in place through a mapping with resizable BAR, else
//! through a staging buffer) or the plan is refused. Every buffer must fit
//! `maxMemoryAllocationSize`, `maxBufferSize` and, for the range one binding covers,
//! `maxStorageBufferRange`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use ash::vk::MemoryPropertyFlags as F;

use crate::{Caps, DeviceKind, MemoryIntent};

/// Staging pieces of weight uploads (`Buffer::write` stages at most this many bytes at a time).
pub const STAGING_PIECE: u64 = 64 << 20;

/// Requests are rounded up to this many bytes (the usual storage-buffer alignment).
const ALIGN: u64 = 256;

/// One memory heap as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapDesc {
    pub size: u64,
    pub device_local: bool,
    /// VK_EXT_memory_budget's heapBudget, where the device has the extension.
    pub budget: Option<u64>,
    /// Bytes already in use: VK_EXT_memory_budget's heapUsage, else what this process placed.
    pub usage: Option<u64>,
}

impl HeapDesc {
    /// Bytes a load may still place here: the budget (else the size) less what is in use.
    pub fn available(&self) -> u64 {
        self.budget.unwrap_or(self.size).saturating_sub(self.usage.unwrap_or(0))
    }
}

/// A device's memory: what [`plan`] decides from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryTable {
    pub device: String,
    /// VK driver name (`radv`, `llvmpipe`, …), for the hints of a refusal.
    pub driver: String,
    pub vendor_id: u32,
    pub kind: DeviceKind,
    pub heaps: Vec<HeapDesc>,
    /// (heap index, property flags) per memory type, in the driver's order.
    pub types: Vec<(u32, F)>,
    pub max_allocation: u64,
    pub max_buffer: u64,
    pub max_storage_range: u64,
    /// All heaps are one physical memory (integrated GPU or CPU with a DEVICE_LOCAL|HOST_VISIBLE type).
    pub uma: bool,
    /// Discrete GPU whose device-local heap is all host visible (resizable BAR).
    pub full_bar: bool,
}

/// Size of the heap behind the largest DEVICE_LOCAL|HOST_VISIBLE type (0 if none).
pub(crate) fn host_visible_device_local(heap_sizes: &[u64], types: &[(u32, F)]) -> u64 {
    types
        .iter()
        .filter(|(_, fl)| fl.contains(F::DEVICE_LOCAL | F::HOST_VISIBLE))
        .filter_map(|(h, _)| heap_sizes.get(*h as usize).copied())
        .max()
        .unwrap_or(0)
}

/// (UMA, full BAR) as [`Caps`] reports them: UMA is an integrated GPU or a CPU with a
/// DEVICE_LOCAL|HOST_VISIBLE type; full BAR a discrete GPU whose host-visible device-local heap is
/// at least 90% of its largest device-local heap.
pub(crate) fn detect_uma_bar(kind: DeviceKind, heaps: &[(u64, bool)], types: &[(u32, F)]) -> (bool, bool) {
    let sizes: Vec<u64> = heaps.iter().map(|h| h.0).collect();
    let hvdl = host_visible_device_local(&sizes, types);
    let largest_dl = heaps.iter().filter(|h| h.1).map(|h| h.0).max().unwrap_or(0);
    let uma = matches!(kind, DeviceKind::Integrated | DeviceKind::Cpu) && hvdl > 0;
    let full_bar = kind == DeviceKind::Discrete && hvdl > 0 && hvdl >= largest_dl / 10 * 9;
    (uma, full_bar)
}

impl MemoryTable {
    /// A table from its parts (limits: maxMemoryAllocationSize, also taken as maxBufferSize, and
    /// maxStorageBufferRange), UMA and full BAR detected as [`Caps`] does.
    pub fn new(
        device: &str,
        driver: &str,
        vendor_id: u32,
        kind: DeviceKind,
        heaps: Vec<HeapDesc>,
        types: Vec<(u32, F)>,
        (max_allocation, max_storage_range): (u64, u64),
    ) -> MemoryTable {
        let hs: Vec<(u64, bool)> = heaps.iter().map(|h| (h.size, h.device_local)).collect();
        let (uma, full_bar) = detect_uma_bar(kind, &hs, &types);
        MemoryTable {
            device: device.into(),
            driver: driver.into(),
            vendor_id,
            kind,
            heaps,
            types,
            max_allocation,
            max_buffer: max_allocation,
            max_storage_range,
            uma,
            full_bar,
        }
    }

    /// The table of a device as enumerated (budgets as they were then).
    pub fn from_caps(caps: &Caps) -> MemoryTable {
        MemoryTable {
            device: caps.name.clone(),
            driver: caps.driver_name.clone(),
            vendor_id: caps.vendor_id,
            kind: caps.kind,
            heaps: caps
                .heaps
                .iter()
                .map(|h| HeapDesc { size: h.size, device_local: h.device_local, budget: h.budget, usage: h.usage })
                .collect(),
            types: caps.memory_types.clone(),
            max_allocation: caps.max_memory_allocation_size,
            max_buffer: caps.max_buffer_size,
            max_storage_range: caps.max_storage_buffer_range,
            uma: caps.uma,
            full_bar: caps.full_bar,
        }
    }

    /// First type (in the driver's order) with all of `want`, none of `not`, and none of the
    /// flags never chosen (protected, AMD device-coherent / uncached, lazily allocated).
    fn find(&self, want: F, not: F) -> Option<u32> {
        let never = F::PROTECTED | F::DEVICE_COHERENT_AMD | F::DEVICE_UNCACHED_AMD | F::LAZILY_ALLOCATED;
        self.types.iter().position(|(_, fl)| fl.contains(want) && !fl.intersects(not | never)).map(|t| t as u32)
    }

    /// Memory types a buffer of `intent` may use, best first.
    pub fn preference(&self, intent: MemoryIntent) -> Vec<u32> {
        let dl = self.find(F::DEVICE_LOCAL, F::HOST_VISIBLE);
        let dlhv = self.find(F::DEVICE_LOCAL | F::HOST_VISIBLE | F::HOST_COHERENT, F::empty());
        let hv_wc = self.find(F::HOST_VISIBLE | F::HOST_COHERENT, F::DEVICE_LOCAL | F::HOST_CACHED);
        let hvc = self.find(F::HOST_VISIBLE | F::HOST_COHERENT | F::HOST_CACHED, F::DEVICE_LOCAL);
        use MemoryIntent::*;
        let list = if self.uma {
            match intent {
                Weights => vec![dlhv, dl, hv_wc, hvc],
                Scratch => vec![dl, dlhv, hv_wc, hvc],
                Upload => vec![dlhv, hv_wc, hvc],
                Readback => vec![hvc, hv_wc, dlhv],
            }
        } else {
            match intent {
                Weights if self.full_bar => vec![dlhv, dl],
                Scratch if self.full_bar => vec![dl, dlhv],
                Weights | Scratch => vec![dl],
                Upload => vec![dlhv, hv_wc, hvc],
                Readback => vec![hvc, hv_wc, dlhv],
            }
        };
        let mut out: Vec<u32> = Vec::new();
        for t in list.into_iter().flatten() {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }

    fn is_amd_apu(&self) -> bool {
        self.vendor_id == 0x1002 && self.kind == DeviceKind::Integrated
    }
}

/// One buffer a load will create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The buffer's name, exactly as the loader names it (placements are looked up by it).
    pub name: String,
    /// What it belongs to, for the summary (`thinker weights`, `thinker KV cache`, …).
    pub group: String,
    pub intent: MemoryIntent,
    pub size: u64,
    /// The largest range one binding of it covers (the whole buffer unless the kernels bind pieces).
    pub bind: u64,
}

impl Request {
    pub fn new(name: impl Into<String>, group: impl Into<String>, intent: MemoryIntent, size: u64) -> Request {
        Request { name: name.into(), group: group.into(), intent, size, bind: size }
    }
}

/// Where one request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub memory_type: u32,
    pub heap: u32,
    /// Written through a staging buffer (the type is not host visible).
    pub staged: bool,
}

/// Bytes per heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapUse {
    /// What the plan puts there (on refusal: also what it could not place, at its first choice).
    pub needed: u64,
    pub available: u64,
}

/// A plan that fits.
#[derive(Debug, Clone)]
pub struct Plan {
    pub table: MemoryTable,
    pub requests: Vec<Request>,
    /// One per request.
    pub placements: Vec<Placement>,
    pub heaps: Vec<HeapUse>,
}

/// A buffer over a device limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitViolation {
    pub name: String,
    pub size: u64,
    pub limit: &'static str,
    pub max: u64,
}

/// The heaps' side of a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// Per heap: its description and (needed, available).
    pub heaps: Vec<(HeapDesc, HeapUse)>,
    /// Total bytes of the requests, and of what found no room.
    pub total: u64,
    pub unplaced: u64,
    /// The first buffer that found no room.
    pub first: String,
}

/// Why a plan was refused: buffers over a device limit, not enough memory, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub device: String,
    pub violations: Vec<LimitViolation>,
    pub shortfall: Option<Box<Shortfall>>,
    /// What to change on the device's side.
    pub hints: Vec<String>,
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB ({b} bytes)", b as f64 / (1u64 << 30) as f64)
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let device = &self.device;
        if let Some(sf) = &self.shortfall {
            let Shortfall { heaps, total, unplaced, first } = sf.as_ref();
            let avail: u64 = heaps.iter().map(|(_, u)| u.available).sum();
            write!(
                f,
                "the model does not fit {device}'s memory: it needs {} in all, {} of it finds no room \
                 (first: '{first}'); available in all heaps: {}",
                gib(*total),
                gib(*unplaced),
                gib(avail)
            )?;
            for (i, (h, u)) in heaps.iter().enumerate() {
                write!(
                    f,
                    "\n  heap {i} ({}, size {}): needed {}, available {}{}",
                    if h.device_local { "DEVICE_LOCAL" } else { "host" },
                    gib(h.size),
                    gib(u.needed),
                    gib(u.available),
                    if h.budget.is_some() { " (VK_EXT_memory_budget)" } else { "" }
                )?;
            }
            if !self.violations.is_empty() {
                writeln!(f)?;
            }
        }
        if !self.violations.is_empty() {
            write!(f, "{device}: {} buffer(s) exceed a device limit:", self.violations.len())?;
            for v in self.violations.iter().take(8) {
                write!(f, "\n  '{}': {} bytes > {} ({} bytes)", v.name, v.size, v.limit, v.max)?;
            }
            if self.violations.len() > 8 {
                write!(f, "\n  … and {} more", self.violations.len() - 8)?;
            }
            write!(
                f,
                "\n  the loaders cannot split these buffers (one per tensor, or one per layer and projection \
                 for the experts); a smaller context (-c) shrinks the per-position ones"
            )?;
        }
        for h in &self.hints {
            write!(f, "\n  {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanError {}

/// Device-side advice for a refusal (the model side adds context size and cache type).
fn device_hints(t: &MemoryTable) -> Vec<String> {
    let mut h = Vec::new();
    if t.is_amd_apu() {
        h.push(
            "raise the memory the GPU may use: a larger BIOS carve-out (UMA frame buffer size), or a larger GTT \
             through the kernel parameter ttm.pages_limit=<4 KiB pages> (amdgpu.gttsize is deprecated)"
                .into(),
        );
        if t.driver.to_ascii_lowercase().contains("radv") && t.heaps.len() > 1 {
            h.push(
                "on RADV, the driconf option radv_enable_unified_heap_on_apu=true makes the two heaps one \
                 DEVICE_LOCAL heap of their total"
                    .into(),
            );
        }
    } else if t.kind == DeviceKind::Cpu {
        h.push(
            "this is a CPU implementation (lavapipe): its heap is the size the driver reports (2 GiB in Mesa \
             22.3), not the machine's free RAM"
                .into(),
        );
    } else if t.kind == DeviceKind::Discrete {
        h.push("weights and caches must fit the device-local heap; a GPU with more memory is needed".into());
    }
    h
}

/// Places `requests` (in load order) on `table`, or says why they cannot be.
pub fn plan(table: &MemoryTable, requests: &[Request]) -> Result<Plan, PlanError> {
    let mut violations = Vec::new();
    for r in requests {
        for (limit, max, v) in [
            ("maxMemoryAllocationSize", table.max_allocation, r.size),
            ("maxBufferSize", table.max_buffer, r.size),
            ("maxStorageBufferRange (one binding)", table.max_storage_range, r.bind),
        ] {
            if v > max {
                violations.push(LimitViolation { name: r.name.clone(), size: v, limit, max });
                break;
            }
        }
    }
    let mut heaps: Vec<HeapUse> = table.heaps.iter().map(|h| HeapUse { needed: 0, available: h.available() }).collect();
    let mut used = vec![0u64; heaps.len()];
    let mut placements = Vec::with_capacity(requests.len());
    let mut unplaced = 0u64;
    let mut first = None;
    let mut staging = false;
    let mut all = requests.to_vec();
    let mut i = 0;
    while i < all.len() {
        let r = &all[i];
        let size = r.size.div_ceil(ALIGN) * ALIGN;
        let pref = table.preference(r.intent);
        let fits = pref.iter().copied().find(|&t| {
            let h = table.types[t as usize].0 as usize;
            used[h] + size <= heaps[h].available
        });
        match (fits, pref.first()) {
            (Some(t), _) => {
                let h = table.types[t as usize].0;
                used[h as usize] += size;
                heaps[h as usize].needed += size;
                let hv = table.types[t as usize].1.contains(F::HOST_VISIBLE);
                let staged = r.intent == MemoryIntent::Weights && !hv;
                placements.push(Placement { memory_type: t, heap: h, staged });
                if staged && !staging {
                    // One staging piece lives while weights are written through staging.
                    staging = true;
                    let piece = requests.iter().map(|r| r.size).max().unwrap_or(0).min(STAGING_PIECE);
                    all.push(Request::new("weight upload (staging)", "staging", MemoryIntent::Upload, piece));
                }
            }
            (None, Some(&t)) => {
                let h = table.types[t as usize].0 as usize;
                heaps[h].needed += size;
                unplaced += size;
                first.get_or_insert_with(|| r.name.clone());
                placements.push(Placement { memory_type: t, heap: h as u32, staged: false });
            }
            (None, None) => {
                violations.push(LimitViolation {
                    name: r.name.clone(),
                    size: r.size,
                    limit: "a memory type for its use (none has the flags it needs)",
                    max: 0,
                });
                placements.push(Placement { memory_type: u32::MAX, heap: u32::MAX, staged: false });
            }
        }
        i += 1;
    }
    let shortfall = first.map(|first| {
        Box::new(Shortfall {
            heaps: table.heaps.iter().cloned().zip(heaps.iter().copied()).collect(),
            total: all.iter().map(|r| r.size.div_ceil(ALIGN) * ALIGN).sum(),
            unplaced,
            first,
        })
    });
    if shortfall.is_some() || !violations.is_empty() {
        let hints = if shortfall.is_some() { device_hints(table) } else { Vec::new() };
        return Err(PlanError { device: table.device.clone(), violations, shortfall, hints });
    }
    Ok(Plan { table: table.clone(), requests: all, placements, heaps })
}

impl Plan {
    /// Buffer name → memory type, for [`crate::Gpu::set_placements`].
    pub fn placement_map(&self) -> HashMap<String, u32> {
        self.requests.iter().zip(&self.placements).map(|(r, p)| (r.name.clone(), p.memory_type)).collect()
    }

    /// Where `name` goes, if planned.
    pub fn placement_of(&self, name: &str) -> Option<Placement> {
        self.requests.iter().position(|r| r.name == name).map(|i| self.placements[i])
    }

    /// Bytes per (group, heap), in first-seen group order.
    pub fn by_group(&self) -> Vec<(String, BTreeMap<u32, u64>)> {
        let mut out: Vec<(String, BTreeMap<u32, u64>)> = Vec::new();
        for (r, p) in self.requests.iter().zip(&self.placements) {
            let i = match out.iter().position(|(g, _)| *g == r.group) {
                Some(i) => i,
                None => {
                    out.push((r.group.clone(), BTreeMap::new()));
                    out.len() - 1
                }
            };
            *out[i].1.entry(p.heap).or_default() += r.size;
        }
        out
    }

    /// Total bytes of the group.
    pub fn group_bytes(&self, group: &str) -> u64 {
        self.requests.iter().filter(|r| r.group == group).map(|r| r.size).sum()
    }

    /// Bytes the plan puts on `heap`.
    pub fn heap_bytes(&self, heap: u32) -> u64 {
        self.requests.iter().zip(&self.placements).filter(|(_, p)| p.heap == heap).map(|(r, _)| r.size).sum()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.table;
        writeln!(f, "memory plan on {} ({:?}, UMA {}, full BAR {}):", t.device, t.kind, t.uma, t.full_bar)?;
        for (i, (h, u)) in t.heaps.iter().zip(&self.heaps).enumerate() {
            writeln!(
                f,
                "  heap {i} ({}): {} planned of {} available (size {})",
                if h.device_local { "DEVICE_LOCAL" } else { "host" },
                gib(self.heap_bytes(i as u32)),
                gib(u.available),
                gib(h.size)
            )?;
        }
        for (g, per_heap) in self.by_group() {
            let parts: Vec<String> = per_heap.iter().map(|(h, b)| format!("heap {h}: {b} bytes")).collect();
            let types: Vec<String> = {
                let mut ts: Vec<u32> = self
                    .requests
                    .iter()
                    .zip(&self.placements)
                    .filter(|(r, _)| r.group == g)
                    .map(|(_, p)| p.memory_type)
                    .collect();
                ts.sort_unstable();
                ts.dedup();
                ts.iter().map(|&x| format!("type {x} {:?}", t.types[x as usize].1)).collect()
            };
            writeln!(f, "  {g}: {} — {} — {}", gib(self.group_bytes(&g)), parts.join(", "), types.join(", "))?;
        }
        Ok(())
    }
}
