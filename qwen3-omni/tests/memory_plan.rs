//! The memory planner on recorded memory tables (no GPU): the full-size Qwen3-Omni model (its real
//! tensor list, from a header-only synthetic GGUF) at contexts 8192 and 32768 with f32, f16 and
//! q8_0 KV caches, on RADV's Strix Halo heaps, AMD's 2 GiB-cap driver, an H200 with and without
//! resizable BAR, and lavapipe.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::mem_tables::{self, GIB};
use qwen3_omni::memory_plan::{model_requests, plan_model, thinker_kv_bytes, PlanOptions};
use qwen3_omni::model_file::{ModelError, ModelFile};
use qwen3_omni::thinker::ThinkerConfig;
use qwen3_omni_vk::vk_runtime::vk::MemoryPropertyFlags as F;
use qwen3_omni_vk::vk_runtime::{plan, MemoryIntent, MemoryTable, Plan, PlanError, Request};
use qwen3_omni_vk::CacheType;

fn model() -> &'static ModelFile {
    static M: OnceLock<ModelFile> = OnceLock::new();
    M.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("qwen3vk-memplan-{}", std::process::id()));
        let path: PathBuf = mem_tables::full_size_model(&dir, false);
        let m = ModelFile::open(&path).unwrap();
        // The map stays valid after the name is gone.
        let _ = std::fs::remove_dir_all(&dir);
        m
    })
}

fn opts(ctx: u32, cache: CacheType) -> PlanOptions {
    PlanOptions::all(ctx, cache).only(true, true, false, false)
}

fn try_plan(t: &MemoryTable, ctx: u32, cache: CacheType) -> Result<Plan, PlanError> {
    match plan_model(model(), t, &opts(ctx, cache)) {
        Ok(p) => Ok(p),
        Err(ModelError::Memory(e)) => Err(e.source),
        Err(e) => panic!("not a memory error: {e}"),
    }
}

fn all_opts(ctx: u32, cache: CacheType) -> PlanOptions {
    PlanOptions::all(ctx, cache)
}

fn flags(p: &Plan, i: usize) -> F {
    p.table.types[p.placements[i].memory_type as usize].1
}

/// Bytes of `group` on `heap`.
fn on_heap(p: &Plan, group: &str, heap: u32) -> u64 {
    p.requests.iter().zip(&p.placements).filter(|(r, q)| r.group == group && q.heap == heap).map(|(r, _)| r.size).sum()
}

#[test]
fn kv_cache_bytes_follow_ctx_and_cache_type() {
    let c = ThinkerConfig::from_model(model()).unwrap();
    // 48 layers, 4 KV heads × 128: K and V rows of 512 values.
    assert_eq!((c.layers, c.n_kv_heads * c.head_dim), (48, 512));
    assert_eq!(thinker_kv_bytes(&c, 32768, CacheType::F32), 2 * 48 * 32768 * 2048);
    assert_eq!(thinker_kv_bytes(&c, 32768, CacheType::F32), 6 * GIB);
    assert_eq!(thinker_kv_bytes(&c, 32768, CacheType::F16), 3 * GIB);
    assert_eq!(thinker_kv_bytes(&c, 8192, CacheType::Q8_0), 2 * 48 * 8192 * (512 / 32 * 34));
    let r = model_requests(model(), &opts(8192, CacheType::Q8_0)).unwrap();
    let kv: u64 = r.iter().filter(|q| q.group == "thinker KV cache").map(|q| q.size).sum();
    assert_eq!(kv, thinker_kv_bytes(&c, 8192, CacheType::Q8_0));
    assert_eq!(r.iter().filter(|q| q.group == "thinker KV cache").count(), 96);
}

#[test]
fn full_size_request_list() {
    let r = model_requests(model(), &all_opts(8192, CacheType::F16)).unwrap();
    let group = |g: &str| r.iter().filter(|q| q.group == g).map(|q| q.size).sum::<u64>();
    // 30.5 B Thinker parameters in planar Q8_0 (1.0625 bytes each) plus the f32 routers and the
    // folded router matrices: 30–31 GiB; the Talker ~3 B parameters; the AudioTower ~0.65 B.
    let tw = group("thinker weights");
    assert!((30 * GIB..31 * GIB).contains(&tw), "thinker weights {tw}");
    assert!((2 * GIB..5 * GIB).contains(&group("talker weights")), "talker {}", group("talker weights"));
    assert!((GIB / 2..GIB).contains(&group("audio tower weights")));
    assert!(group("code2wav weights") > 0);
    // One stacked buffer per layer and projection for the experts (48 Thinker + 20 Talker layers).
    let stacks = r.iter().filter(|q| q.name.contains(".mlp.experts.*.")).count();
    assert_eq!(stacks, 3 * (48 + 20));
    let largest = r.iter().max_by_key(|q| q.size).unwrap();
    assert!(largest.size < GIB, "{} is {} bytes", largest.name, largest.size);
}

#[test]
fn radv_64g_carveout_fits_everything_in_device_local() {
    let t = mem_tables::radv_64g_carveout();
    for ctx in [8192, 32768] {
        for c in CacheType::ALL {
            let p = plan_model(model(), &t, &all_opts(ctx, c)).unwrap();
            let weights = ["thinker weights", "talker weights", "audio tower weights", "code2wav weights"];
            for g in weights {
                assert_eq!(on_heap(&p, g, 0), 0, "{g} spilled at ctx {ctx} {c}");
                assert_eq!(on_heap(&p, g, 1), p.group_bytes(g));
            }
            for (i, r) in p.requests.iter().enumerate() {
                let f = flags(&p, i);
                match r.intent {
                    // Weights written in place: DEVICE_LOCAL|HOST_VISIBLE, never a 32-bit or AMD copy.
                    MemoryIntent::Weights => assert_eq!(p.placements[i].memory_type, 2, "{}", r.name),
                    MemoryIntent::Scratch => assert_eq!(p.placements[i].memory_type, 0, "{}", r.name),
                    MemoryIntent::Readback => assert!(f.contains(F::HOST_CACHED), "{}", r.name),
                    MemoryIntent::Upload => assert!(f.contains(F::HOST_VISIBLE), "{}", r.name),
                }
                assert!(!p.placements[i].staged);
            }
        }
    }
}

/// The case: 512 MiB carve-out + default GTT (DEVICE_LOCAL heap ≈ 43 GiB, host ≈ 21 GiB).
#[test]
fn radv_512m_default_gtt_spills_weights_to_the_host_heap() {
    let t = mem_tables::radv_512m_default_gtt();
    let dl_avail = t.heaps[1].available();
    // Thinker and AudioTower alone fit the DEVICE_LOCAL heap at every size.
    for ctx in [8192, 32768] {
        for c in CacheType::ALL {
            let p = try_plan(&t, ctx, c).unwrap();
            assert_eq!(on_heap(&p, "thinker weights", 0), 0);
        }
    }
    // Everything (with speech) at 32k f32 needs more than that heap: the plan spills.
    let p = plan_model(model(), &t, &all_opts(32768, CacheType::F32)).unwrap();
    let total: u64 = p.requests.iter().map(|r| r.size).sum();
    assert!(total > dl_avail, "total {total} ≤ DEVICE_LOCAL budget {dl_avail}: the case no longer spills");
    assert!(p.heaps[1].needed <= dl_avail);
    assert!(p.heaps[0].needed <= p.heaps[0].available);
    let spilled: Vec<usize> = (0..p.requests.len()).filter(|&i| p.placements[i].heap == 0).collect();
    let spilled_weights: u64 =
        spilled.iter().filter(|&&i| p.requests[i].intent == MemoryIntent::Weights).map(|&i| p.requests[i].size).sum();
    assert!(spilled_weights > 0);
    // Spilled weights sit in the write-combined host type (type 1), written in place.
    for &i in &spilled {
        if p.requests[i].intent == MemoryIntent::Weights {
            assert_eq!(flags(&p, i), F::HOST_VISIBLE | F::HOST_COHERENT, "{}", p.requests[i].name);
            assert!(!p.placements[i].staged);
        }
    }
    // The first spilled weight buffer did not fit what the DEVICE_LOCAL heap had left then.
    let first = spilled.iter().copied().find(|&i| p.requests[i].intent == MemoryIntent::Weights).unwrap();
    let before: u64 =
        (0..first).filter(|&i| p.placements[i].heap == 1).map(|i| p.requests[i].size.div_ceil(256) * 256).sum();
    assert!(before + p.requests[first].size > dl_avail, "{} spilled with room left", p.requests[first].name);
    // The same with an f16 cache: 3 GiB less, nothing needs to move.
    let p16 = plan_model(model(), &t, &all_opts(32768, CacheType::F16)).unwrap();
    let w16: u64 = (0..p16.requests.len())
        .filter(|&i| p16.placements[i].heap == 0 && p16.requests[i].intent == MemoryIntent::Weights)
        .map(|i| p16.requests[i].size)
        .sum();
    assert!(w16 < spilled_weights);
}

#[test]
fn radv_120g_gtt_and_unified_heap_fit_without_spill() {
    for t in [mem_tables::radv_512m_120g_gtt(), mem_tables::radv_unified()] {
        for ctx in [8192, 32768] {
            for c in CacheType::ALL {
                let p = plan_model(model(), &t, &all_opts(ctx, c)).unwrap();
                let dl = t.heaps.iter().position(|h| h.device_local).unwrap() as u32;
                for (i, r) in p.requests.iter().enumerate() {
                    if matches!(r.intent, MemoryIntent::Weights | MemoryIntent::Scratch) {
                        assert_eq!(p.placements[i].heap, dl, "{}: {} off the DEVICE_LOCAL heap", t.device, r.name);
                    }
                }
            }
        }
    }
    // The unified heap has no HOST_CACHED type: readbacks take a host-visible type anyway.
    let p = plan_model(model(), &mem_tables::radv_unified(), &all_opts(8192, CacheType::F16)).unwrap();
    let i = p.requests.iter().position(|r| r.intent == MemoryIntent::Readback).unwrap();
    assert!(flags(&p, i).contains(F::HOST_VISIBLE | F::HOST_COHERENT));
}

#[test]
fn a_small_apu_is_refused_with_numbers_and_advice() {
    // 512 MiB carve-out + 24 GiB GTT: 16.3 GiB DEVICE_LOCAL + 8.2 GiB host, less than the weights.
    let t = mem_tables::radv_apu(512 << 20, 24 * GIB);
    let err = match plan_model(model(), &t, &opts(32768, CacheType::F32)) {
        Err(ModelError::Memory(e)) => e,
        other => panic!("expected a refusal, got {:?}", other.map(|p| p.heaps)),
    };
    let sf = err.source.shortfall.as_ref().unwrap();
    assert!(sf.total > t.heaps.iter().map(|h| h.available()).sum::<u64>());
    let text = err.to_string();
    for (h, u) in &sf.heaps {
        assert!(text.contains(&format!("({} bytes)", u.needed)), "{text}");
        assert!(text.contains(&format!("({} bytes)", u.available)), "{text}");
        assert!(u.needed >= u.available.min(1) || !h.device_local);
    }
    for want in [
        "needed",
        "available",
        "ttm.pages_limit",
        "carve-out",
        "radv_enable_unified_heap_on_apu",
        "--cache-type f16",
        "-c",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(text.contains(&6442450944u64.to_string()), "KV cache bytes at -c 32768 f32:\n{text}");
}

#[test]
fn amd_2gib_cap_fits_and_larger_buffers_are_named() {
    let t = mem_tables::amd_windows();
    for ctx in [8192, 32768] {
        for c in CacheType::ALL {
            let p = plan_model(model(), &t, &all_opts(ctx, c)).unwrap();
            assert!(p.requests.iter().all(|r| r.size <= 2 * GIB));
        }
    }
    let big = Request::new("a 3 GiB tensor", "test", MemoryIntent::Weights, 3 * GIB);
    let e = plan(&t, &[big]).unwrap_err();
    assert_eq!(e.violations.len(), 1);
    assert_eq!(e.violations[0].limit, "maxMemoryAllocationSize");
    assert_eq!(e.violations[0].max, 2 * GIB);
    assert!(e.to_string().contains("'a 3 GiB tensor': 3221225472 bytes > maxMemoryAllocationSize (2147483648 bytes)"));
}

#[test]
fn h200_with_and_without_resizable_bar() {
    for ctx in [8192, 32768] {
        for c in CacheType::ALL {
            let p = plan_model(model(), &mem_tables::nvidia_h200(true), &all_opts(ctx, c)).unwrap();
            for (i, r) in p.requests.iter().enumerate() {
                match r.intent {
                    MemoryIntent::Weights => {
                        assert_eq!(p.placements[i].memory_type, 5, "{}", r.name);
                        assert!(!p.placements[i].staged);
                    }
                    MemoryIntent::Scratch => assert_eq!(p.placements[i].memory_type, 1, "{}", r.name),
                    _ => {}
                }
            }
            assert!(!p.requests.iter().any(|r| r.group == "staging"));
            let p = plan_model(model(), &mem_tables::nvidia_h200(false), &all_opts(ctx, c)).unwrap();
            for (i, r) in p.requests.iter().enumerate() {
                if r.intent == MemoryIntent::Weights {
                    assert_eq!(p.placements[i].memory_type, 1, "{}", r.name);
                    assert!(p.placements[i].staged);
                }
            }
            let staging: Vec<&Request> = p.requests.iter().filter(|r| r.group == "staging").collect();
            assert_eq!(staging.len(), 1);
            assert_eq!(staging[0].size, 64 << 20);
            assert_eq!(
                p.heap_bytes(0) - on_heap(&p, "staging", 0),
                p.requests
                    .iter()
                    .zip(&p.placements)
                    .filter(|(r, q)| q.heap == 0 && matches!(r.intent, MemoryIntent::Weights | MemoryIntent::Scratch))
                    .map(|(r, _)| r.size)
                    .sum::<u64>()
            );
        }
    }
}

#[test]
fn discrete_never_spills_to_host_memory() {
    let mut t = mem_tables::nvidia_h200(true);
    t.heaps[0].budget = Some(20 * GIB);
    let e = try_plan(&t, 8192, CacheType::F16).unwrap_err();
    let sf = e.shortfall.as_ref().unwrap();
    let (host, dev) = (sf.heaps[1].1, sf.heaps[0].1);
    assert!(dev.needed > 30 * GIB && dev.available == 20 * GIB);
    // The host heap (96 GiB free) holds only the small host-visible buffers.
    assert!(host.needed < (1 << 20), "{host:?}");
    let text = e.to_string();
    assert!(text.contains("needed") && text.contains(&(20 * GIB).to_string()), "{text}");
}

#[test]
fn lavapipe_refuses_the_full_model_with_both_reasons() {
    let e = try_plan(&mem_tables::lavapipe(), 8192, CacheType::F16).unwrap_err();
    let sf = e.shortfall.as_ref().unwrap();
    assert_eq!(sf.heaps.len(), 1);
    assert_eq!(sf.heaps[0].1.available, 2 * GIB);
    assert!(sf.heaps[0].1.needed > 30 * GIB);
    // Expert stacks (~214 MB) exceed the 128 MiB a binding may cover.
    assert!(e.violations.iter().any(|v| v.name.contains("mlp.experts.*") && v.max == 128 << 20));
    let text = e.to_string();
    assert!(text.contains("available 2.00 GiB (2147483648 bytes)"), "{text}");
}

#[test]
fn types_are_chosen_by_flags_not_index() {
    let t = mem_tables::radv_512m_default_gtt();
    let mut rev = t.clone();
    rev.types.reverse();
    let o = all_opts(32768, CacheType::F32);
    let (a, b) = (plan_model(model(), &t, &o).unwrap(), plan_model(model(), &rev, &o).unwrap());
    for i in 0..a.requests.len() {
        assert_eq!(flags(&a, i), flags(&b, i), "{}", a.requests[i].name);
        assert_eq!(a.placements[i].heap, b.placements[i].heap);
    }
    // Protected and AMD device-coherent types are never chosen, on any table.
    for (name, t) in mem_tables::all() {
        if let Ok(p) = plan_model(model(), &t, &opts(8192, CacheType::F16)) {
            for i in 0..p.requests.len() {
                let f = flags(&p, i);
                assert!(!f.intersects(F::PROTECTED | F::DEVICE_COHERENT_AMD | F::DEVICE_UNCACHED_AMD), "{name}");
            }
        }
    }
}

#[test]
#[ignore = "prints every plan (cargo test --test memory_plan -- --ignored --nocapture)"]
fn print_all() {
    for (name, t) in mem_tables::all() {
        for ctx in [8192, 32768] {
            for c in CacheType::ALL {
                match plan_model(model(), &t, &opts(ctx, c)) {
                    Ok(p) => eprintln!("== {name} ctx {ctx} {c}: OK\n{p}"),
                    Err(e) => eprintln!("== {name} ctx {ctx} {c}: REFUSED\n{e}"),
                }
            }
        }
    }
}
