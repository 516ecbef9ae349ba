//! Batched prefill: prompt chunks through matrix × matrix projections and `attn_prefill`, audio
//! features spliced in at their runs.

use super::*;
use qwen3_omni_vk::SampleArgs;
use qwen3_omni_vk::{AttnPrefill, Heads, KvAppend, QkNormRope, Rope};
use qwen3_omni_vk::{MoeDown, MoeGateUp, MoeRoute};

impl GpuThinker {
    pub(super) fn prefill_scratch(&mut self) -> Result<(), GenError> {
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
    pub(super) fn check_prompt(&self, tokens: &[u32]) -> Result<(), GenError> {
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

    pub(super) fn prefill_chunk(&mut self, tokens: &[u32], last: bool, audio: AudioRuns<'_>) -> Result<u32, GenError> {
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
                QkNormRope {
                    q: qn,
                    k: kn,
                    q_w: &lw.q_norm,
                    k_w: &lw.k_norm,
                    pos: &pf.pos,
                    n_tokens: n,
                    eps: c.rms_eps,
                },
                Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
                Rope { theta: c.rope_theta, mrope_section: c.mrope_section },
            )?;
            k.kv_append(&mut rec, KvAppend { k_new: kn, v_new: &pf.v, n, n_kv: nkv, head_dim: hd, p0 }, self.cache(l))?;
            k.attn_prefill(
                &mut rec,
                AttnPrefill { q: qn, out: &pf.o, n, p0 },
                self.cache(l),
                Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
            )?;
            let mo = Matrix::new(&lw.o, WType::Q8_0Planar, h, qd);
            if float {
                k.matmul_q8_0_float(&mut rec, mo, &pf.o, n, &pf.ao)?;
            } else {
                k.matmul_q8_0(&mut rec, mo, &pf.o, n, &pf.ao, &pf.q81)?;
            }
            k.add(&mut rec, &pf.x, &pf.ao, &pf.r, nh_total, nh_total)?;
            k.rms_norm(&mut rec, &pf.r, &lw.ffn_norm, &pf.y, h, n, c.rms_eps)?;
            k.matmul_f32(&mut rec, Matrix::new(&lw.router, WType::F32, c.n_experts, h), &pf.y, n, &pf.router)?;
            k.moe_route(
                &mut rec,
                MoeRoute {
                    logits: &pf.router,
                    ids: &pf.ids,
                    weights: &pf.weights,
                    n_experts: c.n_experts,
                    k: c.top_k,
                    n_tokens: n,
                    renormalize: c.norm_topk,
                },
            )?;
            let gate = Matrix::new(&lw.gate, WType::Q8_0Planar, c.moe_inter, h).experts(c.n_experts);
            let up = Matrix::new(&lw.up, WType::Q8_0Planar, c.moe_inter, h).experts(c.n_experts);
            let down = Matrix::new(&lw.down, WType::Q8_0Planar, h, c.moe_inter).experts(c.n_experts);
            k.moe_gate_up(
                &mut rec,
                MoeGateUp { gate, up, x: &pf.y, ids: &pf.ids, k: c.top_k, n_tokens: n, h: &pf.h },
                Some(&pf.q81),
            )?;
            k.moe_down(
                &mut rec,
                MoeDown {
                    down,
                    h: &pf.h,
                    ids: &pf.ids,
                    weights: &pf.weights,
                    k: c.top_k,
                    n_tokens: n,
                    residual: Some(&pf.r),
                    y: &pf.x,
                },
                Some(&pf.q81_h),
            )?;
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
            k.sample(
                &mut rec,
                SampleArgs {
                    logits: &s.logits,
                    vocab: c.vocab,
                    prev: &self.history,
                    n_prev: self.ctx,
                    scratch: &self.sample_scratch,
                    out: &s.next,
                },
                &params,
            )?;
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
}
