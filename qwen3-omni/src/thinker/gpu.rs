//! The Thinker on the GPU: one command buffer per token, greedy token chosen on the GPU and the
//! only value read back. KV caches (`[ctx, n_kv, head_dim]` per layer, of
//! `ModelOptions::cache_type`: f16 by default, f32 for the exact tests) and all activations stay on
//! the device.
//!
//! This first version feeds the prompt one token at a time through the decode path; the batched
//! prefill (matrix × matrix, `attn_prefill`) and a replayable step whose positions the GPU reads
//! from a buffer are the next steps (see docs/perf.md).

use qwen3_omni_vk::vk_runtime::{Buffer, MemoryIntent, Profile};
use qwen3_omni_vk::{CacheType, HeadOut, Kernels, KvCache, Matrix, MatvecPath, Q8_1Scratch, SampleParams, WType};

use super::{ThinkerConfig, ThinkerWeights};
use crate::model_file::{ModelError, ModelFile};

mod decode;
mod generate;
mod prefill;

struct Scratch {
    token: Buffer,
    /// Cache entries before the current token (read by the replayable attention kernels).
    cache_len: Buffer,
    pos: Buffer,
    x: Buffer,
    r: Buffer,
    y: Buffer,
    q: Buffer,
    k: Buffer,
    v: Buffer,
    o: Buffer,
    router: Buffer,
    ids: Buffer,
    weights: Buffer,
    h: Buffer,
    logits: Buffer,
    attn: Buffer,
    next: Buffer,
    /// Per KV head: workgroups of the one-dispatch decode attention done (zero between steps).
    attn_counters: Buffer,
    q81: Q8_1Scratch,
    q81_h: Q8_1Scratch,
}

/// Activations of a prefill chunk of up to `tokens` tokens.
struct PrefillScratch {
    tokens: u32,
    ids_in: Buffer,
    pos: Buffer,
    x: Buffer,
    r: Buffer,
    y: Buffer,
    q: Buffer,
    k: Buffer,
    v: Buffer,
    o: Buffer,
    ao: Buffer,
    router: Buffer,
    ids: Buffer,
    weights: Buffer,
    h: Buffer,
    q81: Q8_1Scratch,
    q81_h: Q8_1Scratch,
}

/// Audio rows to copy over a prefill batch's embeddings: the source buffer and, per run of
/// consecutive placeholders, (source row, row in the batch, rows).
type AudioRuns<'b> = Option<(&'b Buffer, &'b [(u32, u32, u32)])>;

/// How a replayable decode step runs attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnMode {
    /// q/k norm + RoPE + KV store, attention and its merge (by the last workgroup of each KV head)
    /// in one dispatch.
    Fused,
    /// q/k norm + RoPE + KV store and attention in one dispatch, the merge in a second.
    Prologue,
    /// norm/RoPE/store, attention and merge: three dispatches.
    Split,
    /// The norm/RoPE/store done by q/k/v's own workgroups (one per head), then attention and
    /// merge: two dispatches after q/k/v. The default; `ThinkerOptions::head_epilogue` off gives `Split`.
    SplitHeads,
}

/// Tokens per prefill command buffer.
pub const PREFILL_CHUNK: u32 = 256;

/// A loaded Thinker with its KV cache.
pub struct GpuThinker {
    k: Kernels,
    pub config: ThinkerConfig,
    w: ThinkerWeights,
    kv: Vec<(Buffer, Buffer)>,
    /// The caches' element type (`ModelOptions::cache_type`, fixed at load).
    cache_type: CacheType,
    s: Scratch,
    ctx: u32,
    len: u32,
    record_ns: f64,
    /// Per position: hs[0] (the embedding) and hs[accept] (the residual stream after decoder layer
    /// accept − 1), `[ctx, hidden]` each — what the Talker's prompt is built from (spec §5.4, §6.2).
    hs0: Buffer,
    hs_accept: Buffer,
    accept: u32,
    prefill: Option<PrefillScratch>,
    /// Token ids of positions 0..len (the repetition penalty reads them on the GPU).
    history: Buffer,
    sample_scratch: Buffer,
    sampling: SampleParams,
    steps_sampled: u32,
    attn_mode: Option<AttnMode>,
}

/// Errors of generation.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("the context is full: {len} of --ctx-size {ctx} positions used")]
    ContextFull { len: u32, ctx: u32 },
    #[error("token id {id} is outside the vocabulary ({vocab})")]
    BadToken { id: u32, vocab: u32 },
    #[error("the prompt has {placeholders} audio placeholder tokens but {rows} audio embedding rows were given")]
    AudioMismatch { placeholders: usize, rows: u32 },
    #[error("the prompt is empty: give at least one token")]
    EmptyPrompt,
    #[error(transparent)]
    Gpu(#[from] qwen3_omni_vk::Error),
}

impl GpuThinker {
    /// Loads the Thinker of `m` onto the kernels' GPU with a KV cache of `ctx` positions.
    pub fn load(k: Kernels, m: &ModelFile, ctx: u32, progress: impl FnMut(u32, u32)) -> Result<GpuThinker, ModelError> {
        let c = ThinkerConfig::from_model(m)?;
        let cache_type = k.model_options().cache_type;
        if let Some(what) = cache_type.unsupported(c.head_dim) {
            return Err(ModelError::CacheType { ty: cache_type, what: format!("the Thinker: {what}") });
        }
        let g = k.gpu().clone();
        let mo = k.model_options();
        // The memory plan first: a model that does not fit is refused before any allocation.
        let po = crate::memory_plan::PlanOptions::all(ctx, mo.cache_type).only(true, false, false, false);
        crate::memory_plan::plan_on(
            &g,
            m,
            &crate::memory_plan::PlanOptions { router_fold: mo.thinker.router_fold, ..po },
        )?;
        let w = ThinkerWeights::load_with(&g, m, &c, mo.thinker.router_fold, progress)?;
        let (h, hd) = (c.hidden as u64, c.head_dim as u64);
        let (qd, kvd) = ((c.n_heads * c.head_dim) as u64, (c.n_kv_heads * c.head_dim) as u64);
        let ctx = ctx.clamp(1, c.max_positions);
        let cache_bytes = ctx as u64 * cache_type.row_bytes(kvd);
        let kv = (0..c.layers)
            .map(|l| {
                Ok((
                    g.buffer(&format!("k cache {l}"), cache_bytes, MemoryIntent::Scratch)?,
                    g.buffer(&format!("v cache {l}"), cache_bytes, MemoryIntent::Scratch)?,
                ))
            })
            .collect::<Result<Vec<_>, qwen3_omni_vk::Error>>()?;
        let f = |n: &str, len: u64| g.buffer(n, len * 4, MemoryIntent::Scratch);
        let inter_k = c.top_k as u64 * c.moe_inter as u64;
        let s = Scratch {
            token: g.buffer("token in", 4, MemoryIntent::Upload)?,
            cache_len: g.buffer("cache length", 4, MemoryIntent::Upload)?,
            pos: g.buffer("positions", 12, MemoryIntent::Upload)?,
            x: f("x", h)?,
            r: f("residual", h)?,
            y: f("normed", h)?,
            q: f("q", qd)?,
            k: f("k", kvd)?,
            v: f("v", kvd)?,
            o: f("attention out", qd)?,
            router: f("router logits", c.n_experts as u64)?,
            ids: g.buffer("expert ids", c.top_k as u64 * 4, MemoryIntent::Scratch)?,
            weights: f("expert weights", c.top_k as u64)?,
            h: f("expert hidden", inter_k)?,
            // Device memory: lm_head writes it and the sampler reads it every step; in host memory
            // both went over PCIe on a discrete card (lm_head 198 µs instead of 77 on an H200).
            // `logits()` copies it out through staging.
            logits: g.buffer("logits", c.vocab as u64 * 4, MemoryIntent::Scratch)?,
            attn: g.buffer(
                "attention scratch",
                Kernels::attn_decode_scratch_bytes(1, c.n_heads, c.head_dim, ctx),
                MemoryIntent::Scratch,
            )?,
            next: g.buffer("next token", 4, MemoryIntent::Readback)?,
            attn_counters: g.buffer_from(
                "attention counters",
                &vec![0u32; c.n_kv_heads as usize],
                MemoryIntent::Upload,
            )?,
            q81: k.q8_1_scratch(h.max(qd).div_ceil(32) * 32)?,
            q81_h: k.q8_1_scratch(inter_k.div_ceil(32) * 32)?,
        };
        let _ = hd;
        // The Talker reads the Thinker's hidden state after this many layers (24 of 48 in the real
        // model); a model without a Talker config gets the middle layer.
        let accept = c.accept_layer;
        let hs0 = g.buffer("thinker hs0", ctx as u64 * h * 4, MemoryIntent::Scratch)?;
        let hs_accept = g.buffer("thinker hs accept", ctx as u64 * h * 4, MemoryIntent::Scratch)?;
        // One entry more than the context: the queued replay appends the token sampled at the last
        // position (never fed) at index ctx.
        let history = g.buffer("token history", (ctx as u64 + 1) * 4, MemoryIntent::Upload)?;
        history.write_slice(0, &vec![u32::MAX; ctx as usize + 1])?;
        let sample_scratch =
            g.buffer("sampling scratch", Kernels::sample_scratch_bytes(c.vocab), MemoryIntent::Scratch)?;
        Ok(GpuThinker {
            k,
            config: c,
            w,
            kv,
            cache_type,
            s,
            ctx,
            len: 0,
            record_ns: 0.0,
            hs0,
            hs_accept,
            accept,
            prefill: None,
            history,
            sample_scratch,
            sampling: SampleParams::default(),
            steps_sampled: 0,
            attn_mode: None,
        })
    }

    pub fn kernels(&self) -> &Kernels {
        &self.k
    }

    /// The KV cache's element type.
    pub fn cache_type(&self) -> CacheType {
        self.cache_type
    }

    /// Layer l's K and V caches.
    fn cache(&self, l: usize) -> KvCache<'_> {
        KvCache { k: &self.kv[l].0, v: &self.kv[l].1, ty: self.cache_type }
    }

    /// Positions used so far.
    /// Positions the KV cache holds (`--ctx-size`).
    pub fn capacity(&self) -> u32 {
        self.ctx
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How the next tokens are chosen (default: greedy). Sampling runs on the GPU; only the chosen
    /// id is read back. The repetition penalty covers every token in the context.
    pub fn set_sampling(&mut self, p: SampleParams) {
        self.sampling = p;
        self.steps_sampled = 0;
    }

    /// Forgets the conversation (the cache is simply overwritten).
    pub fn reset(&mut self) -> Result<(), GenError> {
        self.reset_to(0)
    }

    /// Benchmarks only: pretends `len` positions are in the cache (their contents are whatever
    /// the cache holds), so decode speed at a long context can be timed without a prefill.
    pub fn set_len_for_benchmark(&mut self, len: u32) {
        self.len = len.min(self.ctx.saturating_sub(1));
    }

    /// Forgets every position from `len` on (e.g. a token fed only to profile a step).
    pub fn reset_to(&mut self, len: u32) -> Result<(), GenError> {
        self.len = self.len.min(len);
        // The repetition penalty reads the whole history: forget what lies past the new length.
        let rest = (self.ctx + 1 - self.len) as usize;
        self.history.write_slice(self.len as u64 * 4, &vec![u32::MAX; rest])?;
        Ok(())
    }

    /// Feeds `token` at the next position; returns the chosen next token (on the GPU) and the
    /// batch's profile. The full logits stay readable with [`GpuThinker::logits`].
    pub fn step(&mut self, token: u32, profile: bool) -> Result<(u32, Profile), GenError> {
        let p = self.len;
        self.check_step(token)?;
        self.write_step_inputs(token, p)?;
        let t0 = std::time::Instant::now();
        let mut rec = self.k.gpu().recorder(profile)?;
        self.record_step(&mut rec, Some(p))?;
        let mut batch = rec.finish()?;
        let record_ns = t0.elapsed().as_secs_f64() * 1e9;
        let prof = batch.submit()?;
        drop(batch);
        self.record_ns = record_ns;
        self.len += 1;
        self.steps_sampled += 1;
        Ok((self.read_next()?, prof))
    }

    /// Timing instrumentation: one step recorded without profiling barriers, the kernels that
    /// have a `_clk` variant writing their workgroups' clock marks into `clock` (`slot` bytes per
    /// dispatch; the device opened with `QWEN3VK_CLOCKS=1`). Returns the dispatches' kernel names.
    pub fn clock_step(&mut self, token: u32, clock: &Buffer, slot: u64) -> Result<Vec<String>, GenError> {
        let p = self.len;
        self.check_step(token)?;
        self.write_step_inputs(token, p)?;
        self.k.set_clocks(true);
        let names = (|| -> Result<Vec<String>, GenError> {
            let mut rec = self.k.gpu().recorder(false)?;
            rec.set_clock_buffer(clock, slot);
            self.record_step(&mut rec, Some(p))?;
            let mut batch = rec.finish()?;
            batch.submit()?;
            Ok(batch.names().to_vec())
        })();
        self.k.set_clocks(false);
        let names = names?;
        self.len += 1;
        self.steps_sampled += 1;
        Ok(names)
    }

    fn check_step(&self, token: u32) -> Result<(), GenError> {
        if self.len >= self.ctx {
            return Err(GenError::ContextFull { len: self.len, ctx: self.ctx });
        }
        if token >= self.config.vocab {
            return Err(GenError::BadToken { id: token, vocab: self.config.vocab });
        }
        Ok(())
    }

    /// The host side of a step: the token, its position (all three MRoPE axes), the cache length
    /// the replayable kernels read, and the history the repetition penalty reads.
    fn write_step_inputs(&self, token: u32, p: u32) -> Result<(), GenError> {
        self.s.token.write_slice(0, &[token])?;
        self.s.pos.write_slice(0, &[p, p, p])?;
        self.s.cache_len.write_slice(0, &[p])?;
        self.history.write_slice(p as u64 * 4, &[token])?;
        Ok(())
    }

    fn read_next(&self) -> Result<u32, GenError> {
        let mut next = [0u32];
        self.s.next.read(0, bytemuck::cast_slice_mut(&mut next))?;
        Ok(next[0])
    }

    /// Whether the attention kernels that read the cache length from the GPU fit this model
    /// (head_dim a multiple of 4 up to 128, at most 16 query heads per KV head).
    fn dyn_attention(&self) -> bool {
        let c = &self.config;
        c.head_dim % 4 == 0 && c.head_dim <= 128 && c.n_heads / c.n_kv_heads <= 16
    }

    /// Whether a recorded step can be replayed for every position: GPU-read attention lengths (the
    /// sampler's RNG step is read from the GPU too, see `record_step`).
    fn replayable(&self) -> bool {
        self.dyn_attention()
    }

    /// Hidden states of positions 0..len: (hs[0], hs[accept]), each `[len, hidden]` row-major, and
    /// the accept layer.
    pub fn hidden_states(&self) -> Result<(Vec<f32>, Vec<f32>, u32), GenError> {
        let n = self.len as usize * self.config.hidden as usize;
        let mut a = vec![0f32; n];
        let mut b = vec![0f32; n];
        if n > 0 {
            self.hs0.read(0, bytemuck::cast_slice_mut(&mut a))?;
            self.hs_accept.read(0, bytemuck::cast_slice_mut(&mut b))?;
        }
        Ok((a, b, self.accept))
    }

    /// CPU time spent recording the last step's command buffer, in ns.
    pub fn last_record_ns(&self) -> f64 {
        self.record_ns
    }

    /// The logits of the last step.
    pub fn logits(&self) -> Result<Vec<f32>, GenError> {
        Ok(self.s.logits.read_vec()?)
    }
}
