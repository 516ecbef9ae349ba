//! `devices -m MODEL`: the memory plan of a model file on the chosen device, before any loading.

use std::path::Path;

use anyhow::Context;
use qwen3_omni::memory_plan::{plan_model, PlanOptions};
use qwen3_omni::model_file::ModelFile;
use qwen3_omni_vk::CacheType;

/// Prints where `chat` (Thinker, AudioTower) and `chat --audio-out` (also Talker and Code2Wav)
/// would place every buffer, per component and heap; an error when the model does not fit.
pub fn run(model: &Path, ctx: u32, cache: Option<CacheType>, device: Option<usize>) -> anyhow::Result<()> {
    crate::check::ctx_size(ctx)?;
    let m = ModelFile::open(model)?;
    qwen3_omni::config_check::check_model(&m)?;
    let o = crate::common::engine_options();
    let cache = cache.unwrap_or(o.models.cache_type);
    let gpu = crate::common::open_gpu(device)?;
    let table = gpu.memory_table();
    let base = PlanOptions { router_fold: o.models.thinker.router_fold, ..PlanOptions::all(ctx, cache) };
    outln!("memory plan of {} at -c {ctx}, --cache-type {cache}:", model.display());
    let chat = plan_model(&m, &table, &base.only(true, true, false, false))
        .with_context(|| format!("{}: `chat` would be refused", model.display()))?;
    outln!("chat (Thinker and AudioTower):");
    outln!("{chat}");
    match plan_model(&m, &table, &base) {
        Ok(all) => {
            outln!("chat --audio-out (all components; a Talker context of {ctx} positions):");
            outln!("{all}");
        }
        Err(e) => {
            outln!("chat --audio-out would be refused (text chat fits):\n{e}");
        }
    }
    Ok(())
}
