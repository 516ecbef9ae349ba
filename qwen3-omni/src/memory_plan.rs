//! The model's side of the memory plan: every buffer a load will create, with its size after
//! repacking, from the opened file, the context size and the KV cache type — then placed on the
//! device's memory table by [`qwen3_omni_vk::vk_runtime::plan`] before anything is allocated.
//!
//! The Thinker's list mirrors its loader exactly (weights, KV caches, decode and prefill scratch;
//! `tests/memory_plan_gpu.rs` compares it with the buffers a load really creates). The other
//! components' weights follow the loaders' rules per tensor (Q8_0 matrices repacked planar, the
//! experts of one projection stacked in one buffer, F16 convolution kernels widened to f32,
//! F32 tensors as they are), plus the Talker's KV caches; their small activation buffers are
//! covered by one reserve per component.

use quantizer::gguf::GgmlType;
use qwen3_omni_vk::layout::PlanarLayout;
use qwen3_omni_vk::vk_runtime::{plan, Gpu, MemoryIntent, MemoryTable, Plan, PlanError, Request};
use qwen3_omni_vk::{CacheType, Kernels};

use crate::model_file::{ModelError, ModelFile};
use crate::thinker::expert_stride;
use crate::thinker::gpu::PREFILL_CHUNK;
use crate::thinker::{ThinkerConfig, ThinkerWeights};

/// Which components a load places, and with which sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Thinker KV cache positions (clamped to the model's maximum as the loader does).
    pub ctx: u32,
    pub cache_type: CacheType,
    /// `ThinkerOptions::router_fold`.
    pub router_fold: bool,
    /// The Thinker ([`crate::Model::load`] places it and, where the file has one, the AudioTower).
    pub thinker: bool,
    pub audio: bool,
    /// The Talker and Code2Wav (the speech pipeline places both).
    pub talker: bool,
    pub code2wav: bool,
    /// Talker context positions (a user turn plus the frames of one reply).
    pub talker_ctx: u32,
}

impl PlanOptions {
    /// Everything a `chat --audio-out` session loads, with a Talker context of `ctx` positions.
    pub fn all(ctx: u32, cache_type: CacheType) -> PlanOptions {
        PlanOptions {
            ctx,
            cache_type,
            router_fold: true,
            thinker: true,
            audio: true,
            talker: true,
            code2wav: true,
            talker_ctx: ctx,
        }
    }

    /// Only the components named (`thinker`, `audio`, `talker`, `code2wav`) of `self`.
    pub fn only(self, thinker: bool, audio: bool, talker: bool, code2wav: bool) -> PlanOptions {
        PlanOptions { thinker, audio, talker, code2wav, ..self }
    }
}

/// Reserved for a component's small activation buffers not listed one by one.
const RESERVE: u64 = 64 << 20;

/// A refused plan, with what to change on the model's side.
#[derive(Debug, thiserror::Error)]
#[error("{source}{}", advice.iter().map(|a| format!("\n  {a}")).collect::<String>())]
pub struct MemoryError {
    pub source: PlanError,
    pub advice: Vec<String>,
}

fn planar(rows: u64, cols: u64) -> u64 {
    PlanarLayout::new(rows, cols).total()
}

/// Bytes of the Thinker's KV caches (K and V of every layer).
pub fn thinker_kv_bytes(c: &ThinkerConfig, ctx: u32, t: CacheType) -> u64 {
    let kvd = (c.n_kv_heads * c.head_dim) as u64;
    2 * c.layers as u64 * ctx.clamp(1, c.max_positions) as u64 * t.row_bytes(kvd)
}

/// The Thinker's buffers in the order `GpuThinker::load` and its first prefill create them.
pub fn thinker_requests(c: &ThinkerConfig, ctx: u32, cache: CacheType, router_fold: bool) -> Vec<Request> {
    let (w, kv, s) = ("thinker weights", "thinker KV cache", "thinker scratch");
    let mut r = Vec::new();
    let mut add = |name: String, group: &str, intent, size| r.push(Request::new(name, group, intent, size));
    let (h, v, hd) = (c.hidden as u64, c.vocab as u64, c.head_dim as u64);
    let (qd, kvd) = ((c.n_heads * c.head_dim) as u64, (c.n_kv_heads * c.head_dim) as u64);
    let (ne, mi) = (c.n_experts as u64, c.moe_inter as u64);
    use MemoryIntent::*;
    add("thinker.model.embed_tokens.weight".into(), w, Weights, planar(v, h));
    let fold = ThinkerWeights::router_fold_wanted(c, router_fold);
    for l in 0..c.layers {
        let n = |s: &str| format!("thinker.model.layers.{l}.{s}");
        add(n("input_layernorm.weight"), w, Weights, 4 * h);
        add(n("self_attn.q_proj.weight"), w, Weights, planar(qd, h));
        add(n("self_attn.k_proj.weight"), w, Weights, planar(kvd, h));
        add(n("self_attn.v_proj.weight"), w, Weights, planar(kvd, h));
        add(n("self_attn.o_proj.weight"), w, Weights, planar(h, qd));
        add(n("self_attn.q_norm.weight"), w, Weights, 4 * hd);
        add(n("self_attn.k_norm.weight"), w, Weights, 4 * hd);
        add(n("post_attention_layernorm.weight"), w, Weights, 4 * h);
        add(n("mlp.gate.weight"), w, Weights, 4 * ne * h);
        add(n("mlp.experts.*.gate_proj.weight"), w, Weights, ne * expert_stride(mi, h));
        add(n("mlp.experts.*.up_proj.weight"), w, Weights, ne * expert_stride(mi, h));
        add(n("mlp.experts.*.down_proj.weight"), w, Weights, ne * expert_stride(h, mi));
        if fold {
            add(n("router_fold"), w, Weights, 4 * ne * (h + qd));
        }
    }
    add("thinker.model.norm.weight".into(), w, Weights, 4 * h);
    add("thinker.lm_head.weight".into(), w, Weights, planar(v, h));
    let ctx = ctx.clamp(1, c.max_positions);
    let ctx64 = ctx as u64;
    for l in 0..c.layers {
        add(format!("k cache {l}"), kv, Scratch, ctx64 * cache.row_bytes(kvd));
        add(format!("v cache {l}"), kv, Scratch, ctx64 * cache.row_bytes(kvd));
    }
    let inter_k = c.top_k as u64 * mi;
    let q81 = |add: &mut dyn FnMut(String, &str, MemoryIntent, u64), values: u64| {
        let values = values.div_ceil(32) * 32;
        add("q8_1 quants".into(), s, Scratch, values);
        add("q8_1 scales".into(), s, Scratch, values / 32 * 8);
    };
    for (name, intent, size) in [
        ("token in", Upload, 4),
        ("cache length", Upload, 4),
        ("positions", Upload, 12),
        ("x", Scratch, 4 * h),
        ("residual", Scratch, 4 * h),
        ("normed", Scratch, 4 * h),
        ("q", Scratch, 4 * qd),
        ("k", Scratch, 4 * kvd),
        ("v", Scratch, 4 * kvd),
        ("attention out", Scratch, 4 * qd),
        ("router logits", Scratch, 4 * ne),
        ("expert ids", Scratch, 4 * c.top_k as u64),
        ("expert weights", Scratch, 4 * c.top_k as u64),
        ("expert hidden", Scratch, 4 * inter_k),
        ("logits", Scratch, 4 * v),
        ("attention scratch", Scratch, Kernels::attn_decode_scratch_bytes(1, c.n_heads, c.head_dim, ctx)),
        ("next token", Readback, 4),
        ("attention counters", Upload, 4 * c.n_kv_heads as u64),
    ] {
        add(name.into(), s, intent, size);
    }
    q81(&mut add, h.max(qd));
    q81(&mut add, inter_k);
    add("thinker hs0".into(), s, Scratch, ctx64 * h * 4);
    add("thinker hs accept".into(), s, Scratch, ctx64 * h * 4);
    add("token history".into(), s, Upload, (ctx64 + 1) * 4);
    add("sampling scratch".into(), s, Scratch, Kernels::sample_scratch_bytes(c.vocab));
    // The prefill's activations, created by the first prefill (kept for the model's life).
    if c.head_dim.is_multiple_of(8) && c.head_dim <= 128 {
        let n = PREFILL_CHUNK.min(ctx) as u64;
        let kk = c.top_k as u64;
        for (name, intent, size) in [
            ("prefill tokens", Upload, n * 4),
            ("prefill positions", Upload, 3 * n * 4),
            ("prefill x", Scratch, n * h * 4),
            ("prefill residual", Scratch, n * h * 4),
            ("prefill normed", Scratch, n * h * 4),
            ("prefill q", Scratch, n * qd * 4),
            ("prefill k", Scratch, n * kvd * 4),
            ("prefill v", Scratch, n * kvd * 4),
            ("prefill attention out", Scratch, n * qd * 4),
            ("prefill o_proj out", Scratch, n * h * 4),
            ("prefill router logits", Scratch, n * ne * 4),
            ("prefill expert ids", Scratch, n * kk * 4),
            ("prefill expert weights", Scratch, n * kk * 4),
            ("prefill expert hidden", Scratch, n * kk * mi * 4),
        ] {
            add(name.into(), s, intent, size);
        }
        q81(&mut add, n * h.max(qd));
        q81(&mut add, n * kk * mi);
    }
    // The hidden-state rows are written by buffer copies only, never bound: no binding limit.
    for q in r.iter_mut().filter(|q| q.name.starts_with("thinker hs")) {
        q.bind = 0;
    }
    r
}

/// The weights of every tensor under `prefix` as the loaders place them (see the module doc).
fn file_weights(m: &ModelFile, prefix: &str, group: &str) -> Vec<Request> {
    let mut out: Vec<Request> = Vec::new();
    for t in m.gguf.header.tensors.iter().filter(|t| t.name.starts_with(prefix)) {
        // GGUF dims are innermost first: a [rows, cols] matrix has dims [cols, rows].
        let elems: u64 = t.dims.iter().product();
        let (cols, rows) = (t.dims[0], elems / t.dims[0].max(1));
        let size = match t.ty {
            GgmlType::Q8_0 => planar(rows, cols),
            _ => elems * 4,
        };
        if let Some((head, tail)) = expert_split(&t.name) {
            let name = format!("{head}.*.{tail}");
            let stride = expert_stride(rows, cols);
            match out.iter_mut().find(|r| r.name == name) {
                Some(r) => {
                    r.size += stride;
                    r.bind = r.size;
                }
                None => out.push(Request::new(name, group, MemoryIntent::Weights, stride)),
            }
        } else {
            out.push(Request::new(t.name.clone(), group, MemoryIntent::Weights, size));
        }
    }
    out
}

/// `a.mlp.experts.7.gate_proj.weight` → (`a.mlp.experts`, `gate_proj.weight`).
fn expert_split(name: &str) -> Option<(&str, &str)> {
    let i = name.find(".mlp.experts.")? + ".mlp.experts".len();
    let rest = &name[i + 1..];
    let dot = rest.find('.')?;
    rest[..dot].parse::<u32>().ok()?;
    Some((&name[..i], &rest[dot + 1..]))
}

/// Every buffer of the components `o` names, in load order.
pub fn model_requests(m: &ModelFile, o: &PlanOptions) -> Result<Vec<Request>, ModelError> {
    let mut r = Vec::new();
    let has = |p: &str| m.gguf.header.tensors.iter().any(|t| t.name.starts_with(p));
    if o.thinker {
        let c = ThinkerConfig::from_model(m)?;
        r.extend(thinker_requests(&c, o.ctx, o.cache_type, o.router_fold));
    }
    if o.audio && has("thinker.audio_tower.") {
        {
            r.extend(file_weights(m, "thinker.audio_tower.", "audio tower weights"));
            let ac = crate::audio::AudioConfig::from_model(m)?;
            let pe = crate::audio::config::conv_len(ac.chunk_frames()) as u64 * ac.d_model as u64 * 4;
            r.push(Request::new("audio positions", "audio tower weights", MemoryIntent::Weights, pe));
            r.push(Request::new(
                "audio tower scratch (reserve)",
                "audio tower scratch",
                MemoryIntent::Scratch,
                RESERVE,
            ));
        }
    }
    if o.talker && has("talker.") {
        let tc = crate::talker::TalkerConfig::from_model(m)?;
        r.extend(file_weights(m, "talker.", "talker weights"));
        let ctx = o.talker_ctx.clamp(16, tc.talker.max_positions) as u64;
        for (tag, d, n) in [("talker", &tc.talker, ctx), ("code predictor", &tc.predictor, tc.groups as u64)] {
            let kvd = (d.n_kv_heads * d.head_dim) as u64;
            for l in 0..d.layers {
                for kv in ["k", "v"] {
                    let size = n * o.cache_type.row_bytes(kvd);
                    r.push(Request::new(
                        format!("{tag} {kv} cache {l}"),
                        "talker KV cache",
                        MemoryIntent::Scratch,
                        size,
                    ));
                }
            }
        }
        r.push(Request::new("talker scratch (reserve)", "talker scratch", MemoryIntent::Scratch, RESERVE));
    }
    if o.code2wav && has("code2wav.") {
        r.extend(file_weights(m, "code2wav.", "code2wav weights"));
        r.push(Request::new("code2wav scratch (reserve)", "code2wav scratch", MemoryIntent::Scratch, RESERVE));
    }
    Ok(r)
}

/// Plans the components `o` names on `table`; a refusal says what to change.
pub fn plan_model(m: &ModelFile, table: &MemoryTable, o: &PlanOptions) -> Result<Plan, ModelError> {
    let requests = model_requests(m, o)?;
    plan(table, &requests).map_err(|source| {
        let mut advice = Vec::new();
        if o.thinker {
            if let Ok(c) = ThinkerConfig::from_model(m) {
                let kv = thinker_kv_bytes(&c, o.ctx, o.cache_type);
                let ctx = o.ctx.clamp(1, c.max_positions);
                let per_k = thinker_kv_bytes(&c, 1024, o.cache_type);
                advice.push(format!(
                    "the Thinker's KV cache takes {kv} bytes at -c {ctx} with --cache-type {}: a smaller context \
                     (-c) saves {per_k} bytes per 1024 positions",
                    o.cache_type
                ));
                for t in CacheType::ALL {
                    let b = thinker_kv_bytes(&c, o.ctx, t);
                    if b < kv {
                        advice.push(format!("--cache-type {t} makes it {b} bytes"));
                    }
                }
            }
        }
        ModelError::Memory(Box::new(MemoryError { source, advice }))
    })
}

/// Plans the components `o` names on `gpu`'s memory as it is now, refuses before anything is
/// allocated when they do not fit, else makes the GPU allocate every planned buffer in its
/// planned memory type. Returns the plan.
pub fn plan_on(gpu: &Gpu, m: &ModelFile, o: &PlanOptions) -> Result<Plan, ModelError> {
    let p = plan_model(m, &gpu.memory_table(), o)?;
    tracing::info!(
        heaps = ?p.heaps.iter().map(|h| (h.needed, h.available)).collect::<Vec<_>>(),
        "memory plan: (needed, available) bytes per heap"
    );
    gpu.set_placements(p.placement_map());
    Ok(p)
}
