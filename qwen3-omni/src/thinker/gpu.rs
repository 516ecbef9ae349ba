//! The Thinker on the GPU: one command buffer per token, greedy token chosen on the GPU and the
//! only value read back. KV caches (f32, `[ctx, n_kv, head_dim]` per layer) and all activations
//! stay on the device.
//!
//! This first version feeds the prompt one token at a time through the decode path; the batched
//! prefill (matrix × matrix, `attn_prefill`) and a replayable step whose positions the GPU reads
//! from a buffer are the next steps (see docs/perf.md).

use qwen3_omni_vk::vk_runtime::{Buffer, MemoryIntent, Profile};
use qwen3_omni_vk::{HeadOut, Kernels, Matrix, MatvecPath, Q8_1Scratch, SampleParams, WType};

use super::{ThinkerConfig, ThinkerWeights};
use crate::model_file::{ModelError, ModelFile};

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
        let g = k.gpu().clone();
        let w = ThinkerWeights::load_with(&g, m, &c, k.model_options().thinker.router_fold, progress)?;
        let (h, hd) = (c.hidden as u64, c.head_dim as u64);
        let (qd, kvd) = ((c.n_heads * c.head_dim) as u64, (c.n_kv_heads * c.head_dim) as u64);
        let ctx = ctx.clamp(1, c.max_positions);
        let kv = (0..c.layers)
            .map(|l| {
                Ok((
                    g.buffer(&format!("k cache {l}"), ctx as u64 * kvd * 4, MemoryIntent::Scratch)?,
                    g.buffer(&format!("v cache {l}"), ctx as u64 * kvd * 4, MemoryIntent::Scratch)?,
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
        let accept =
            m.config_u64("/talker_config/accept_hidden_layer").map(|v| v as u32).unwrap_or(c.layers / 2).min(c.layers);
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

    /// Records one decode step. With `at = Some(p)` the step is for position p only (KV append at
    /// p, hidden states kept for p); with `None` it reads the position and cache length from the
    /// GPU and can be replayed for every position (hidden states are then not kept).
    fn record_step<'a>(
        &'a self,
        rec: &mut qwen3_omni_vk::vk_runtime::Recorder<'a>,
        at: Option<u32>,
    ) -> Result<(), GenError> {
        let c = &self.config;
        let (k, s, w) = (&self.k, &self.s, &self.w);
        let h = c.hidden;
        // The GPU-read-length kernels whenever they fit (one tested path for stepping and
        // replay); position-in-push-constant kernels only for head shapes they do not cover.
        let dynamic = self.dyn_attention() || at.is_none();
        k.embed_q8_0p(rec, Matrix::new(&w.embed, WType::Q8_0Planar, c.vocab, h), &s.token, 1, &s.x)?;
        let row = h as u64 * 4;
        if let Some(p) = at {
            rec.copy(&s.x, 0, &self.hs0, p as u64 * row, row)?;
            if self.accept == 0 {
                rec.copy(&s.x, 0, &self.hs_accept, p as u64 * row, row)?;
            }
        }
        let fused = self.dyn_attention() && self.fused_decode();
        let one_attn = self.attention_mode();
        for l in 0..w.layers.len() {
            if fused {
                self.record_layer_fused(rec, l, one_attn)?;
            } else {
                self.record_layer(rec, l, dynamic, at)?;
            }
            if let (Some(p), true) = (at, l as u32 + 1 == self.accept) {
                rec.copy(&s.x, 0, &self.hs_accept, p as u64 * row, row)?;
            }
        }
        k.rms_norm(rec, &s.x, &w.norm, &s.y, h, 1, c.rms_eps)?;
        k.matvec(rec, Matrix::new(&w.lm_head, WType::Q8_0Planar, c.vocab, h), &s.y, &s.logits, Some(&s.q81))?;
        // The penalty reads the whole history buffer: unfilled entries hold ids ≥ vocab (ignored).
        // The RNG step is (steps_sampled − len) + cache_len[0]: steps_sampled itself when stepping
        // (the host wrote cache_len = len), and one more per step when replayed (decode_advance
        // grows cache_len on the GPU), so sampled generation replays with the same draws.
        let params = SampleParams { step: self.steps_sampled.wrapping_sub(self.len), ..self.sampling };
        let (hist, scratch) = (&self.history, &self.sample_scratch);
        k.sample_stepped(rec, &s.logits, c.vocab, hist, self.ctx, &params, scratch, &s.next, &s.cache_len)?;
        Ok(())
    }

    /// Whether the decode step can use the fused-prologue kernels (RMSNorm / Q8_1 quantisation
    /// inside the matrix × vector): 6 or 8 dependent dispatches per layer instead of 13.
    fn fused_decode(&self) -> bool {
        let c = &self.config;
        let max_k = if self.k.matvec_path() == MatvecPath::IntDot { 8192 } else { 4096 };
        self.k.model_options().thinker.fused_decode
            && c.hidden <= max_k
            && c.n_heads * c.head_dim <= 8192
            && c.hidden % 32 == 0
    }

    /// How decode attention runs (replayable fused path). Default: [`AttnMode::SplitHeads`]; of
    /// the others, the three-dispatch split measured fastest on an H200 at 512 and 4096 keys, ahead
    /// of the two- and one-dispatch forms whose kernel is slower than the dependent dispatches it
    /// saves (docs/perf.md). `ThinkerOptions::attn_fused` / `attn_prologue` / `head_epilogue`
    /// (`QWEN3VK_ATTN_FUSED=1`, …) pick the others; [`GpuThinker::set_attention_mode`] overrides them.
    fn attention_mode(&self) -> AttnMode {
        if let Some(m) = self.attn_mode {
            return m;
        }
        let o = self.k.model_options().thinker;
        if o.attn_fused {
            AttnMode::Fused
        } else if o.attn_prologue {
            AttnMode::Prologue
        } else if !o.head_epilogue {
            AttnMode::Split
        } else {
            AttnMode::SplitHeads
        }
    }

    /// Forces a decode attention variant (tests, benchmarks); `None` restores the default.
    pub fn set_attention_mode(&mut self, m: Option<AttnMode>) {
        self.attn_mode = m;
    }

    /// Decode attention of layer l on the raw s.q/s.k/s.v (q/k norm + RoPE, KV store at the GPU's
    /// cache length, attention, merge) into s.o: one, two or three dispatches by `mode`.
    fn record_attention<'a>(
        &'a self,
        rec: &mut qwen3_omni_vk::vk_runtime::Recorder<'a>,
        l: usize,
        one_attn: AttnMode,
    ) -> Result<(), GenError> {
        let c = &self.config;
        let (k, s, lw) = (&self.k, &self.s, &self.w.layers[l]);
        let (kc, vc) = (&self.kv[l].0, &self.kv[l].1);
        let (hd, nh, nkv) = (c.head_dim, c.n_heads, c.n_kv_heads);
        if matches!(one_attn, AttnMode::Fused | AttnMode::Prologue) {
            // q/k norm + RoPE, KV store and attention in one dispatch; its merge in the same
            // dispatch (Fused: the last workgroup of each KV head) or a second one (Prologue).
            k.attn_decode_fused(
                rec,
                &s.q,
                &s.k,
                &s.v,
                &lw.q_norm,
                &lw.k_norm,
                &s.pos,
                kc,
                vc,
                &s.o,
                &s.attn,
                &s.attn_counters,
                &s.cache_len,
                nh,
                nkv,
                hd,
                self.ctx,
                c.rms_eps,
                c.rope_theta,
                c.mrope_section,
                one_attn == AttnMode::Fused,
            )?;
        } else {
            k.qk_norm_rope_store(
                rec,
                &s.q,
                &s.k,
                &s.v,
                &lw.q_norm,
                &lw.k_norm,
                &s.pos,
                kc,
                vc,
                &s.cache_len,
                1,
                nh,
                nkv,
                hd,
                self.ctx,
                c.rms_eps,
                c.rope_theta,
                c.mrope_section,
            )?;
            k.attn_decode_at(rec, &s.q, kc, vc, &s.o, &s.attn, &s.cache_len, 1, nh, nkv, hd, self.ctx)?;
        }
        Ok(())
    }

    /// One decoder layer of the decode step with the fused kernels (replayable: position and cache
    /// length read from the GPU). x → x.
    fn record_layer_fused<'a>(
        &'a self,
        rec: &mut qwen3_omni_vk::vk_runtime::Recorder<'a>,
        l: usize,
        one_attn: AttnMode,
    ) -> Result<(), GenError> {
        let c = &self.config;
        let (k, s, lw) = (&self.k, &self.s, &self.w.layers[l]);
        let (h, hd, nh, nkv) = (c.hidden, c.head_dim, c.n_heads, c.n_kv_heads);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let an = Some((&lw.attn_norm, c.rms_eps));
        if one_attn == AttnMode::SplitHeads {
            // q, k, v with the per-head norm, RoPE and KV store in their epilogue (a workgroup per
            // head), then attention and its merge: three dependent dispatches.
            let (kc, vc) = (&self.kv[l].0, &self.kv[l].1);
            let (an, sec, th) = ((&lw.attn_norm, c.rms_eps), c.mrope_section, c.rope_theta);
            let (pos, len, cap) = (&s.pos, &s.cache_len, self.ctx);
            let qm = Matrix::new(&lw.q, WType::Q8_0Planar, qd, h);
            let km = Matrix::new(&lw.k, WType::Q8_0Planar, kvd, h);
            let vm = Matrix::new(&lw.v, WType::Q8_0Planar, kvd, h);
            k.matvec_head(rec, qm, &s.x, an, HeadOut::Query, &lw.q_norm, pos, len, &s.q, cap, hd, th, sec)?;
            k.matvec_head(rec, km, &s.x, an, HeadOut::Key, &lw.k_norm, pos, len, kc, cap, hd, th, sec)?;
            k.matvec_head(rec, vm, &s.x, an, HeadOut::Value, &lw.k_norm, pos, len, vc, cap, hd, th, sec)?;
            k.attn_decode_at(rec, &s.q, kc, vc, &s.o, &s.attn, len, 1, nh, nkv, hd, cap)?;
        } else {
            // q, k, v: each workgroup normalises (and quantises) x itself; no barrier between the three.
            k.matvec_fused(rec, Matrix::new(&lw.q, WType::Q8_0Planar, qd, h), &s.x, an, None, &s.q)?;
            k.matvec_fused(rec, Matrix::new(&lw.k, WType::Q8_0Planar, kvd, h), &s.x, an, None, &s.k)?;
            k.matvec_fused(rec, Matrix::new(&lw.v, WType::Q8_0Planar, kvd, h), &s.x, an, None, &s.v)?;
            self.record_attention(rec, l, one_attn)?;
        }
        // r = x + o_proj(o), o quantised in the prologue.
        k.matvec_fused(rec, Matrix::new(&lw.o, WType::Q8_0Planar, h, qd), &s.o, None, Some(&s.x), &s.r)?;
        let gate = Matrix::new(&lw.gate, WType::Q8_0Planar, c.moe_inter, h).experts(c.n_experts);
        let up = Matrix::new(&lw.up, WType::Q8_0Planar, c.moe_inter, h).experts(c.n_experts);
        let down = Matrix::new(&lw.down, WType::Q8_0Planar, h, c.moe_inter).experts(c.n_experts);
        let fnorm = (&lw.ffn_norm, c.rms_eps);
        let folded = if let Some(fold) = &lw.router_fold {
            // The router beside the o-projection (same inputs, no barrier between them): logits
            // without the RMS factor, which the routing kernel applies.
            k.moe_router_fold(rec, fold, c.n_experts, &s.x, h, &s.o, qd, &s.router)?;
            true
        } else {
            let router = Matrix::new(&lw.router, WType::F32, c.n_experts, h);
            k.matvec_fused(rec, router, &s.r, Some(fnorm), None, &s.router)?;
            false
        };
        let (ids, wts) = (&s.ids, &s.weights);
        k.moe_route_gate_up_decode(
            rec,
            &s.router,
            folded,
            gate,
            up,
            &s.r,
            fnorm,
            ids,
            wts,
            c.top_k,
            c.norm_topk,
            &s.h,
        )?;
        k.moe_down(rec, down, &s.h, &s.ids, &s.weights, c.top_k, 1, Some(&s.r), &s.x, Some(&s.q81_h))?;
        Ok(())
    }

    /// One decoder layer of the decode step, unfused (other head shapes, or `ThinkerOptions::fused_decode` off).
    fn record_layer<'a>(
        &'a self,
        rec: &mut qwen3_omni_vk::vk_runtime::Recorder<'a>,
        l: usize,
        dynamic: bool,
        at: Option<u32>,
    ) -> Result<(), GenError> {
        let c = &self.config;
        let (k, s, lw) = (&self.k, &self.s, &self.w.layers[l]);
        let (h, hd, nh, nkv) = (c.hidden, c.head_dim, c.n_heads, c.n_kv_heads);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let (kc, vc) = (&self.kv[l].0, &self.kv[l].1);
        k.rms_norm(rec, &s.x, &lw.attn_norm, &s.y, h, 1, c.rms_eps)?;
        if k.matvec_path() == MatvecPath::IntDot {
            k.quantize_q8_1(rec, &s.y, h as u64, &s.q81)?;
        }
        k.matvec_prequantized(rec, Matrix::new(&lw.q, WType::Q8_0Planar, qd, h), &s.y, &s.q, &s.q81)?;
        k.matvec_prequantized(rec, Matrix::new(&lw.k, WType::Q8_0Planar, kvd, h), &s.y, &s.k, &s.q81)?;
        k.matvec_prequantized(rec, Matrix::new(&lw.v, WType::Q8_0Planar, kvd, h), &s.y, &s.v, &s.q81)?;
        // Per-head q/k RMSNorm and (M)RoPE, in place, in one dispatch.
        let (qn, kn) = (&s.q, &s.k);
        k.qk_norm_rope(
            rec,
            qn,
            kn,
            &lw.q_norm,
            &lw.k_norm,
            &s.pos,
            1,
            nh,
            nkv,
            hd,
            c.rms_eps,
            c.rope_theta,
            c.mrope_section,
        )?;
        match (dynamic, at) {
            (false, Some(p)) => {
                k.kv_append(rec, kn, &s.v, kc, vc, 1, nkv, hd, p)?;
                k.attn_decode(rec, qn, kc, vc, &s.o, &s.attn, 1, nh, nkv, hd, p + 1)?;
            }
            _ => {
                k.kv_store(rec, kn, &s.v, kc, vc, &s.cache_len, 1, nkv, hd, self.ctx)?;
                k.attn_decode_at(rec, qn, kc, vc, &s.o, &s.attn, &s.cache_len, 1, nh, nkv, hd, self.ctx)?;
            }
        }
        // r = x + o_proj(o): the residual add fused into the projection.
        k.matvec_residual(rec, Matrix::new(&lw.o, WType::Q8_0Planar, h, qd), &s.o, &s.x, &s.r, Some(&s.q81))?;
        k.rms_norm(rec, &s.r, &lw.ffn_norm, &s.y, h, 1, c.rms_eps)?;
        k.matvec(rec, Matrix::new(&lw.router, WType::F32, c.n_experts, h), &s.y, &s.router, None)?;
        let gate = Matrix::new(&lw.gate, WType::Q8_0Planar, c.moe_inter, h).experts(c.n_experts);
        let up = Matrix::new(&lw.up, WType::Q8_0Planar, c.moe_inter, h).experts(c.n_experts);
        let down = Matrix::new(&lw.down, WType::Q8_0Planar, h, c.moe_inter).experts(c.n_experts);
        // Routing (softmax → top-k → renormalise) and gate/up of the chosen experts in one dispatch.
        k.moe_route_gate_up(rec, &s.router, gate, up, &s.y, &s.ids, &s.weights, c.top_k, 1, c.norm_topk, &s.h)?;
        k.moe_down(rec, down, &s.h, &s.ids, &s.weights, c.top_k, 1, Some(&s.r), &s.x, Some(&s.q81_h))?;
        Ok(())
    }

    fn prefill_scratch(&mut self) -> Result<(), GenError> {
        if self.prefill.is_some() {
            return Ok(());
        }
        let c = &self.config;
        let g = self.k.gpu().clone();
        let n = PREFILL_CHUNK.min(self.ctx) as u64;
        let (h, qd, kvd) = (c.hidden as u64, (c.n_heads * c.head_dim) as u64, (c.n_kv_heads * c.head_dim) as u64);
        let kk = c.top_k as u64;
        let f = |name: &str, len: u64| g.buffer(name, n * len * 4, MemoryIntent::Scratch);
        self.prefill = Some(PrefillScratch {
            tokens: n as u32,
            ids_in: g.buffer("prefill tokens", n * 4, MemoryIntent::Upload)?,
            pos: g.buffer("prefill positions", 3 * n * 4, MemoryIntent::Upload)?,
            x: f("prefill x", h)?,
            r: f("prefill residual", h)?,
            y: f("prefill normed", h)?,
            q: f("prefill q", qd)?,
            k: f("prefill k", kvd)?,
            v: f("prefill v", kvd)?,
            o: f("prefill attention out", qd)?,
            ao: f("prefill o_proj out", h)?,
            router: f("prefill router logits", c.n_experts as u64)?,
            ids: f("prefill expert ids", kk)?,
            weights: f("prefill expert weights", kk)?,
            h: f("prefill expert hidden", kk * c.moe_inter as u64)?,
            q81: self.k.q8_1_scratch((n * h.max(qd)).div_ceil(32) * 32)?,
            q81_h: self.k.q8_1_scratch((n * kk * c.moe_inter as u64).div_ceil(32) * 32)?,
        });
        Ok(())
    }

    /// Feeds `tokens` in batches of up to [`PREFILL_CHUNK`] (matrix × matrix, tiled causal
    /// attention, MoE over all the chunk's tokens), one command buffer per batch; returns the
    /// greedy next token and leaves the last position's logits readable. The activations follow
    /// the matrix × vector path: Q8_1 (int8 dot products) on the int-dot path, f32 on the float
    /// path (what stepping computes, so the float path's prefill gives the same tokens).
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<u32, GenError> {
        let c = self.config.clone();
        self.check_prompt(tokens)?;
        if c.head_dim % 8 != 0 || c.head_dim > 128 {
            let mut next = 0;
            for &t in tokens {
                next = self.step(t, false)?.0;
            }
            return Ok(next);
        }
        self.prefill_scratch()?;
        let mut next = 0;
        let chunk = self.prefill.as_ref().map(|p| p.tokens).unwrap_or(1) as usize;
        let total = tokens.len();
        for (ci, part) in tokens.chunks(chunk).enumerate() {
            let last = (ci + 1) * chunk >= total;
            next = self.prefill_chunk(part, last, None)?;
        }
        Ok(next)
    }

    /// A prompt the prefill can take: not empty, every id in the vocabulary, and room in the cache.
    fn check_prompt(&self, tokens: &[u32]) -> Result<(), GenError> {
        let vocab = self.config.vocab;
        if tokens.is_empty() {
            return Err(GenError::EmptyPrompt);
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t >= vocab) {
            return Err(GenError::BadToken { id: bad, vocab });
        }
        if self.len as usize + tokens.len() > self.ctx as usize {
            return Err(GenError::ContextFull { len: self.len + tokens.len() as u32, ctx: self.ctx });
        }
        Ok(())
    }

    /// [`GpuThinker::prefill`] with audio (spec §4.4): the embeddings of the `audio_token`
    /// positions are replaced, in order, by the rows of `audio` (`[rows, hidden]` f32 on this GPU,
    /// e.g. the AudioTower's output) — copied on the GPU after the embedding lookup, so hs[0] and
    /// every later hidden state kept for the Talker see them. The count must match exactly.
    pub fn prefill_with_audio(
        &mut self,
        tokens: &[u32],
        audio: &Buffer,
        rows: u32,
        audio_token: u32,
    ) -> Result<u32, GenError> {
        let c = self.config.clone();
        let n_audio = tokens.iter().filter(|&&t| t == audio_token).count();
        if n_audio != rows as usize {
            return Err(GenError::AudioMismatch { placeholders: n_audio, rows });
        }
        if audio.size() < rows as u64 * c.hidden as u64 * 4 {
            return Err(GenError::AudioMismatch {
                placeholders: n_audio,
                rows: (audio.size() / (c.hidden as u64 * 4)) as u32,
            });
        }
        self.check_prompt(tokens)?;
        if c.head_dim % 8 != 0 || c.head_dim > 128 {
            return Err(GenError::Gpu(qwen3_omni_vk::Error::Unsuitable(
                "audio input needs the batched prefill (head_dim a multiple of 8, at most 128)".into(),
            )));
        }
        self.prefill_scratch()?;
        let chunk = self.prefill.as_ref().map(|p| p.tokens).unwrap_or(1) as usize;
        let (mut next, mut src) = (0, 0u32);
        for (ci, part) in tokens.chunks(chunk).enumerate() {
            let last = (ci + 1) * chunk >= tokens.len();
            // Runs of audio positions in this chunk: (source row, row in the chunk, count).
            let mut runs: Vec<(u32, u32, u32)> = Vec::new();
            for (i, &t) in part.iter().enumerate() {
                if t != audio_token {
                    continue;
                }
                match runs.last_mut() {
                    Some(r) if r.1 + r.2 == i as u32 => r.2 += 1,
                    _ => runs.push((src, i as u32, 1)),
                }
                src += 1;
            }
            next = self.prefill_chunk(part, last, Some((audio, &runs)))?;
        }
        Ok(next)
    }

    fn prefill_chunk(&mut self, tokens: &[u32], last: bool, audio: AudioRuns<'_>) -> Result<u32, GenError> {
        let c = &self.config;
        let (k, s, w) = (&self.k, &self.s, &self.w);
        let pf = self.prefill.as_ref().expect("prefill scratch");
        let n = tokens.len() as u32;
        let p0 = self.len;
        pf.ids_in.write_slice(0, tokens)?;
        self.history.write_slice(p0 as u64 * 4, tokens)?;
        let pos: Vec<u32> = (0..3).flat_map(|_| p0..p0 + n).collect();
        pf.pos.write_slice(0, &pos)?;
        let (h, hd, nh, nkv) = (c.hidden, c.head_dim, c.n_heads, c.n_kv_heads);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let (nh_total, row) = (n as u64 * h as u64, h as u64 * 4);
        let float = k.matvec_path() == MatvecPath::Float;
        let mut rec = k.gpu().recorder(false)?;
        k.embed_q8_0p(&mut rec, Matrix::new(&w.embed, WType::Q8_0Planar, c.vocab, h), &pf.ids_in, n, &pf.x)?;
        if let Some((abuf, runs)) = audio {
            for &(src, dst, count) in runs {
                rec.copy(abuf, src as u64 * row, &pf.x, dst as u64 * row, count as u64 * row)?;
            }
        }
        rec.copy(&pf.x, 0, &self.hs0, p0 as u64 * row, n as u64 * row)?;
        if self.accept == 0 {
            rec.copy(&pf.x, 0, &self.hs_accept, p0 as u64 * row, n as u64 * row)?;
        }
        for (l, lw) in w.layers.iter().enumerate() {
            let (kc, vc) = (&self.kv[l].0, &self.kv[l].1);
            k.rms_norm(&mut rec, &pf.x, &lw.attn_norm, &pf.y, h, n, c.rms_eps)?;
            let (mq, mk, mv) = (
                Matrix::new(&lw.q, WType::Q8_0Planar, qd, h),
                Matrix::new(&lw.k, WType::Q8_0Planar, kvd, h),
                Matrix::new(&lw.v, WType::Q8_0Planar, kvd, h),
            );
            if float {
                // f32 activations throughout (the float matrix × vector path's prefill): the
                // same numbers as stepping token by token, up to summation order.
                k.matmul_q8_0_float(&mut rec, mq, &pf.y, n, &pf.q)?;
                k.matmul_q8_0_float(&mut rec, mk, &pf.y, n, &pf.k)?;
                k.matmul_q8_0_float(&mut rec, mv, &pf.y, n, &pf.v)?;
            } else {
                k.quantize_q8_1(&mut rec, &pf.y, nh_total, &pf.q81)?;
                k.matmul_q8_0_prequantized(&mut rec, mq, n, &pf.q, &pf.q81)?;
                k.matmul_q8_0_prequantized(&mut rec, mk, n, &pf.k, &pf.q81)?;
                k.matmul_q8_0_prequantized(&mut rec, mv, n, &pf.v, &pf.q81)?;
            }
            let (qn, kn) = (&pf.q, &pf.k);
            k.qk_norm_rope(
                &mut rec,
                qn,
                kn,
                &lw.q_norm,
                &lw.k_norm,
                &pf.pos,
                n,
                nh,
                nkv,
                hd,
                c.rms_eps,
                c.rope_theta,
                c.mrope_section,
            )?;
            k.kv_append(&mut rec, kn, &pf.v, kc, vc, n, nkv, hd, p0)?;
            k.attn_prefill(&mut rec, qn, kc, vc, &pf.o, n, nh, nkv, hd, p0)?;
            let mo = Matrix::new(&lw.o, WType::Q8_0Planar, h, qd);
            if float {
                k.matmul_q8_0_float(&mut rec, mo, &pf.o, n, &pf.ao)?;
            } else {
                k.matmul_q8_0(&mut rec, mo, &pf.o, n, &pf.ao, &pf.q81)?;
            }
            k.add(&mut rec, &pf.x, &pf.ao, &pf.r, nh_total, nh_total)?;
            k.rms_norm(&mut rec, &pf.r, &lw.ffn_norm, &pf.y, h, n, c.rms_eps)?;
            k.matmul_f32(&mut rec, Matrix::new(&lw.router, WType::F32, c.n_experts, h), &pf.y, n, &pf.router)?;
            k.moe_route(&mut rec, &pf.router, &pf.ids, &pf.weights, c.n_experts, c.top_k, n, c.norm_topk)?;
            let gate = Matrix::new(&lw.gate, WType::Q8_0Planar, c.moe_inter, h).experts(c.n_experts);
            let up = Matrix::new(&lw.up, WType::Q8_0Planar, c.moe_inter, h).experts(c.n_experts);
            let down = Matrix::new(&lw.down, WType::Q8_0Planar, h, c.moe_inter).experts(c.n_experts);
            k.moe_gate_up(&mut rec, gate, up, &pf.y, &pf.ids, c.top_k, n, &pf.h, Some(&pf.q81))?;
            k.moe_down(&mut rec, down, &pf.h, &pf.ids, &pf.weights, c.top_k, n, Some(&pf.r), &pf.x, Some(&pf.q81_h))?;
            if l as u32 + 1 == self.accept {
                rec.copy(&pf.x, 0, &self.hs_accept, p0 as u64 * row, n as u64 * row)?;
            }
        }
        if last {
            // Only the last position's logits are needed.
            rec.copy(&pf.x, (n as u64 - 1) * row, &s.x, 0, row)?;
            k.rms_norm(&mut rec, &s.x, &w.norm, &s.y, h, 1, c.rms_eps)?;
            k.matvec(&mut rec, Matrix::new(&w.lm_head, WType::Q8_0Planar, c.vocab, h), &s.y, &s.logits, Some(&s.q81))?;
            let params = SampleParams { step: self.steps_sampled, ..self.sampling };
            k.sample(&mut rec, &s.logits, c.vocab, &self.history, self.ctx, &params, &self.sample_scratch, &s.next)?;
        }
        rec.submit()?;
        self.len += n;
        if last {
            self.steps_sampled += 1;
        }
        let mut next = [0u32];
        if last {
            s.next.read(0, bytemuck::cast_slice_mut(&mut next))?;
        }
        Ok(next[0])
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

    /// Feeds `prompt` (batched prefill), then generates with the sampling set by
    /// [`GpuThinker::set_sampling`] (greedy by default) until `stop` or `max_new` tokens, calling
    /// `on_token` for each new token (return false to stop early).
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        stop: &[u32],
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<Vec<u32>, GenError> {
        let mut next = self.prefill(prompt)?;
        let mut out = Vec::new();
        if !self.replayable() {
            while out.len() < max_new {
                out.push(next);
                if stop.contains(&next) || !on_token(next) || out.len() == max_new {
                    break;
                }
                next = self.step(next, false)?.0;
            }
            return Ok(out);
        }
        // Two copies of one recorded step, submitted alternately: each step ends by advancing the
        // token, positions and cache length on the GPU (decode_advance), so step n + 1 is queued
        // before the host has read step n's token and the GPU never waits for the host. The host
        // reads the tokens from the history buffer; a step queued past a stop is rolled back.
        let mut len = self.len;
        let len0 = len;
        let result = (|| -> Result<(), GenError> {
            let mut batches = Vec::with_capacity(2);
            for _ in 0..2 {
                let mut rec = self.k.gpu().recorder(false)?;
                rec.full_barrier();
                self.record_step(&mut rec, None)?;
                let s = &self.s;
                self.k.decode_advance(
                    &mut rec,
                    &s.next,
                    &s.token,
                    &s.pos,
                    &s.cache_len,
                    &self.history,
                    self.ctx + 1,
                )?;
                batches.push(rec.finish()?);
            }
            // Steps queued (positions fed), and the oldest one's batch.
            let (mut queued, mut oldest) = (0u32, 0usize);
            let mut done = false;
            out.push(next);
            if stop.contains(&next) || !on_token(next) || out.len() >= max_new {
                return Ok(());
            }
            if len >= self.ctx {
                return Err(GenError::ContextFull { len, ctx: self.ctx });
            }
            self.write_step_inputs(next, len)?;
            let result = (|| -> Result<(), GenError> {
                while !done || queued > 0 {
                    // Keep two steps in flight while more tokens are wanted and fit.
                    while !done && queued < 2 && (out.len() + queued as usize) < max_new && len + queued < self.ctx {
                        batches[(oldest + queued as usize) % 2].submit_nowait()?;
                        queued += 1;
                    }
                    if queued == 0 {
                        break;
                    }
                    batches[oldest].wait()?;
                    oldest = (oldest + 1) % 2;
                    queued -= 1;
                    if done {
                        continue; // a step past the stop: discarded
                    }
                    len += 1;
                    let mut t = [0u32];
                    self.history.read(len as u64 * 4, bytemuck::cast_slice_mut(&mut t))?;
                    next = t[0];
                    out.push(next);
                    if stop.contains(&next) || !on_token(next) || out.len() >= max_new {
                        done = true;
                    } else if len >= self.ctx {
                        done = true;
                        return Err(GenError::ContextFull { len, ctx: self.ctx });
                    }
                }
                Ok(())
            })();
            // Wait for anything still queued (an error path), then forget the history past the
            // positions fed (the GPU appended the last output at `len`, and a discarded step one
            // more), as the stepping path leaves it.
            for b in batches.iter_mut() {
                let _ = b.wait();
            }
            let from = len.min(self.ctx + 1);
            let rest = ((len + 3).min(self.ctx + 1) - from) as usize;
            self.history.write_slice(from as u64 * 4, &vec![u32::MAX; rest])?;
            result
        })();
        // As many draws as the stepping path would have made (one per position fed).
        self.steps_sampled = self.steps_sampled.wrapping_add(len - len0);
        self.len = len;
        result.map(|_| out)
    }
}
