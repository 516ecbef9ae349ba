//! Command-buffer recording for the GPU Talker: the Talker step (prompt rows and frames), the
//! code predictor's passes, whole frames, and the batched prompt prefill.

use qwen3_omni_vk::vk_runtime::{Buffer, MemoryIntent, Recorder};
use qwen3_omni_vk::SampleArgs;
use qwen3_omni_vk::{
    AttnDecode, AttnDecodeAt, AttnDecodeFused, AttnPrefill, Heads, KvAppend, KvCache, KvStore, KvWrite, QkNormRope,
    Rope,
};
use qwen3_omni_vk::{CacheType, Matrix, MatvecPath, SampleParams, WType};
use qwen3_omni_vk::{MoeDown, MoeGateUp, MoeRoute, MoeRouteGateUp, MoeSharedGate};

use super::{planar, Act, GpuTalker, PrefillScratch, TalkerError, PREFILL_CHUNK};
use crate::talker::weights::AttnWeights;
use crate::talker::DecoderConfig;

impl GpuTalker {
    /// Whether `start` feeds the prompt as matrix × matrix batches (Q8_1 activations, as the int-dot
    /// decode path) rather than replaying the one-row step: on the int-dot path, where both round
    /// activations the same way.
    pub(super) fn batched_prefill(&self) -> bool {
        let d = &self.config.talker;
        self.k.matvec_path() == MatvecPath::IntDot
            && self.k.gpu().caps().int_dot
            && d.head_dim.is_multiple_of(8)
            && d.head_dim <= 128
            && self.allow_batched
    }

    /// Allows (default) or forbids the batched prompt prefill (tests, benchmarks).
    pub fn set_batched_prefill(&mut self, allow: bool) {
        self.allow_batched = allow;
    }

    pub(super) fn prefill_scratch(&mut self) -> Result<(), TalkerError> {
        if self.prefill.is_some() {
            return Ok(());
        }
        let d = &self.config.talker;
        let g = self.k.gpu().clone();
        let n = PREFILL_CHUNK as u64;
        let (h, qd, kvd) = (d.hidden as u64, (d.n_heads * d.head_dim) as u64, (d.n_kv_heads * d.head_dim) as u64);
        let kk = d.top_k as u64;
        let f = |name: &str, len: u64| g.buffer(name, n * len * 4, MemoryIntent::Scratch);
        self.prefill = Some(PrefillScratch {
            rows: g.buffer("talker prefill rows", n * h * 4, MemoryIntent::Upload)?,
            pos: g.buffer("talker prefill positions", 3 * n * 4, MemoryIntent::Upload)?,
            x: f("talker prefill x", h)?,
            r: f("talker prefill residual", h)?,
            y: f("talker prefill normed", h)?,
            q: f("talker prefill q", qd)?,
            k: f("talker prefill k", kvd)?,
            v: f("talker prefill v", kvd)?,
            o: f("talker prefill attention out", qd)?,
            ao: f("talker prefill o_proj out", h)?,
            router: f("talker prefill router logits", d.n_experts as u64)?,
            ids: f("talker prefill expert ids", kk)?,
            weights: f("talker prefill expert weights", kk)?,
            h: f("talker prefill expert hidden", kk * d.moe_inter as u64)?,
            sids: f("talker prefill shared id", 1)?,
            sw: f("talker prefill shared gate", 1)?,
            hs: f("talker prefill shared hidden", d.shared_inter as u64)?,
            q81: self.k.q8_1_scratch((n * h.max(qd)).div_ceil(32) * 32)?,
            q81_h: self.k.q8_1_scratch((n * (kk * d.moe_inter as u64).max(d.shared_inter as u64)).div_ceil(32) * 32)?,
        });
        Ok(())
    }

    /// Prompt rows at positions p0.. in one command buffer: matrix × matrix projections with Q8_1
    /// activations, tiled causal attention, MoE and shared expert over all rows; with `last`, the
    /// last row's normed hidden, codec logits and code 0.
    pub(super) fn prefill_chunk(&self, rows: &[Vec<f32>], p0: u32, last: bool) -> Result<(), TalkerError> {
        let d = &self.config.talker;
        let (k, s, w) = (&self.k, &self.s, &self.w);
        let pf = self.prefill.as_ref().expect("prefill scratch");
        let n = rows.len() as u32;
        let (h, hd, nh, nkv) = (d.hidden, d.head_dim, d.n_heads, d.n_kv_heads);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let (nh_total, row) = (n as u64 * h as u64, h as u64 * 4);
        pf.rows.write_slice(0, &rows.concat())?;
        let pos: Vec<u32> = (0..3).flat_map(|_| p0..p0 + n).collect();
        pf.pos.write_slice(0, &pos)?;
        let mut rec = k.gpu().recorder(false)?;
        rec.copy(&pf.rows, 0, &pf.x, 0, nh_total * 4)?;
        for (l, (a, moe)) in w.layers.iter().enumerate() {
            k.rms_norm(&mut rec, &pf.x, &a.attn_norm, &pf.y, h, n, d.rms_eps)?;
            k.quantize_q8_1(&mut rec, &pf.y, nh_total, &pf.q81)?;
            k.matmul_q8_0_prequantized(&mut rec, planar(&a.q, qd, h), n, &pf.q, &pf.q81)?;
            k.matmul_q8_0_prequantized(&mut rec, planar(&a.k, kvd, h), n, &pf.k, &pf.q81)?;
            k.matmul_q8_0_prequantized(&mut rec, planar(&a.v, kvd, h), n, &pf.v, &pf.q81)?;
            k.qk_norm_rope(
                &mut rec,
                QkNormRope {
                    q: &pf.q,
                    k: &pf.k,
                    q_w: &a.q_norm,
                    k_w: &a.k_norm,
                    pos: &pf.pos,
                    n_tokens: n,
                    eps: d.rms_eps,
                },
                Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
                Rope { theta: d.rope_theta, mrope_section: d.mrope_section },
            )?;
            k.kv_append(
                &mut rec,
                KvAppend { k_new: &pf.k, v_new: &pf.v, n, n_kv: nkv, head_dim: hd, p0 },
                self.cache(l),
            )?;
            k.attn_prefill(
                &mut rec,
                AttnPrefill { q: &pf.q, out: &pf.o, n, p0 },
                self.cache(l),
                Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
            )?;
            k.matmul_q8_0(&mut rec, planar(&a.o, h, qd), &pf.o, n, &pf.ao, &pf.q81)?;
            k.add(&mut rec, &pf.x, &pf.ao, &pf.r, nh_total, nh_total)?;
            k.rms_norm(&mut rec, &pf.r, &a.ffn_norm, &pf.y, h, n, d.rms_eps)?;
            k.matmul_f32(&mut rec, Matrix::new(&moe.router, WType::F32, d.n_experts, h), &pf.y, n, &pf.router)?;
            k.moe_route(
                &mut rec,
                MoeRoute {
                    logits: &pf.router,
                    ids: &pf.ids,
                    weights: &pf.weights,
                    n_experts: d.n_experts,
                    k: d.top_k,
                    n_tokens: n,
                    renormalize: d.norm_topk,
                },
            )?;
            let gate = planar(&moe.gate, d.moe_inter, h).experts(d.n_experts);
            let up = planar(&moe.up, d.moe_inter, h).experts(d.n_experts);
            let down = planar(&moe.down, h, d.moe_inter).experts(d.n_experts);
            k.moe_gate_up(
                &mut rec,
                MoeGateUp { gate, up, x: &pf.y, ids: &pf.ids, k: d.top_k, n_tokens: n, h: &pf.h },
                Some(&pf.q81),
            )?;
            k.moe_down(
                &mut rec,
                MoeDown {
                    down,
                    h: &pf.h,
                    ids: &pf.ids,
                    weights: &pf.weights,
                    k: d.top_k,
                    n_tokens: n,
                    residual: Some(&pf.r),
                    y: &pf.x,
                },
                Some(&pf.q81_h),
            )?;
            k.moe_shared_gate(
                &mut rec,
                MoeSharedGate { x: &pf.y, w_gate: &moe.sh_w, ids: &pf.sids, weights: &pf.sw, hidden: h, n_tokens: n },
            )?;
            let sg = planar(&moe.sh_gate, d.shared_inter, h).experts(1);
            let su = planar(&moe.sh_up, d.shared_inter, h).experts(1);
            let sd = planar(&moe.sh_down, h, d.shared_inter).experts(1);
            k.moe_gate_up(
                &mut rec,
                MoeGateUp { gate: sg, up: su, x: &pf.y, ids: &pf.sids, k: 1, n_tokens: n, h: &pf.hs },
                Some(&pf.q81),
            )?;
            k.moe_down(
                &mut rec,
                MoeDown {
                    down: sd,
                    h: &pf.hs,
                    ids: &pf.sids,
                    weights: &pf.sw,
                    k: 1,
                    n_tokens: n,
                    residual: Some(&pf.x),
                    y: &pf.x,
                },
                Some(&pf.q81_h),
            )?;
        }
        if last {
            rec.copy(&pf.x, (n as u64 - 1) * row, &s.t.x, 0, row)?;
            k.rms_norm(&mut rec, &s.t.x, &w.norm, &s.hn, h, 1, d.rms_eps)?;
            k.matvec(&mut rec, planar(&w.codec_head, d.vocab, h), &s.hn, &s.logits, Some(&s.q81))?;
            s.rng_step.write_slice(0, &[0u32])?;
            let params = self.code0_params(self.config.groups);
            k.sample_stepped(
                &mut rec,
                SampleArgs {
                    logits: &s.logits,
                    vocab: d.vocab,
                    prev: &self.history,
                    n_prev: self.ctx,
                    scratch: &s.sample,
                    out: &s.code0,
                },
                &params,
                &s.rng_step,
            )?;
        }
        rec.submit()?;
        Ok(())
    }

    /// One decoder layer's attention half, x → r = x + o_proj(attn(norm(x))) (and, with
    /// `norm_out`, y = post-attention RMSNorm(r)), with the cache position either read from the GPU
    /// (`at = None`, the Talker) or fixed at `at` (code predictor).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_attention<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        d: &DecoderConfig,
        a: &'a AttnWeights,
        act: &'a Act,
        kv: KvCache<'a>,
        positions: &'a Buffer,
        at: Option<u32>,
        cap: u32,
        norm_out: bool,
    ) -> Result<(), TalkerError> {
        let k = &self.k;
        let s = &self.s;
        let (h, hd, nh, nkv) = (d.hidden, d.head_dim, d.n_heads, d.n_kv_heads);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let (kc, vc) = (kv.k, kv.v);
        let heads = Heads { n_heads: nh, n_kv: nkv, head_dim: hd };
        let rope = Rope { theta: d.rope_theta, mrope_section: d.mrope_section };
        if self.fused_decode {
            // q, k, v: each workgroup normalises (and quantises) x itself; q/k norm + RoPE + the
            // cache store in one dispatch (the code predictor's position buffer doubles as its
            // cache length); o_proj quantises its input in the prologue and adds the residual.
            let an = Some((&a.attn_norm, d.rms_eps));
            k.matvec_fused(rec, planar(&a.q, qd, h), &act.x, an, None, &act.q)?;
            k.matvec_fused(rec, planar(&a.k, kvd, h), &act.x, an, None, &act.k)?;
            k.matvec_fused(rec, planar(&a.v, kvd, h), &act.x, an, None, &act.v)?;
            let len = if at.is_some() { positions } else { &s.cache_len };
            if !self.attn_split {
                // q/k norm + RoPE, cache store, attention and its merge: one dispatch.
                k.attn_decode_fused(
                    rec,
                    AttnDecodeFused {
                        q: &act.q,
                        k: &act.k,
                        v: &act.v,
                        q_w: &a.q_norm,
                        k_w: &a.k_norm,
                        pos: positions,
                        out: &act.o,
                        scratch: &act.attn,
                        counters: &act.counters,
                        cache_len: len,
                        kv_cap: cap,
                        eps: d.rms_eps,
                        merge_here: true,
                    },
                    kv,
                    heads,
                    rope,
                )?;
                k.matvec_fused(rec, planar(&a.o, h, qd), &act.o, None, Some(&act.x), &act.r)?;
                if norm_out {
                    k.rms_norm(rec, &act.r, &a.ffn_norm, &act.y, h, 1, d.rms_eps)?;
                }
                return Ok(());
            }
            k.qk_norm_rope_store(
                rec,
                QkNormRope {
                    q: &act.q,
                    k: &act.k,
                    q_w: &a.q_norm,
                    k_w: &a.k_norm,
                    pos: positions,
                    n_tokens: 1,
                    eps: d.rms_eps,
                },
                KvWrite { v: &act.v, k_cache: kc, v_cache: vc, cache_len: len, max_len: cap, ty: kv.ty },
                heads,
                rope,
            )?;
            match at {
                Some(p) if self.cp_one_dispatch_attention && hd.is_multiple_of(8) && hd <= 128 => {
                    k.attn_prefill(rec, AttnPrefill { q: &act.q, out: &act.o, n: 1, p0: p }, kv, heads)?
                }
                Some(p) => k.attn_decode(
                    rec,
                    AttnDecode { q: &act.q, out: &act.o, scratch: &act.attn, n_q: 1, kv_len: p + 1 },
                    kv,
                    heads,
                )?,
                None => k.attn_decode_at(
                    rec,
                    AttnDecodeAt {
                        q: &act.q,
                        out: &act.o,
                        scratch: &act.attn,
                        cache_len: &s.cache_len,
                        n_q: 1,
                        kv_cap: cap,
                    },
                    kv,
                    heads,
                )?,
            }
            k.matvec_fused(rec, planar(&a.o, h, qd), &act.o, None, Some(&act.x), &act.r)?;
            if norm_out {
                k.rms_norm(rec, &act.r, &a.ffn_norm, &act.y, h, 1, d.rms_eps)?;
            }
            return Ok(());
        }
        k.rms_norm(rec, &act.x, &a.attn_norm, &act.y, h, 1, d.rms_eps)?;
        if k.matvec_path() == MatvecPath::IntDot {
            k.quantize_q8_1(rec, &act.y, h as u64, &s.q81)?;
        }
        k.matvec_prequantized(rec, planar(&a.q, qd, h), &act.y, &act.q, &s.q81)?;
        k.matvec_prequantized(rec, planar(&a.k, kvd, h), &act.y, &act.k, &s.q81)?;
        k.matvec_prequantized(rec, planar(&a.v, kvd, h), &act.y, &act.v, &s.q81)?;
        k.qk_norm_rope(
            rec,
            QkNormRope {
                q: &act.q,
                k: &act.k,
                q_w: &a.q_norm,
                k_w: &a.k_norm,
                pos: positions,
                n_tokens: 1,
                eps: d.rms_eps,
            },
            heads,
            rope,
        )?;
        match at {
            Some(p) if self.cp_one_dispatch_attention && hd.is_multiple_of(8) && hd <= 128 => {
                // Code predictor (≤ 16 keys): the store reads its position from `positions` (its
                // first entry is p), and the tiled prefill kernel with one query does the whole
                // attention in one dispatch (no split and merge).
                k.kv_store(
                    rec,
                    KvStore {
                        k_new: &act.k,
                        v_new: &act.v,
                        cache_len: positions,
                        n: 1,
                        n_kv: nkv,
                        head_dim: hd,
                        max_len: cap,
                    },
                    kv,
                )?;
                k.attn_prefill(rec, AttnPrefill { q: &act.q, out: &act.o, n: 1, p0: p }, kv, heads)?;
            }
            Some(p) => {
                k.kv_append(rec, KvAppend { k_new: &act.k, v_new: &act.v, n: 1, n_kv: nkv, head_dim: hd, p0: p }, kv)?;
                k.attn_decode(
                    rec,
                    AttnDecode { q: &act.q, out: &act.o, scratch: &act.attn, n_q: 1, kv_len: p + 1 },
                    kv,
                    heads,
                )?;
            }
            None => {
                k.kv_store(
                    rec,
                    KvStore {
                        k_new: &act.k,
                        v_new: &act.v,
                        cache_len: &s.cache_len,
                        n: 1,
                        n_kv: nkv,
                        head_dim: hd,
                        max_len: cap,
                    },
                    kv,
                )?;
                k.attn_decode_at(
                    rec,
                    AttnDecodeAt {
                        q: &act.q,
                        out: &act.o,
                        scratch: &act.attn,
                        cache_len: &s.cache_len,
                        n_q: 1,
                        kv_cap: cap,
                    },
                    kv,
                    heads,
                )?;
            }
        }
        k.matvec_residual(rec, planar(&a.o, h, qd), &act.o, &act.x, &act.r, Some(&s.q81))?;
        k.rms_norm(rec, &act.r, &a.ffn_norm, &act.y, h, 1, d.rms_eps)?;
        Ok(())
    }

    /// One Talker step on the row in `input` at the position in `s.pos`: 20 MoE layers with the
    /// shared expert, final norm → `hn`, codec head → logits, code 0 sampled into `s.code0`.
    pub(super) fn record_talker<'a>(&'a self, rec: &mut Recorder<'a>, input: &'a Buffer) -> Result<(), TalkerError> {
        let d = &self.config.talker;
        let (k, s, w) = (&self.k, &self.s, &self.w);
        let h = d.hidden;
        rec.copy(input, 0, &s.t.x, 0, h as u64 * 4)?;
        for (l, (a, moe)) in w.layers.iter().enumerate() {
            self.record_attention(rec, d, a, &s.t, self.cache(l), &s.pos, None, self.ctx, true)?;
            let (x, r, y) = (&s.t.x, &s.t.r, &s.t.y);
            // Recorded so that independent work shares barrier intervals: the router, the shared
            // expert's gate (sigmoid(w_sg · y), as a one-expert routing) and y's Q8_1 copy; then
            // routed and shared gate/up; then the routed down (x = r + Σ) and the shared one (x += ·).
            k.matvec(rec, Matrix::new(&moe.router, WType::F32, d.n_experts, h), y, &s.router, None)?;
            k.moe_shared_gate(
                rec,
                MoeSharedGate { x: y, w_gate: &moe.sh_w, ids: &s.sids, weights: &s.sw, hidden: h, n_tokens: 1 },
            )?;
            if k.matvec_path() == MatvecPath::IntDot {
                k.quantize_q8_1(rec, y, h as u64, &s.q81)?;
            }
            let gate = planar(&moe.gate, d.moe_inter, h).experts(d.n_experts);
            let up = planar(&moe.up, d.moe_inter, h).experts(d.n_experts);
            let down = planar(&moe.down, h, d.moe_inter).experts(d.n_experts);
            let sg = planar(&moe.sh_gate, d.shared_inter, h).experts(1);
            let su = planar(&moe.sh_up, d.shared_inter, h).experts(1);
            let sd = planar(&moe.sh_down, h, d.shared_inter).experts(1);
            k.moe_route_gate_up(
                rec,
                MoeRouteGateUp {
                    logits: &s.router,
                    gate,
                    up,
                    x: y,
                    ids: &s.ids,
                    weights: &s.weights,
                    k: d.top_k,
                    n_tokens: 1,
                    renormalize: d.norm_topk,
                    h: &s.h,
                },
            )?;
            k.moe_gate_up_prequantized(
                rec,
                MoeGateUp { gate: sg, up: su, x: y, ids: &s.sids, k: 1, n_tokens: 1, h: &s.hs },
                &s.q81,
            )?;
            k.moe_down(
                rec,
                MoeDown {
                    down,
                    h: &s.h,
                    ids: &s.ids,
                    weights: &s.weights,
                    k: d.top_k,
                    n_tokens: 1,
                    residual: Some(r),
                    y: x,
                },
                Some(&s.q81_h),
            )?;
            k.moe_down(
                rec,
                MoeDown {
                    down: sd,
                    h: &s.hs,
                    ids: &s.sids,
                    weights: &s.sw,
                    k: 1,
                    n_tokens: 1,
                    residual: Some(x),
                    y: x,
                },
                Some(&s.q81_h),
            )?;
        }
        k.rms_norm(rec, &s.t.x, &w.norm, &s.hn, h, 1, d.rms_eps)?;
        if self.fused_decode {
            // The head normalises x itself: no barrier between it and hn's norm.
            let n = Some((&w.norm, d.rms_eps));
            k.matvec_fused(rec, planar(&w.codec_head, d.vocab, h), &s.t.x, n, None, &s.logits)?;
        } else {
            k.matvec(rec, planar(&w.codec_head, d.vocab, h), &s.hn, &s.logits, Some(&s.q81))?;
        }
        // RNG step: the frame's base (host-written) + groups.
        let params = self.code0_params(self.config.groups);
        k.sample_stepped(
            rec,
            SampleArgs {
                logits: &s.logits,
                vocab: d.vocab,
                prev: &self.history,
                n_prev: self.ctx,
                scratch: &s.sample,
                out: &s.code0,
            },
            &params,
            &s.rng_step,
        )?;
        Ok(())
    }

    /// One code-predictor pass on `s.c.x` at position `p` (fixed in the recording).
    pub(super) fn record_predictor_pass<'a>(&'a self, rec: &mut Recorder<'a>, p: u32) -> Result<(), TalkerError> {
        let d = &self.config.predictor;
        let (k, s, w) = (&self.k, &self.s, &self.w);
        let (h, inter) = (d.hidden, d.inter);
        for (l, (a, mlp)) in w.cp_layers.iter().enumerate() {
            let cpos = &s.cpos[p as usize];
            let norm_out = !self.fused_decode;
            // The code predictor's 16-position cache stays f32 (it is tiny).
            let cp_kv = KvCache { k: &self.cp_kv[l].0, v: &self.cp_kv[l].1, ty: CacheType::F32 };
            self.record_attention(rec, d, a, &s.c, cp_kv, cpos, Some(p), self.config.groups, norm_out)?;
            // The dense SwiGLU as a one-expert MoE (id 0, weight 1): gate, up and SiLU·mul in one
            // dispatch, the down projection with the residual add in another. Fused: the routing
            // kernel over a one-expert router (softmax of one logit = 1) also does the
            // post-attention RMSNorm (and Q8_1) in its prologue.
            let gate = planar(&mlp.gate, inter, h).experts(1);
            let up = planar(&mlp.up, inter, h).experts(1);
            let down = planar(&mlp.down, h, inter).experts(1);
            if self.fused_decode {
                let fnorm = Some((&a.ffn_norm, d.rms_eps));
                k.moe_route_gate_up_norm(
                    rec,
                    MoeRouteGateUp {
                        logits: &s.one_logit,
                        gate,
                        up,
                        x: &s.c.r,
                        ids: &s.cid,
                        weights: &s.cw,
                        k: 1,
                        n_tokens: 1,
                        renormalize: true,
                        h: &s.ch,
                    },
                    fnorm,
                )?;
                k.moe_down(
                    rec,
                    MoeDown {
                        down,
                        h: &s.ch,
                        ids: &s.cid,
                        weights: &s.cw,
                        k: 1,
                        n_tokens: 1,
                        residual: Some(&s.c.r),
                        y: &s.c.x,
                    },
                    Some(&s.q81),
                )?;
            } else {
                k.moe_gate_up(
                    rec,
                    MoeGateUp { gate, up, x: &s.c.y, ids: &s.one_id, k: 1, n_tokens: 1, h: &s.ch },
                    Some(&s.q81),
                )?;
                k.moe_down(
                    rec,
                    MoeDown {
                        down,
                        h: &s.ch,
                        ids: &s.one_id,
                        weights: &s.one_w,
                        k: 1,
                        n_tokens: 1,
                        residual: Some(&s.c.r),
                        y: &s.c.x,
                    },
                    Some(&s.q81),
                )?;
            }
        }
        Ok(())
    }

    /// The whole frame t: code predictor (16 passes, 15 codes sampled on the GPU), the sum of the
    /// 16 code embeddings + the step's text, the next Talker step and its code 0. With `forced`,
    /// code 0 and the residual codes come from `s.forced` and the choices go to `s.pred` (teacher
    /// forcing).
    pub(super) fn record_frame<'a>(&'a self, rec: &mut Recorder<'a>, forced: bool) -> Result<(), TalkerError> {
        let acc = self.record_predictor(rec, forced)?;
        self.record_talker(rec, acc)?;
        let g = self.config.groups as u64;
        rec.copy(&self.s.code0, 0, &self.s.frame_out, g * 4, 4)?;
        Ok(())
    }

    /// The code-predictor part of frame t; returns the buffer holding the next Talker input.
    pub(super) fn record_predictor<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        forced: bool,
    ) -> Result<&'a Buffer, TalkerError> {
        let c = &self.config;
        let d = &c.predictor;
        let (k, s, w) = (&self.k, &self.s, &self.w);
        let (h, g) = (d.hidden, c.groups);
        let row = h as u64 * 4;
        if forced {
            rec.copy(&s.forced, 0, &s.code0, 0, 4)?;
            for j in 0..(g - 1) as usize {
                rec.copy(&s.forced, (j as u64 + 1) * 4, &s.codes[j], 0, 4)?;
            }
        }
        rec.copy(&s.code0, 0, &s.frame_out, 0, 4)?;
        rec.copy(&s.hn, 0, &s.c.x, 0, row)?;
        self.record_predictor_pass(rec, 0)?;
        let mut acc_in: &Buffer = &s.text;
        let mut flip = 0;
        for p in 1..=g {
            // Input of position p: C(code 0) at p = 1, else CP_{p−2}(code p − 1); each is also
            // added to the running sum that becomes the next Talker input.
            if p == 1 {
                k.embed_q8_0p(rec, planar(&w.codec_embed, c.talker.vocab, h), &s.code0, 1, &s.c.x)?;
            } else {
                let j = (p - 2) as usize;
                k.embed_q8_0p(rec, planar(&w.cp_embed[j], d.vocab, h), &s.codes[j], 1, &s.c.x)?;
            }
            k.add(rec, acc_in, &s.c.x, &s.acc[flip], h as u64, h as u64)?;
            acc_in = &s.acc[flip];
            flip ^= 1;
            if p == g {
                break;
            }
            self.record_predictor_pass(rec, p)?;
            let j = (p - 1) as usize;
            if self.fused_decode {
                let n = Some((&w.cp_norm, d.rms_eps));
                k.matvec_fused(rec, planar(&w.cp_head[j], d.vocab, h), &s.c.x, n, None, &s.clogits)?;
            } else {
                k.rms_norm(rec, &s.c.x, &w.cp_norm, &s.c.y, h, 1, d.rms_eps)?;
                k.matvec(rec, planar(&w.cp_head[j], d.vocab, h), &s.c.y, &s.clogits, Some(&s.q81))?;
            }
            // RNG step: the frame's base (host-written) + the group.
            let params = SampleParams { step: j as u32, ..self.sampling.predictor };
            let out = if forced { &s.pred[j] } else { &s.codes[j] };
            k.sample_stepped(
                rec,
                SampleArgs {
                    logits: &s.clogits,
                    vocab: d.vocab,
                    prev: &self.history,
                    n_prev: 0,
                    scratch: &s.csample,
                    out,
                },
                &params,
                &s.rng_step,
            )?;
            rec.copy(out, 0, &s.frame_out, (j as u64 + 1) * 4, 4)?;
            if forced {
                let lb = d.vocab as u64 * 4;
                rec.copy(&s.clogits, 0, &s.cp_logits, j as u64 * lb, lb)?;
            }
        }
        Ok(acc_in)
    }
}
