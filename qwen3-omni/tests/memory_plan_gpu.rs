//! The memory plan on this machine's device (lavapipe in CI, validation on): the Thinker's planned
//! buffers are exactly those its load and first prefill create, in the planned heap; a model that
//! does not fit is refused by `Model::load` before any weight is placed, with needed and available
//! bytes; `devices -m` prints the plan or the refusal.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use qwen3_omni::memory_plan::thinker_requests;
use qwen3_omni::model_file::{ModelError, ModelFile};
use qwen3_omni::session::{LoadOptions, LoadStage, Model, SessionError};
use qwen3_omni::thinker::gpu::GpuThinker;
use qwen3_omni::thinker::ThinkerConfig;
use qwen3_omni_vk::{CacheType, EngineOptions, Kernels};

/// name → sizes (sorted), of a list of (name, size).
fn multiset(v: impl IntoIterator<Item = (String, u64)>) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (n, s) in v {
        m.entry(n).or_default().push(s);
    }
    m.values_mut().for_each(|v| v.sort_unstable());
    m
}

#[test]
fn thinker_plan_is_what_the_load_creates() {
    let (dir, path) = common::tiny_gguf("memplan", "live");
    let m = ModelFile::open(&path).unwrap();
    let c = ThinkerConfig::from_model(&m).unwrap();
    let gpu = common::gpu();
    // The loader's KV cache is f32 today: plan with f32 so the sizes must agree.
    let mut o = EngineOptions::default();
    o.models.cache_type = CacheType::F32;
    let k = Kernels::from_engine(gpu.clone(), &o).unwrap();
    let before: std::collections::HashSet<String> = gpu.live_allocations().into_iter().map(|a| a.name).collect();
    let ctx = 300;
    let mut t = GpuThinker::load(k, &m, ctx, |_, _| {}).unwrap();
    t.prefill(&[1, 2, 3, 4, 5]).unwrap();
    let live: Vec<_> = gpu.live_allocations().into_iter().filter(|a| !before.contains(&a.name)).collect();
    // Every live buffer was placed on the planned heap (lavapipe: heap 0).
    assert!(live.iter().all(|a| a.heap == Some(0)), "{live:?}");
    let got = multiset(live.into_iter().map(|a| (a.name, a.size)));
    let want = multiset(
        thinker_requests(&c, ctx, CacheType::F32, o.models.thinker.router_fold).into_iter().map(|r| (r.name, r.size)),
    );
    let missing: Vec<_> = want.iter().filter(|(n, s)| got.get(*n) != Some(s)).collect();
    let extra: Vec<_> = got.iter().filter(|(n, s)| want.get(*n) != Some(s)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "planned but not created: {missing:?}\ncreated but not planned: {extra:?}"
    );
    assert!(got.len() > 100);
    common::assert_clean(&gpu);
    drop(t);
    let _ = std::fs::remove_dir_all(dir);
}

fn sparse_full_model(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("qwen3vk-memplan-{tag}-{}", std::process::id()));
    let path = common::mem_tables::full_size_model(&dir, true);
    (dir, path)
}

#[test]
fn model_load_refuses_a_model_larger_than_the_heap_before_allocating() {
    let (dir, path) = sparse_full_model("load");
    let heap = common::gpu().memory_table().heaps[0].clone();
    let mut opts = LoadOptions::from_engine(EngineOptions::default());
    opts.validation = true;
    opts.ctx_size = 8192;
    let mut stages = Vec::new();
    let t0 = Instant::now();
    let r = Model::load(&path, &opts, |p| {
        stages.push(p.stage);
        true
    });
    let secs = t0.elapsed().as_secs_f64();
    let e = match r {
        Err(SessionError::Model(ModelError::Memory(e))) => e,
        other => panic!("expected the memory plan's refusal, got {other:?}"),
    };
    // Refused after opening the device and before the Thinker's first layer.
    assert!(!stages.contains(&LoadStage::Thinker), "{stages:?}");
    assert!(secs < 30.0, "took {secs} s: was anything uploaded?");
    let sf = e.source.shortfall.as_ref().expect("a heap shortfall");
    let (needed, available) = (sf.heaps[0].1.needed, sf.heaps[0].1.available);
    assert_eq!(available, heap.available());
    assert!(needed > 30 << 30, "needed {needed}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("needed {:.2} GiB ({needed} bytes)", needed as f64 / (1u64 << 30) as f64)),
        "{text}"
    );
    assert!(text.contains(&format!("({available} bytes)")), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

fn cli(args: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"));
    c.args(args).env("QWEN3VK_VALIDATION", "1").env_remove("QWEN3VK_LOG");
    c.output().unwrap()
}

#[test]
fn devices_m_prints_the_plan_or_the_refusal() {
    let (dir, path) = common::tiny_gguf("memplan", "cli");
    let out = cli(&["devices", "-m", path.to_str().unwrap(), "-c", "512", "--cache-type", "q8_0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "memory plan of",
        "-c 512, --cache-type q8_0",
        "thinker weights",
        "thinker KV cache",
        "heap 0",
        "talker weights",
    ] {
        assert!(stdout.contains(want), "missing {want:?}:\n{stdout}");
    }
    let m = ModelFile::open(&path).unwrap();
    let c = ThinkerConfig::from_model(&m).unwrap();
    let kv = qwen3_omni::memory_plan::thinker_kv_bytes(&c, 512, CacheType::Q8_0);
    assert!(
        stdout.contains(&format!("thinker KV cache: {:.2} GiB ({kv} bytes)", kv as f64 / (1u64 << 30) as f64)),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);

    let (dir, path) = sparse_full_model("cli");
    let out = cli(&["devices", "-m", path.to_str().unwrap(), "-c", "8192"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    eprintln!("devices -m on the full-size model:\n{stderr}");
    for want in ["does not fit", "needed", "available", "bytes)", "`chat` would be refused", "--cache-type"] {
        assert!(stderr.contains(want), "missing {want:?}:\n{stderr}");
    }
    let bad = cli(&["devices", "-m", path.to_str().unwrap(), "--cache-type", "q4"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a KV cache type (f16, q8_0 or f32)"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn placements_are_honoured_and_usage_is_counted() {
    use qwen3_omni_vk::vk_runtime::MemoryIntent;
    let gpu = common::gpu();
    let t0 = gpu.memory_table();
    let used0 = t0.heaps[0].usage.unwrap_or(0);
    let weights_type = t0.preference(MemoryIntent::Weights)[0];
    gpu.set_placements([("planned w".to_string(), weights_type), ("planned bad".to_string(), 99)].into());
    let mut w = gpu.buffer("planned w", 1 << 20, MemoryIntent::Weights).unwrap();
    // UMA: weights in a host-visible type are written in place.
    assert!(w.mapped_mut().is_some());
    let a = gpu.live_allocations().into_iter().find(|a| a.name == "planned w").unwrap();
    assert_eq!(a.heap, Some(t0.types[weights_type as usize].0));
    let e = gpu.buffer("planned bad", 256, MemoryIntent::Scratch).unwrap_err().to_string();
    assert!(e.contains("planned memory type 99 does not exist"), "{e}");
    if !gpu.caps().memory_budget {
        // Without VK_EXT_memory_budget, usage is what this process placed.
        let t1 = gpu.memory_table();
        assert_eq!(t1.heaps[0].usage.unwrap(), used0 + (1 << 20));
        assert_eq!(t1.heaps[0].available(), t0.heaps[0].available() - (1 << 20));
    }
    drop(w);
    common::assert_clean(&gpu);
}

#[test]
fn the_c_api_load_gets_the_same_refusal() {
    use qwen3_omni::capi::*;
    use std::ffi::{CStr, CString};
    let (dir, path) = sparse_full_model("capi");
    let avail = common::gpu().memory_table().heaps[0].available();
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let mut p = qwen3_omni_model_default_params();
    p.ctx_size = 8192;
    p.validation = true;
    p.pipeline_cache_dir = c"".as_ptr();
    let mut m = std::ptr::null_mut();
    let s = unsafe { qwen3_omni_model_load(c_path.as_ptr(), &p, &mut m) };
    let err = unsafe { CStr::from_ptr(qwen3_omni_last_error()) }.to_string_lossy().into_owned();
    assert_eq!(s, QWEN3_OMNI_ERR_DEVICE, "{err}");
    assert!(m.is_null());
    assert!(
        err.contains("does not fit") && err.contains("needed") && err.contains(&format!("({avail} bytes)")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
