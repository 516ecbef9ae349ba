//! Recorded memory tables of devices we plan for but do not have, as `MemoryTable`s for the
//! memory planner's tests. Each number says where it comes from: Mesa's
//! `radv_physical_device_init_mem_types` as ../shared/docs/strix-halo.md describes it (derived from
//! source), public reports quoted there, ../shared/docs/gpu.md (the H200 we measure on), and this
//! machine's lavapipe (`qwen3-omni-vk devices`, Mesa 22.3.6). Where a value is assumed, it says so.

use qwen3_omni_vk::vk_runtime::vk::MemoryPropertyFlags as F;
use qwen3_omni_vk::vk_runtime::{DeviceKind, HeapDesc, MemoryTable};

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;

/// RADV: maxMemoryAllocationSize = maxBufferSize = 4 GiB − 4 (`radv_constants.h`, strix-halo.md).
pub const RADV_MAX_ALLOC: u64 = 4 * GIB - 4;
/// RADV's maxStorageBufferRange (UINT32_MAX on gfx11: assumed; it is at least the allocation cap).
pub const RADV_MAX_RANGE: u64 = u32::MAX as u64;

const DL: F = F::DEVICE_LOCAL;
const HV: F = F::HOST_VISIBLE;
const HC: F = F::HOST_COHERENT;
const CACHED: F = F::HOST_CACHED;
const AMD: F = F::from_raw(F::DEVICE_COHERENT_AMD.as_raw() | F::DEVICE_UNCACHED_AMD.as_raw());

/// What the system uses of the GPU's memory besides us (desktop, other processes): assumed 1 GiB.
/// RADV's budget is both heaps' sizes less max(own allocations, system-wide VRAM+GTT use), split
/// ⅔ / ⅓ (strix-halo.md, "VK_EXT_memory_budget").
pub const SYSTEM_USE: u64 = GIB;

fn heap(size: u64, device_local: bool, budget: u64) -> HeapDesc {
    HeapDesc { size, device_local, budget: Some(budget), usage: Some(0) }
}

/// RADV on gfx1151 (Radeon 8060S) with a carve-out of `carve` and a GTT of `gtt` bytes: T = carve +
/// GTT; heap 0 the GTT heap of ⅓·T (no flags), heap 1 the DEVICE_LOCAL heap of ⅔·T (the order of
/// the "2 GB + 105.5 GiB setup showed 35.8 + 71.7 GiB heaps" report); types in RADV's order: the
/// main types, their 32-bit-address copies (same flags), the AMD device-coherent/uncached copies
/// and, as newer Mesa may add, a protected type.
pub fn radv_apu(carve: u64, gtt: u64) -> MemoryTable {
    let t = carve + gtt;
    let (dl, host) = (t / 3 * 2, t / 3);
    let free = t - SYSTEM_USE;
    let heaps = vec![heap(host, false, free / 3), heap(dl, true, free / 3 * 2)];
    let types = vec![
        (1, DL),
        (0, HV | HC),
        (1, DL | HV | HC),
        (0, HV | HC | CACHED),
        (1, DL),               // 32-bit copy
        (1, DL | HV | HC),     // 32-bit copy
        (0, HV | HC | CACHED), // 32-bit copy
        (1, DL | AMD),
        (0, HV | HC | AMD),
        (1, DL | HV | HC | AMD),
        (0, HV | HC | CACHED | AMD),
        (1, DL | F::PROTECTED),
    ];
    MemoryTable::new(
        "AMD Radeon 8060S Graphics (RADV GFX1151)",
        "radv",
        0x1002,
        DeviceKind::Integrated,
        heaps,
        types,
        (RADV_MAX_ALLOC, RADV_MAX_RANGE),
    )
}

/// RADV with `radv_enable_unified_heap_on_apu=true`: one DEVICE_LOCAL heap of T, types DEVICE_LOCAL
/// and DEVICE_LOCAL|HOST_VISIBLE|HOST_COHERENT (and copies), no HOST_CACHED type (strix-halo.md).
pub fn radv_apu_unified(carve: u64, gtt: u64) -> MemoryTable {
    let t = carve + gtt;
    let heaps = vec![heap(t, true, t - SYSTEM_USE)];
    let types = vec![(0, DL), (0, DL | HV | HC), (0, DL), (0, DL | HV | HC), (0, DL | AMD), (0, DL | HV | HC | AMD)];
    MemoryTable::new(
        "AMD Radeon 8060S Graphics (RADV GFX1151, unified heap)",
        "radv",
        0x1002,
        DeviceKind::Integrated,
        heaps,
        types,
        (RADV_MAX_ALLOC, RADV_MAX_RANGE),
    )
}

/// 128 GB Strix Halo, 64 GiB carve-out + 64 GiB GTT: ≈ 85 + 43 GB heaps (strix-halo.md).
pub fn radv_64g_carveout() -> MemoryTable {
    radv_apu(64 * GIB, 64 * GIB)
}

/// 512 MiB carve-out + the default GTT (half of the 128 GB): DEVICE_LOCAL ≈ 43 GB, GTT ≈ 21 GB.
pub fn radv_512m_default_gtt() -> MemoryTable {
    radv_apu(512 * MIB, 64 * GIB)
}

/// 512 MiB carve-out + `ttm.pages_limit` for 120 GiB of GTT: ≈ 80 + 40 GB (LM Studio #935: "120 GB
/// GTT shows ~78–80 GB in Vulkan").
pub fn radv_512m_120g_gtt() -> MemoryTable {
    radv_apu(512 * MIB, 120 * GIB)
}

/// 512 MiB + default GTT with the unified heap option: one 64.5 GiB DEVICE_LOCAL heap.
pub fn radv_unified() -> MemoryTable {
    radv_apu_unified(512 * MIB, 64 * GIB)
}

/// AMD's Windows driver (and AMDVLK) on the same APU: maxMemoryAllocationSize 2 GiB (AMDVLK #413,
/// llama.cpp #15054). Its heaps are assumed, not recorded: a 64 GiB "variable graphics memory"
/// carve-out as the DEVICE_LOCAL heap (with a host-visible type on it, as on UMA) and half of the
/// remaining 64 GiB as a host heap.
pub fn amd_windows() -> MemoryTable {
    let heaps = vec![heap(64 * GIB, true, 64 * GIB - SYSTEM_USE), heap(32 * GIB, false, 32 * GIB)];
    let types = vec![(0, DL), (1, HV | HC), (0, DL | HV | HC), (1, HV | HC | CACHED)];
    MemoryTable::new(
        "AMD Radeon 8060S Graphics (AMD proprietary driver)",
        "AMD proprietary driver",
        0x1002,
        DeviceKind::Integrated,
        heaps,
        types,
        (2 * GIB, 2 * GIB),
    )
}

/// NVIDIA H200 (gpu.md, measured 2026-11-26): heap 0 ~140 GB DEVICE_LOCAL (139 GiB), heap 1 host
/// (its size assumed: the 128 GiB machine), maxStorageBufferRange 4095 MiB. NVIDIA's usual type
/// order: a flag-less type, DEVICE_LOCAL twice, host types, then DEVICE_LOCAL|HOST_VISIBLE|
/// HOST_COHERENT on heap 0 with resizable BAR (measured: "full BAR") or, without it, on a third
/// heap of 256 MiB. maxMemoryAllocationSize assumed 4 GiB.
pub fn nvidia_h200(rebar: bool) -> MemoryTable {
    let mut heaps = vec![heap(139 * GIB, true, 139 * GIB - 512 * MIB), heap(128 * GIB, false, 96 * GIB)];
    let bar_heap = if rebar {
        0
    } else {
        heaps.push(heap(256 * MIB, true, 224 * MIB));
        2
    };
    let types = vec![(1, F::empty()), (0, DL), (0, DL), (1, HV | HC), (1, HV | HC | CACHED), (bar_heap, DL | HV | HC)];
    MemoryTable::new(
        if rebar { "NVIDIA H200 (resizable BAR)" } else { "NVIDIA H200 (256 MiB BAR)" },
        "NVIDIA",
        0x10de,
        DeviceKind::Discrete,
        heaps,
        types,
        (4 * GIB, 4095 * MIB),
    )
}

/// This machine's lavapipe (`qwen3-omni-vk devices`, Mesa 22.3.6, LLVM 15): one 2 GiB
/// DEVICE_LOCAL heap with one DEVICE_LOCAL|HOST_VISIBLE|HOST_COHERENT|HOST_CACHED type, no
/// VK_EXT_memory_budget, maxMemoryAllocationSize 2 GiB, maxBufferSize 4 GiB,
/// maxStorageBufferRange 128 MiB.
pub fn lavapipe() -> MemoryTable {
    let heaps = vec![HeapDesc { size: 2 * GIB, device_local: true, budget: None, usage: None }];
    let mut t = MemoryTable::new(
        "llvmpipe (LLVM 15.0.6, 256 bits)",
        "llvmpipe",
        0x10005,
        DeviceKind::Cpu,
        heaps,
        vec![(0, DL | HV | HC | CACHED)],
        (2 * GIB, 128 * MIB),
    );
    t.max_buffer = 4 * GIB;
    t
}

/// Every recorded table, named.
pub fn all() -> Vec<(&'static str, MemoryTable)> {
    vec![
        ("radv 64G carve-out", radv_64g_carveout()),
        ("radv 512M + default GTT", radv_512m_default_gtt()),
        ("radv 512M + 120G GTT", radv_512m_120g_gtt()),
        ("radv unified heap", radv_unified()),
        ("amd windows", amd_windows()),
        ("h200 rebar", nvidia_h200(true)),
        ("h200 no rebar", nvidia_h200(false)),
        ("lavapipe", lavapipe()),
    ]
}

/// The full-size Qwen3-Omni model as a synthetic GGUF whose tensor data is a hole (header with the
/// real config and tensor list from `quantizer::synthetic`, file extended to its ~32 GB without
/// writing them), optionally with the tokenizer in its metadata (what `Model::load` needs).
pub fn full_size_model(dir: &std::path::Path, with_tokenizer: bool) -> std::path::PathBuf {
    use quantizer::gguf::MetaValue;
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("full-size-sparse.gguf");
    let mut extra = Vec::new();
    if with_tokenizer {
        let tok = super::repo_root().join(qwen3_omni::tokenizer::DEFAULT_TOKENIZER_PATH);
        let text = std::fs::read_to_string(&tok)
            .unwrap_or_else(|e| panic!("{}: {e} (run tools/fetch-tokenizer.sh)", tok.display()));
        extra.push(("tokenizer.huggingface.json".to_string(), MetaValue::String(text)));
    }
    quantizer::synthetic::write_synthetic_sparse(&out, None, extra).unwrap();
    out
}
