//! Recording one decode step: the layer loop (fused or per-kernel), its attention in the chosen
//! mode, and the head with the on-GPU sampling.

use super::*;
use qwen3_omni_vk::{AttnDecode, AttnDecodeAt, AttnDecodeFused, Heads, KvAppend, KvStore, KvWrite, QkNormRope, Rope};
use qwen3_omni_vk::{MatvecHead, SampleArgs};
use qwen3_omni_vk::{MoeDown, MoeRouteGateUp, RouterFold};

impl GpuThinker {
    /// Records one decode step. With `at = Some(p)` the step is for position p only (KV append at
    /// p, hidden states kept for p); with `None` it reads the position and cache length from the
    /// GPU and can be replayed for every position (hidden states are then not kept).
    pub(super) fn record_step<'a>(
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
        k.sample_stepped(
            rec,
            SampleArgs { logits: &s.logits, vocab: c.vocab, prev: hist, n_prev: self.ctx, scratch, out: &s.next },
            &params,
            &s.cache_len,
        )?;
        Ok(())
    }

    /// Whether the decode step can use the fused-prologue kernels (RMSNorm / Q8_1 quantisation
    /// inside the matrix × vector): 6 or 8 dependent dispatches per layer instead of 13.
    pub(super) fn fused_decode(&self) -> bool {
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
    pub(super) fn attention_mode(&self) -> AttnMode {
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
    pub(super) fn record_attention<'a>(
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
                AttnDecodeFused {
                    q: &s.q,
                    k: &s.k,
                    v: &s.v,
                    q_w: &lw.q_norm,
                    k_w: &lw.k_norm,
                    pos: &s.pos,
                    out: &s.o,
                    scratch: &s.attn,
                    counters: &s.attn_counters,
                    cache_len: &s.cache_len,
                    kv_cap: self.ctx,
                    eps: c.rms_eps,
                    merge_here: one_attn == AttnMode::Fused,
                },
                self.cache(l),
                Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
                Rope { theta: c.rope_theta, mrope_section: c.mrope_section },
            )?;
        } else {
            k.qk_norm_rope_store(
                rec,
                QkNormRope {
                    q: &s.q,
                    k: &s.k,
                    q_w: &lw.q_norm,
                    k_w: &lw.k_norm,
                    pos: &s.pos,
                    n_tokens: 1,
                    eps: c.rms_eps,
                },
                KvWrite {
                    v: &s.v,
                    k_cache: kc,
                    v_cache: vc,
                    cache_len: &s.cache_len,
                    max_len: self.ctx,
                    ty: self.cache_type,
                },
                Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
                Rope { theta: c.rope_theta, mrope_section: c.mrope_section },
            )?;
            k.attn_decode_at(
                rec,
                AttnDecodeAt {
                    q: &s.q,
                    out: &s.o,
                    scratch: &s.attn,
                    cache_len: &s.cache_len,
                    n_q: 1,
                    kv_cap: self.ctx,
                },
                self.cache(l),
                Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
            )?;
        }
        Ok(())
    }

    /// One decoder layer of the decode step with the fused kernels (replayable: position and cache
    /// length read from the GPU). x → x.
    pub(super) fn record_layer_fused<'a>(
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
            k.matvec_head(
                rec,
                MatvecHead {
                    w: qm,
                    x: &s.x,
                    norm: an,
                    out: HeadOut::Query,
                    hw: &lw.q_norm,
                    pos,
                    cache_len: len,
                    y: &s.q,
                    max_len: cap,
                    cache_type: self.cache_type,
                    head_dim: hd,
                },
                Rope { theta: th, mrope_section: sec },
            )?;
            k.matvec_head(
                rec,
                MatvecHead {
                    w: km,
                    x: &s.x,
                    norm: an,
                    out: HeadOut::Key,
                    hw: &lw.k_norm,
                    pos,
                    cache_len: len,
                    y: kc,
                    max_len: cap,
                    cache_type: self.cache_type,
                    head_dim: hd,
                },
                Rope { theta: th, mrope_section: sec },
            )?;
            k.matvec_head(
                rec,
                MatvecHead {
                    w: vm,
                    x: &s.x,
                    norm: an,
                    out: HeadOut::Value,
                    hw: &lw.k_norm,
                    pos,
                    cache_len: len,
                    y: vc,
                    max_len: cap,
                    cache_type: self.cache_type,
                    head_dim: hd,
                },
                Rope { theta: th, mrope_section: sec },
            )?;
            k.attn_decode_at(
                rec,
                AttnDecodeAt { q: &s.q, out: &s.o, scratch: &s.attn, cache_len: len, n_q: 1, kv_cap: cap },
                self.cache(l),
                Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
            )?;
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
            k.moe_router_fold(
                rec,
                RouterFold { r: fold, rows: c.n_experts, x: &s.x, k1: h, a: &s.o, k2: qd, u: &s.router },
            )?;
            true
        } else {
            let router = Matrix::new(&lw.router, WType::F32, c.n_experts, h);
            k.matvec_fused(rec, router, &s.r, Some(fnorm), None, &s.router)?;
            false
        };
        let (ids, wts) = (&s.ids, &s.weights);
        k.moe_route_gate_up_decode(
            rec,
            MoeRouteGateUp {
                logits: &s.router,
                gate,
                up,
                x: &s.r,
                ids,
                weights: wts,
                k: c.top_k,
                n_tokens: 1,
                renormalize: c.norm_topk,
                h: &s.h,
            },
            folded,
            fnorm,
        )?;
        k.moe_down(
            rec,
            MoeDown {
                down,
                h: &s.h,
                ids: &s.ids,
                weights: &s.weights,
                k: c.top_k,
                n_tokens: 1,
                residual: Some(&s.r),
                y: &s.x,
            },
            Some(&s.q81_h),
        )?;
        Ok(())
    }

    /// One decoder layer of the decode step, unfused (other head shapes, or `ThinkerOptions::fused_decode` off).
    pub(super) fn record_layer<'a>(
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
            QkNormRope { q: qn, k: kn, q_w: &lw.q_norm, k_w: &lw.k_norm, pos: &s.pos, n_tokens: 1, eps: c.rms_eps },
            Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
            Rope { theta: c.rope_theta, mrope_section: c.mrope_section },
        )?;
        match (dynamic, at) {
            (false, Some(p)) => {
                k.kv_append(
                    rec,
                    KvAppend { k_new: kn, v_new: &s.v, n: 1, n_kv: nkv, head_dim: hd, p0: p },
                    self.cache(l),
                )?;
                k.attn_decode(
                    rec,
                    AttnDecode { q: qn, out: &s.o, scratch: &s.attn, n_q: 1, kv_len: p + 1 },
                    self.cache(l),
                    Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
                )?;
            }
            _ => {
                k.kv_store(
                    rec,
                    KvStore {
                        k_new: kn,
                        v_new: &s.v,
                        cache_len: &s.cache_len,
                        n: 1,
                        n_kv: nkv,
                        head_dim: hd,
                        max_len: self.ctx,
                    },
                    self.cache(l),
                )?;
                k.attn_decode_at(
                    rec,
                    AttnDecodeAt {
                        q: qn,
                        out: &s.o,
                        scratch: &s.attn,
                        cache_len: &s.cache_len,
                        n_q: 1,
                        kv_cap: self.ctx,
                    },
                    self.cache(l),
                    Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
                )?;
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
        k.moe_route_gate_up(
            rec,
            MoeRouteGateUp {
                logits: &s.router,
                gate,
                up,
                x: &s.y,
                ids: &s.ids,
                weights: &s.weights,
                k: c.top_k,
                n_tokens: 1,
                renormalize: c.norm_topk,
                h: &s.h,
            },
        )?;
        k.moe_down(
            rec,
            MoeDown {
                down,
                h: &s.h,
                ids: &s.ids,
                weights: &s.weights,
                k: c.top_k,
                n_tokens: 1,
                residual: Some(&s.r),
                y: &s.x,
            },
            Some(&s.q81_h),
        )?;
        Ok(())
    }
}
