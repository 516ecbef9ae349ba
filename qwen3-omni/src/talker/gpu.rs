//! The Talker and its code predictor on the GPU (spec §6).
//!
//! * Prompt rows (§6.2) are projected from Thinker space on the GPU (text_projection /
//!   hidden_projection, one command buffer per batch of rows), then prefilled: in matrix × matrix
//!   batches on the int-dot path, else through one recorded Talker step replayed for every row
//!   (positions and cache length read from GPU buffers).
//! * Each frame (§6.6) is ONE command buffer: the code predictor's 16 passes (a fresh cache: the
//!   Talker's normed hidden at position 0, C(code 0) at 1, then CP_{g−2}(code g−1)) with each of the
//!   15 codes sampled on the GPU and read by the next pass's embedding on the GPU, the sum of the 16
//!   code embeddings plus the step's text vector, the next Talker step, and code-0 sampling
//!   (repetition penalty over the generated codes 0, suppression of `[vocab − 1024, vocab)` except
//!   EOS). The host writes the text vector, position and history entry, and reads back the
//!   frame's 16 codes and the next code 0: no round trip inside a frame.
//!
//! [`GpuTalker::run_frames`] records the frame once and replays it for every frame (the samplers'
//! RNG step is read from a GPU buffer); [`GpuTalker::next_frame`] records it per call (profiling,
//! teacher forcing); both give the same codes.

use qwen3_omni_vk::vk_runtime::{Buffer, MemoryIntent, Profile};
use qwen3_omni_vk::{CacheType, Kernels, KvCache, Matrix, Q8_1Scratch, SampleParams, Suppress, WType};

use super::cpu::thinker_embedding;
use super::prompt::{plan, trailing, PromptError, Row, TextSide};
use super::weights::{ProjWeights, TalkerWeights};
use super::{DecoderConfig, TalkerConfig};
use crate::model_file::{ModelError, ModelFile};

mod frames;
mod prompt_rows;
mod record;

/// Sampling of code 0 and of the code predictor's codes. `suppress` of `code0` is set by the
/// Talker (spec §6.4); other fields are used as given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TalkerSampling {
    pub code0: SampleParams,
    pub predictor: SampleParams,
}

impl TalkerSampling {
    /// transformers' defaults (spec §6.4, §6.5): code 0 at temperature 0.9, top-k 50, repetition
    /// penalty 1.05; residual codes at temperature 1, top-k 50, top-p 0.8.
    pub fn sampled(seed: u64) -> Self {
        TalkerSampling {
            code0: SampleParams {
                temperature: 0.9,
                top_k: 50,
                top_p: 1.0,
                repetition_penalty: 1.05,
                seed,
                ..SampleParams::default()
            },
            predictor: SampleParams {
                temperature: 1.0,
                top_k: 50,
                top_p: 0.8,
                seed: seed ^ 0x5EED_C0DE_0000_0001,
                ..SampleParams::default()
            },
        }
    }

    /// `talker_do_sample=False`: greedy everywhere, the 1.05 repetition penalty still on code 0.
    pub fn greedy() -> Self {
        TalkerSampling {
            code0: SampleParams { repetition_penalty: 1.05, ..SampleParams::default() },
            predictor: SampleParams::default(),
        }
    }
}

impl Default for TalkerSampling {
    fn default() -> Self {
        Self::sampled(0)
    }
}

/// Errors of speech-code generation.
#[derive(Debug, thiserror::Error)]
pub enum TalkerError {
    #[error("the Talker's context is full: {len} of {ctx} positions used (prompt + frames)")]
    ContextFull { len: u32, ctx: u32 },
    #[error("no prompt yet: call start() first")]
    NotStarted,
    #[error("the text for Talker step {step} is not known yet: push the Thinker's next token or finish the text")]
    TextNotReady { step: usize },
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Gpu(#[from] qwen3_omni_vk::Error),
}

/// What [`GpuTalker::bench_parts`] measures (µs per replay).
#[derive(Debug, Clone, Copy)]
pub struct BenchParts {
    pub talker_gpu_us: f64,
    pub talker_wall_us: f64,
    pub talker_dispatches: u32,
    pub talker_barriers: u32,
    pub predictor_gpu_us: f64,
    pub predictor_wall_us: f64,
    pub predictor_dispatches: u32,
    pub predictor_barriers: u32,
    /// CPU time to record one whole frame's command buffer.
    pub record_us: f64,
}

/// One decoder's per-token activations.
struct Act {
    x: Buffer,
    r: Buffer,
    y: Buffer,
    q: Buffer,
    k: Buffer,
    v: Buffer,
    o: Buffer,
    attn: Buffer,
    /// `attn_decode_fused`'s per-KV-head counters (zero between uses).
    counters: Buffer,
}

impl Act {
    fn new(k: &Kernels, tag: &str, d: &DecoderConfig, ctx: u32) -> Result<Act, qwen3_omni_vk::Error> {
        let g = k.gpu();
        let (h, qd, kvd) = (d.hidden as u64, (d.n_heads * d.head_dim) as u64, (d.n_kv_heads * d.head_dim) as u64);
        let f = |n: &str, len: u64| g.buffer(&format!("{tag} {n}"), len * 4, MemoryIntent::Scratch);
        Ok(Act {
            x: f("x", h)?,
            r: f("residual", h)?,
            y: f("normed", h)?,
            q: f("q", qd)?,
            k: f("k", kvd)?,
            v: f("v", kvd)?,
            o: f("attention out", qd)?,
            attn: g.buffer(
                &format!("{tag} attention scratch"),
                Kernels::attn_decode_scratch_bytes(1, d.n_heads, d.head_dim, ctx),
                MemoryIntent::Scratch,
            )?,
            counters: g.buffer_from(
                &format!("{tag} attention counters"),
                &vec![0u32; d.n_kv_heads as usize],
                MemoryIntent::Upload,
            )?,
        })
    }
}

struct Scratch {
    /// Talker: a host-written input row, position (3 axes) and cache length.
    xin: Buffer,
    pos: Buffer,
    cache_len: Buffer,
    t: Act,
    router: Buffer,
    ids: Buffer,
    weights: Buffer,
    h: Buffer,
    sids: Buffer,
    sw: Buffer,
    hs: Buffer,
    /// The Talker's final normed hidden (codec-head input, code predictor's position 0).
    hn: Buffer,
    logits: Buffer,
    code0: Buffer,
    sample: Buffer,
    /// Code predictor.
    c: Act,
    ch: Buffer,
    /// Expert id 0 and weight 1: the dense MLP through the one-expert MoE kernels.
    one_id: Buffer,
    one_w: Buffer,
    /// A one-expert router logit (0) and the routing it yields (id 0, weight 1) for the fused path.
    one_logit: Buffer,
    cid: Buffer,
    cw: Buffer,
    clogits: Buffer,
    csample: Buffer,
    /// Positions 0..groups, one `[p, p, p]` buffer each (the rotary kernel binds from offset 0).
    cpos: Vec<Buffer>,
    /// Codes 1..groups of the frame being predicted, one u32 buffer each (sampled, then embedded).
    codes: Vec<Buffer>,
    /// RNG step base of the frame (host-written; the samplers add their own offset).
    rng_step: Buffer,
    /// The step's text vector (host-written) and the running sum of the frame's code embeddings.
    text: Buffer,
    acc: [Buffer; 2],
    /// [code 0, codes 1..groups, next code 0].
    frame_out: Buffer,
    /// Teacher forcing (tests): the frame's reference codes (host-written), the predicted codes
    /// and every group's logits.
    forced: Buffer,
    pred: Vec<Buffer>,
    cp_logits: Buffer,
    q81: Q8_1Scratch,
    q81_h: Q8_1Scratch,
}

/// Projection scratch for up to `rows` rows.
struct ProjScratch {
    rows: u32,
    inp: Buffer,
    x: Buffer,
    a: Buffer,
    b: Buffer,
    ones: Buffer,
    o1: Buffer,
    o2: Buffer,
    out: Buffer,
    q81: Q8_1Scratch,
}

/// Rows projected per command buffer.
const PROJ_ROWS: u32 = 64;

/// Rows per batched-prefill command buffer.
pub const PREFILL_CHUNK: u32 = 128;

/// Activations of a batched prefill chunk.
struct PrefillScratch {
    rows: Buffer,
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
    sids: Buffer,
    sw: Buffer,
    hs: Buffer,
    q81: Q8_1Scratch,
    q81_h: Q8_1Scratch,
}

/// The Talker on the GPU with its KV caches and generation state.
pub struct GpuTalker {
    k: Kernels,
    pub config: TalkerConfig,
    w: TalkerWeights,
    /// The Talker's KV caches, of `cache_type` (`ModelOptions::cache_type`).
    kv: Vec<(Buffer, Buffer)>,
    cache_type: CacheType,
    /// The code predictor's (f32 always: 16 positions).
    cp_kv: Vec<(Buffer, Buffer)>,
    s: Scratch,
    ps: ProjScratch,
    prefill: Option<PrefillScratch>,
    allow_batched: bool,
    /// Code-predictor attention as kv_store + one-query `attn_prefill` (2 commands) rather than
    /// 2 copies + split/merge decode (4); `TalkerOptions` (`QWEN3VK_CP_ATTN=decode`) picks the latter (A/B timing).
    cp_one_dispatch_attention: bool,
    /// Decode steps with the fused-prologue kernels (RMSNorm / Q8_1 quantisation inside the
    /// matrix × vector, q/k norm + RoPE + cache store in one dispatch), as the Thinker's;
    /// `TalkerOptions::fused_decode` (`QWEN3VK_NO_FUSED_DECODE`) turns them off.
    fused_decode: bool,
    /// With fused decode: `TalkerOptions::attn_split` (`QWEN3VK_ATTN_SPLIT`) keeps q/k norm + RoPE + store and the attention as
    /// separate dispatches instead of `attn_decode_fused`.
    attn_split: bool,
    /// Code-0 history for the repetition penalty (u32::MAX = empty).
    history: Buffer,
    ctx: u32,
    /// Talker positions filled.
    len: u32,
    sampling: TalkerSampling,
    /// Projected tts_pad / tts_bos / tts_eos (Talker space).
    tts: [Vec<f32>; 3],
    /// Codec embeddings of the prompt's special codec ids, by id.
    codec_rows: Vec<(u32, Vec<f32>)>,
    /// Generation: started, frames emitted, the next code 0 (sampled, not yet voiced), the
    /// trailing text vectors pushed so far and whether the text is complete.
    started: bool,
    frame: usize,
    next_code0: u32,
    text: Vec<Vec<f32>>,
    text_done: bool,
    record_ns: f64,
    last_profile: Option<Profile>,
}

fn planar<'a>(buf: &'a Buffer, rows: u32, cols: u32) -> Matrix<'a> {
    Matrix::new(buf, WType::Q8_0Planar, rows, cols)
}

impl GpuTalker {
    /// Loads the Talker of `m` with a context of `ctx` positions (prompt + frames).
    pub fn load(k: Kernels, m: &ModelFile, ctx: u32, progress: impl FnMut(u32, u32)) -> Result<GpuTalker, TalkerError> {
        let c = TalkerConfig::from_model(m)?;
        let cache_type = k.model_options().cache_type;
        if let Some(what) = cache_type.unsupported(c.talker.head_dim) {
            return Err(ModelError::CacheType { ty: cache_type, what: format!("the Talker: {what}") }.into());
        }
        let g = k.gpu().clone();
        let opts = k.model_options().talker;
        let po = crate::memory_plan::PlanOptions::all(ctx, k.model_options().cache_type);
        crate::memory_plan::plan_on(
            &g,
            m,
            &crate::memory_plan::PlanOptions { talker_ctx: ctx, ..po.only(false, false, true, false) },
        )?;
        let w = TalkerWeights::load(&g, m, &c, progress)?;
        let (t, cp) = (&c.talker, &c.predictor);
        let ctx = ctx.clamp(16, t.max_positions);
        let groups = c.groups;
        let cache = |tag: &str, d: &DecoderConfig, n: u32, ty: CacheType| {
            let bytes = n as u64 * ty.row_bytes((d.n_kv_heads * d.head_dim) as u64);
            (0..d.layers)
                .map(|l| {
                    Ok((
                        g.buffer(&format!("{tag} k cache {l}"), bytes, MemoryIntent::Scratch)?,
                        g.buffer(&format!("{tag} v cache {l}"), bytes, MemoryIntent::Scratch)?,
                    ))
                })
                .collect::<Result<Vec<(Buffer, Buffer)>, qwen3_omni_vk::Error>>()
        };
        let kv = cache("talker", t, ctx, cache_type)?;
        // The code predictor's cache (one position per code group, 16) stays f32: it is tiny.
        let cp_kv = cache("code predictor", cp, groups, CacheType::F32)?;
        let h = t.hidden as u64;
        let f = |n: &str, len: u64| g.buffer(n, len * 4, MemoryIntent::Scratch);
        let top = t.top_k as u64;
        let q81_vals = [h, (t.n_heads * t.head_dim) as u64, (cp.n_heads * cp.head_dim) as u64, cp.inter as u64]
            .into_iter()
            .max()
            .unwrap_or(h)
            .div_ceil(32)
            * 32;
        let s = Scratch {
            xin: g.buffer("talker input row", h * 4, MemoryIntent::Upload)?,
            pos: g.buffer("talker position", 12, MemoryIntent::Upload)?,
            cache_len: g.buffer("talker cache length", 4, MemoryIntent::Upload)?,
            t: Act::new(&k, "talker", t, ctx)?,
            router: f("talker router logits", t.n_experts as u64)?,
            ids: g.buffer("talker expert ids", top * 4, MemoryIntent::Scratch)?,
            weights: f("talker expert weights", top)?,
            h: f("talker expert hidden", top * t.moe_inter as u64)?,
            sids: g.buffer("shared expert id", 4, MemoryIntent::Scratch)?,
            sw: f("shared expert gate", 1)?,
            hs: f("shared expert hidden", t.shared_inter as u64)?,
            hn: f("talker normed hidden", h)?,
            logits: f("codec logits", t.vocab as u64)?,
            code0: g.buffer("code 0", 4, MemoryIntent::Readback)?,
            sample: g.buffer(
                "code-0 sampling scratch",
                Kernels::sample_scratch_bytes(t.vocab),
                MemoryIntent::Scratch,
            )?,
            c: Act::new(&k, "code predictor", cp, groups)?,
            one_id: g.buffer_from("expert id 0", &[0u32], MemoryIntent::Weights)?,
            one_w: g.buffer_from("expert weight 1", &[1.0f32], MemoryIntent::Weights)?,
            one_logit: g.buffer_from("one-expert router logit", &[0.0f32], MemoryIntent::Weights)?,
            cid: g.buffer("code predictor expert id", 4, MemoryIntent::Scratch)?,
            cw: f("code predictor expert weight", 1)?,
            ch: f("code predictor mlp hidden", cp.inter as u64)?,
            clogits: f("code predictor logits", cp.vocab as u64)?,
            csample: g.buffer(
                "code predictor sampling scratch",
                Kernels::sample_scratch_bytes(cp.vocab),
                MemoryIntent::Scratch,
            )?,
            cpos: (0..groups)
                .map(|p| g.buffer_from(&format!("code predictor position {p}"), &[p, p, p], MemoryIntent::Weights))
                .collect::<Result<_, _>>()?,
            codes: (1..groups)
                .map(|j| g.buffer(&format!("code {j}"), 4, MemoryIntent::Scratch))
                .collect::<Result<_, _>>()?,
            rng_step: g.buffer("sampling step", 4, MemoryIntent::Upload)?,
            text: g.buffer("talker step text", h * 4, MemoryIntent::Upload)?,
            acc: [f("code embedding sum a", h)?, f("code embedding sum b", h)?],
            frame_out: g.buffer("frame codes", (groups as u64 + 1) * 4, MemoryIntent::Readback)?,
            forced: g.buffer("forced codes", groups as u64 * 4, MemoryIntent::Upload)?,
            pred: (1..groups)
                .map(|j| g.buffer(&format!("predicted code {j}"), 4, MemoryIntent::Scratch))
                .collect::<Result<_, _>>()?,
            cp_logits: g.buffer(
                "code predictor logits (all groups)",
                (groups as u64 - 1) * cp.vocab as u64 * 4,
                MemoryIntent::Readback,
            )?,
            q81: k.q8_1_scratch(q81_vals)?,
            q81_h: k.q8_1_scratch((top * t.moe_inter as u64).max(t.shared_inter as u64).div_ceil(32) * 32)?,
        };
        let (th, inter) = (c.thinker_hidden as u64, t.inter as u64);
        let n = PROJ_ROWS as u64;
        let ps = ProjScratch {
            rows: PROJ_ROWS,
            inp: g.buffer("projection inputs", n * th * 4, MemoryIntent::Upload)?,
            x: f("projection input", th)?,
            a: f("projection hidden", inter)?,
            b: f("projection hidden + bias", inter)?,
            ones: g.buffer_from("ones", &vec![1.0f32; inter as usize], MemoryIntent::Weights)?,
            o1: f("projection out", h)?,
            o2: f("projection out + bias", h)?,
            out: g.buffer("projection outputs", n * h * 4, MemoryIntent::Readback)?,
            q81: k.q8_1_scratch(th.max(inter).div_ceil(32) * 32)?,
        };
        let history = g.buffer("code-0 history", ctx as u64 * 4, MemoryIntent::Upload)?;
        history.write_slice(0, &vec![u32::MAX; ctx as usize])?;
        let mut me = GpuTalker {
            k,
            config: c,
            w,
            kv,
            cache_type,
            cp_kv,
            s,
            ps,
            prefill: None,
            allow_batched: true,
            cp_one_dispatch_attention: opts.cp_one_dispatch_attention,
            fused_decode: false,
            attn_split: opts.attn_split,
            history,
            ctx,
            len: 0,
            sampling: TalkerSampling::default(),
            tts: [Vec::new(), Vec::new(), Vec::new()],
            codec_rows: Vec::new(),
            started: false,
            frame: 0,
            next_code0: 0,
            text: Vec::new(),
            text_done: false,
            record_ns: 0.0,
            last_profile: None,
        };
        let max_k = if me.k.matvec_path() == qwen3_omni_vk::MatvecPath::IntDot { 8192 } else { 4096 };
        me.fused_decode = opts.fused_decode
            && [&me.config.talker, &me.config.predictor]
                .iter()
                .all(|d| d.hidden <= max_k && d.n_heads * d.head_dim <= max_k && d.hidden.is_multiple_of(32));
        let i = me.config.ids.clone();
        let tts_in: Vec<Vec<f32>> =
            [i.tts_pad, i.tts_bos, i.tts_eos].iter().map(|&id| thinker_embedding(m, id)).collect::<Result<_, _>>()?;
        let tts = me.project(&tts_in, false)?;
        me.tts = [tts[0].clone(), tts[1].clone(), tts[2].clone()];
        let mut special = vec![i.codec_pad, i.codec_bos, i.codec_nothink, i.codec_think_bos, i.codec_think_eos];
        special.extend(i.speakers.iter().map(|(_, id)| *id));
        let rows = me.codec_embeddings(&special)?;
        me.codec_rows = special.into_iter().zip(rows).collect();
        Ok(me)
    }

    pub fn kernels(&self) -> &Kernels {
        &self.k
    }

    /// Positions the context holds (prompt + frames).
    /// The Talker's KV cache element type (the code predictor's is f32).
    pub fn cache_type(&self) -> CacheType {
        self.cache_type
    }

    /// Talker layer l's K and V caches.
    pub(super) fn cache(&self, l: usize) -> KvCache<'_> {
        KvCache { k: &self.kv[l].0, v: &self.kv[l].1, ty: self.cache_type }
    }

    pub fn ctx(&self) -> u32 {
        self.ctx
    }

    /// Talker positions filled so far.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sampling for the next `start` (default: [`TalkerSampling::sampled`] with seed 0).
    pub fn set_sampling(&mut self, s: TalkerSampling) {
        self.sampling = s;
    }

    /// CPU time spent recording the last frame's command buffer, in ns.
    pub fn last_record_ns(&self) -> f64 {
        self.record_ns
    }

    /// The profile of the last frame (per-kernel times when it was profiled).
    pub fn last_profile(&self) -> Option<&Profile> {
        self.last_profile.as_ref()
    }

    /// The codec logits of the last Talker step (before penalty and suppression).
    pub fn logits(&self) -> Result<Vec<f32>, TalkerError> {
        Ok(self.s.logits.read_vec()?)
    }

    /// The Talker's final normed hidden of the last step (the code predictor's position 0).
    pub fn hidden(&self) -> Result<Vec<f32>, TalkerError> {
        Ok(self.s.hn.read_vec()?)
    }

    /// The code 0 of the next frame (sampled at the end of the last command buffer; EOS ends).
    pub fn pending_code0(&self) -> u32 {
        self.next_code0
    }

    /// Frames emitted since `start`.
    pub fn frames(&self) -> usize {
        self.frame
    }

    fn code0_params(&self, step: u32) -> SampleParams {
        let c = &self.config;
        SampleParams {
            step,
            suppress: Some(Suppress { start: c.suppress_start(), end: c.talker.vocab, allow: Some(c.ids.codec_eos) }),
            ..self.sampling.code0
        }
    }
}
