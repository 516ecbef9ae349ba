//! Token sampling on the GPU (greedy, temperature, top-k, top-p, repetition penalty, a suppressed id
//! range, seeded draw), so that only the chosen token id is read back.
//!
//! Order: suppress → repetition penalty → temperature → top-k → softmax → top-p → draw → pick by
//! cumulative probability over the candidates in descending order. Dispatches:
//! 1. `sample_prep_f32` (all workgroups, one read and one write of the vocabulary): z = logits ·
//!    (1/temperature), suppressed ids → -inf, into scratch; the logits are never written;
//! 2. `sample_penalty_f32` (skipped when there are no previous tokens or the penalty is 1): one
//!    invocation per previous token rewrites z[t] from logits[t] with the penalty;
//! 3. temperature > 0: `sample_hist_f32` × 3 (≤ 128 workgroups each): the radix counting passes
//!    of the top-k threshold, each reading z once, into three 2048-bin histograms in the scratch;
//!    then `sample_f32`, one workgroup: resolves the threshold, gathers the ≤ 1024 candidates in one
//!    pass over z, bitonic-sorts them in shared memory, scans, cuts top-p and draws.
//!    temperature 0: `argmax_f32` + `argmax_final_f32` on z (all workgroups), which is exactly
//!    greedy with ties to the lowest index.
//!
//! Cost on an H200 at the Thinker's vocabulary (152064), per token, timestamps around each
//! dispatch: greedy 17 µs (21 with a 256-id penalty); top-k 40 / top-p 0.9 with penalty 64 µs
//! (histograms 3 × 7 µs, selection 30 µs); top-k off (1024 candidates) 72 µs (selection 43 µs).
//!
//! The random number is a counter-based hash of (seed, step) (see glsl/sample.comp and
//! [`sample_uniform`]): the same seed and step always give the same token.

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result, SpecConst};

use super::{kerr, push_bytes, stride_grid};
use crate::kernels::names;
use crate::kernels::Kernels;

/// Most candidates the selection keeps (top_k = 0 means this many).
pub const SAMPLE_MAX_K: u32 = 1024;

/// A range of token ids that may never be sampled, except one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppress {
    /// First suppressed id.
    pub start: u32,
    /// One past the last suppressed id.
    pub end: u32,
    /// An id in the range that stays allowed (e.g. the Talker's end of speech).
    pub allow: Option<u32>,
}

/// Sampling parameters (llama.cpp's meanings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleParams {
    /// 0 = greedy (argmax, ties to the lowest index); else logits are divided by it.
    pub temperature: f32,
    /// Keep the `top_k` largest; 0 = off, which keeps the [`SAMPLE_MAX_K`] largest (the mass
    /// beyond them is dropped); at most [`SAMPLE_MAX_K`].
    pub top_k: u32,
    /// Keep the smallest prefix (descending) whose probability reaches `top_p`; 1 = off; in (0, 1].
    pub top_p: f32,
    /// For each distinct previous token: logit > 0 → logit / penalty, else logit · penalty; 1 = off.
    pub repetition_penalty: f32,
    pub seed: u64,
    /// Mixed with the seed, so each step draws a fresh number.
    pub step: u32,
    pub suppress: Option<Suppress>,
}

impl Default for SampleParams {
    fn default() -> Self {
        SampleParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
            step: 0,
            suppress: None,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushPrep {
    n: u32,
    n_prev: u32,
    sup_lo: u32,
    sup_hi: u32,
    sup_allow: u32,
    pen: f32,
    inv_pen: f32,
    inv_t: f32,
}
const _: () = assert!(std::mem::size_of::<PushPrep>() == 32);
crate::push_layout!(PushPrep { n, n_prev, sup_lo, sup_hi, sup_allow, pen, inv_pen, inv_t });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushSample {
    n: u32,
    k: u32,
    top_p: f32,
    seed_lo: u32,
    seed_hi: u32,
    step: u32,
    /// `sample_hist_f32`: the radix pass (0..3).
    pass: u32,
}
const _: () = assert!(std::mem::size_of::<PushSample>() == 28);
crate::push_layout!(PushSample { n, k, top_p, seed_lo, seed_hi, step, pass });

/// The push constants of the `argmax_f32` kernels (glsl/argmax.comp), dispatched here on the scratch.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushArgmax {
    n: u32,
    span: u32,
}
const _: () = assert!(std::mem::size_of::<PushArgmax>() == 8);
crate::push_layout!(PushArgmax { n, span });

const WG: u32 = 256;
/// Items per first-pass argmax workgroup.
const ARGMAX_SPAN: u32 = WG * 4;
const PEN_WG: u32 = 64;
/// Alignment of the scratch's parts (the largest storage-buffer offset alignment).
const ALIGN: u64 = 256;
/// Bytes of the three radix histograms (3 × 2048 u32) behind z in the scratch.
const HIST_BYTES: u64 = 3 * 2048 * 4;
/// Most workgroups of a histogram pass (each loops over its share of the vocabulary).
const HIST_GROUPS: u32 = 128;

/// The 32-bit integer hash the sampler's RNG is built from (bijective; see glsl/sample.comp).
pub fn sample_mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The uniform number in [0, 1) the sampler draws for (seed, step): a multiple of 2⁻²⁴, exact in f32.
pub fn sample_uniform(seed: u64, step: u32) -> f32 {
    let mut h = sample_mix32(step.wrapping_add(0x9E37_79B9));
    h = sample_mix32(h ^ seed as u32);
    h = sample_mix32(h ^ (seed >> 32) as u32);
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Buffers and sizes of [`Kernels::sample`] and [`Kernels::sample_stepped`]: the `vocab` f32
/// `logits`, the `n_prev` previous ids `prev` (u32) for the repetition penalty, the `scratch`
/// ([`Kernels::sample_scratch_bytes`]) and `out` (u32 `[1]`).
#[derive(Clone, Copy)]
pub struct SampleArgs<'a> {
    pub logits: &'a Buffer,
    pub vocab: u32,
    pub prev: &'a Buffer,
    pub n_prev: u32,
    pub scratch: &'a Buffer,
    pub out: &'a Buffer,
}

/// Buffers of [`Kernels::decode_advance`]: the sampled `next` token, the step's `token`, `pos`
/// and `cache_len` inputs, the `history` of ids, and the context size `ctx`.
#[derive(Clone, Copy)]
pub struct DecodeAdvance<'a> {
    pub next: &'a Buffer,
    pub token: &'a Buffer,
    pub pos: &'a Buffer,
    pub cache_len: &'a Buffer,
    pub history: &'a Buffer,
    pub ctx: u32,
}

impl Kernels {
    /// Bytes of scratch [`Kernels::sample`] needs for a vocabulary of `vocab` logits.
    pub fn sample_scratch_bytes(vocab: u32) -> u64 {
        (vocab as u64 * 4).div_ceil(ALIGN) * ALIGN + HIST_BYTES + Kernels::argmax_scratch_bytes(vocab)
    }

    /// out[0] (u32) = the token sampled from the `vocab` f32 `logits` with `params`; the repetition
    /// penalty applies to the distinct ids among the `n_prev` u32 of `prev` (ids ≥ vocab ignored;
    /// `prev` is not bound when `n_prev` is 0 or the penalty is 1). `scratch` holds at least
    /// [`Kernels::sample_scratch_bytes`] bytes; `logits` is only read.
    pub fn sample<'a>(&self, rec: &mut Recorder<'a>, args: SampleArgs<'a>, params: &SampleParams) -> Result<()> {
        self.sample_impl(rec, args, params, None)
    }

    /// [`Kernels::sample`] with the RNG step `params.step + step[0]`, `step` a u32 GPU buffer the
    /// host writes between replays: one recorded batch then draws afresh each time it is replayed
    /// (same token as `sample` with that step).
    pub fn sample_stepped<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: SampleArgs<'a>,
        params: &SampleParams,
        step: &'a Buffer,
    ) -> Result<()> {
        self.sample_impl(rec, args, params, Some(step))
    }

    fn sample_impl<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: SampleArgs<'a>,
        params: &SampleParams,
        step_buf: Option<&'a Buffer>,
    ) -> Result<()> {
        let SampleArgs { logits, vocab, prev, n_prev, scratch, out } = args;
        let name = names::SAMPLE_F32;
        let p = params;
        if vocab == 0 {
            return Err(kerr(name, "vocab is 0 (empty logits)".into()));
        }
        if !(p.temperature >= 0.0 && p.temperature.is_finite()) {
            return Err(kerr(name, format!("temperature {} must be a finite number ≥ 0", p.temperature)));
        }
        if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            return Err(kerr(name, format!("top_p {} must be in (0, 1]", p.top_p)));
        }
        if p.top_k > SAMPLE_MAX_K {
            return Err(kerr(name, format!("top_k {} is over the supported {SAMPLE_MAX_K}", p.top_k)));
        }
        if !(p.repetition_penalty > 0.0 && p.repetition_penalty.is_finite()) {
            return Err(kerr(name, format!("repetition_penalty {} must be finite and > 0", p.repetition_penalty)));
        }
        let (sup_lo, sup_hi, sup_allow) = match p.suppress {
            None => (0, 0, u32::MAX),
            Some(s) => {
                if s.start > s.end || s.end > vocab {
                    return Err(kerr(name, format!("suppress range {}..{} is not within 0..{vocab}", s.start, s.end)));
                }
                (s.start, s.end, s.allow.unwrap_or(u32::MAX))
            }
        };
        let zbytes = vocab as u64 * 4;
        let inv_t = if p.temperature == 0.0 { 1.0 } else { 1.0 / p.temperature };
        let push = PushPrep {
            n: vocab,
            n_prev,
            sup_lo,
            sup_hi,
            sup_allow,
            pen: p.repetition_penalty,
            inv_pen: 1.0 / p.repetition_penalty,
            inv_t,
        };
        let spec = [SpecConst { id: 0, value: WG }];
        let hist_off = zbytes.div_ceil(ALIGN) * ALIGN;
        let pl = self.pipeline::<PushPrep>(names::SAMPLE_PREP_F32, &spec)?;
        rec.dispatch(
            &pl,
            &[
                Binding::read(logits).range(0, zbytes),
                Binding::write(scratch).range(0, zbytes),
                Binding::write(scratch).range(hist_off, HIST_BYTES),
            ],
            push_bytes(&push),
            stride_grid(vocab as u64, WG),
        )?;
        if n_prev > 0 && p.repetition_penalty != 1.0 {
            let groups = n_prev.div_ceil(PEN_WG);
            let pl = self.pipeline::<PushPrep>(names::SAMPLE_PENALTY_F32, &[SpecConst { id: 0, value: PEN_WG }])?;
            rec.dispatch(
                &pl,
                &[
                    Binding::read(logits).range(0, zbytes),
                    Binding::read(prev).range(0, n_prev as u64 * 4),
                    Binding::read_write(scratch).range(0, zbytes),
                ],
                push_bytes(&push),
                [groups, 1, 1],
            )?;
        }
        if p.temperature == 0.0 {
            // Greedy: argmax of the penalised logits; its partials live behind the histograms.
            let off = hist_off + HIST_BYTES;
            return self.sample_argmax(rec, scratch, vocab, off, out);
        }
        let k = if p.top_k == 0 { SAMPLE_MAX_K } else { p.top_k }.min(vocab);
        let push = PushSample {
            n: vocab,
            k,
            top_p: p.top_p,
            seed_lo: p.seed as u32,
            seed_hi: (p.seed >> 32) as u32,
            step: p.step,
            pass: 0,
        };
        let z4 = Binding::read(scratch).range(0, (vocab as u64).div_ceil(4) * 16);
        let hists = |access: fn(&'a Buffer) -> Binding<'a>| access(scratch).range(hist_off, HIST_BYTES);
        let groups = (vocab.div_ceil(4).div_ceil(WG)).clamp(1, HIST_GROUPS);
        let pl = self.pipeline::<PushSample>(names::SAMPLE_HIST_F32, &spec)?;
        for pass in 0..3 {
            rec.dispatch(
                &pl,
                &[z4, hists(Binding::read_write)],
                push_bytes(&PushSample { pass, ..push }),
                [groups, 1, 1],
            )?;
        }
        // The selection is one workgroup: 1024 wide for big vocabularies where the device allows,
        // else 256 (fewer barrier steps for small ones); `QWEN3VK_SAMPLE_WG=256|512|1024` overrides
        // (benchmarks: 256 costs 37 against 30 µs on an H200 at 152064).
        let max_wg = self.gpu().caps().max_workgroup_invocations;
        let sel_wg = self
            .tuning()
            .sample_wg
            .filter(|w| [256, 512, 1024].contains(w) && *w <= max_wg)
            .unwrap_or(if vocab > 16384 && max_wg >= 1024 { 1024 } else { 256 });
        if let Some(sb) = step_buf {
            let pl = self.pipeline::<PushSample>(names::SAMPLE_STEP_F32, &[SpecConst { id: 0, value: sel_wg }])?;
            let b = [z4, hists(Binding::read), Binding::write(out).range(0, 4), Binding::read(sb).range(0, 4)];
            return rec.dispatch(&pl, &b, push_bytes(&push), [1, 1, 1]);
        }
        let pl = self.pipeline::<PushSample>(name, &[SpecConst { id: 0, value: sel_wg }])?;
        rec.dispatch(&pl, &[z4, hists(Binding::read), Binding::write(out).range(0, 4)], push_bytes(&push), [1, 1, 1])
    }

    /// Greedy tail of [`Kernels::sample`]: the two argmax passes over z = scratch[0..n), with the
    /// partials at scratch[off..] (the `argmax` launcher wants its input and partials at offset 0 of
    /// two buffers).
    fn sample_argmax<'a>(
        &self,
        rec: &mut Recorder<'a>,
        scratch: &'a Buffer,
        n: u32,
        off: u64,
        out: &'a Buffer,
    ) -> Result<()> {
        let groups = n.div_ceil(ARGMAX_SPAN);
        if groups > self.gpu().caps().max_workgroup_count[0] {
            return Err(kerr(names::ARGMAX_F32, format!("{n} values need {groups} workgroups, over the device limit")));
        }
        let part = groups as u64 * 8;
        let spec = [SpecConst { id: 0, value: WG }];
        let p = self.pipeline::<PushArgmax>(names::ARGMAX_F32, &spec)?;
        rec.dispatch(
            &p,
            &[Binding::read(scratch).range(0, n as u64 * 4), Binding::write(scratch).range(off, part)],
            push_bytes(&PushArgmax { n, span: ARGMAX_SPAN }),
            [groups, 1, 1],
        )?;
        let p = self.pipeline::<PushArgmax>(names::ARGMAX_FINAL_F32, &spec)?;
        rec.dispatch(
            &p,
            &[Binding::read(scratch).range(off, part), Binding::write(out).range(0, 4)],
            push_bytes(&PushArgmax { n: groups, span: 0 }),
            [1, 1, 1],
        )
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushCtx {
    ctx: u32,
}
crate::push_layout!(PushCtx { ctx });

impl Kernels {
    /// Advances a replayable decode step on the GPU (one invocation): `token` = `next`, the three
    /// positions and `cache_len` grow by one, and `next` is appended to `history` (`[ctx]` u32) at
    /// the new length. Steps recorded with this can be submitted back to back, each reading what
    /// the previous one wrote, while the host reads the tokens from `history`.
    pub fn decode_advance<'a>(&self, rec: &mut Recorder<'a>, args: DecodeAdvance<'a>) -> Result<()> {
        let DecodeAdvance { next, token, pos, cache_len, history, ctx } = args;
        let name = names::DECODE_ADVANCE;
        if ctx == 0 {
            return Err(kerr(name, "a history of 0 positions".into()));
        }
        let p = self.pipeline::<PushCtx>(name, &[])?;
        rec.dispatch(
            &p,
            &[
                Binding::read(next).range(0, 4),
                Binding::write(token).range(0, 4),
                Binding::write(pos).range(0, 12),
                Binding::read_write(cache_len).range(0, 4),
                Binding::write(history).range(0, ctx as u64 * 4),
            ],
            push_bytes(&PushCtx { ctx }),
            [1, 1, 1],
        )
    }
}
