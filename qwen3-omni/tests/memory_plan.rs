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

#[test]
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
