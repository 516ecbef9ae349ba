//! Decode attention: the fused single-dispatch kernel, the KV append / store, and the split-KV
//! kernels with their merge (fixed-length and length-from-a-buffer variants).

use super::*;
use crate::kernels::names;

impl Kernels {
    /// Decode attention for one token in one dispatch (replayable steps): per-head q/k RMSNorm and
    /// (M)RoPE of the raw projections `q` (`[n_heads, head_dim]`), `k` and `v` (`[n_kv, head_dim]`),
    /// the new key and value stored at position cache_len[0] (dropped at or past `kv_cap`), GQA
    /// attention over the cache, and the merge of the split — what [`Kernels::qk_norm_rope_store`],
    /// [`Kernels::attn_decode_at`] and its merge do in three. `scratch` holds
    /// [`Kernels::attn_decode_scratch_bytes`]`(1, ..)` for `kv_cap`; `counters` (u32 `[n_kv]`) must
    /// be zero before the first use and is left zero. Needs head_dim a multiple of 4 (≤ 128) and
    /// at most 16 query heads per KV head.
    ///
    /// With `merge_here` false the merge runs in a second dispatch (`attn_reduce`, DYN_LEN) instead
    /// of in the last workgroup of each KV head: the q/k RMSNorm, (M)RoPE and KV store stay in the
    /// attention kernel's prologue, no workgroup waits for the others, and `counters` is not used.
    pub fn attn_decode_fused<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: AttnDecodeFused<'a>,
        kv: KvCache<'a>,
        heads: Heads,
        rope: Rope,
    ) -> Result<()> {
        let AttnDecodeFused { q, k, v, q_w, k_w, pos, out, scratch, counters, cache_len, kv_cap, eps, merge_here } =
            args;
        let KvCache { k: k_cache, v: v_cache, ty } = kv;
        let Heads { n_heads, n_kv, head_dim } = heads;
        let Rope { theta, mrope_section } = rope;
        let name = if merge_here {
            kv_kernel(ty, names::ATTN_DECODE_FUSED_F32, names::ATTN_DECODE_FUSED_F16)?
        } else {
            kv_kernel(ty, names::ATTN_DECODE_PROLOGUE_F32, names::ATTN_DECODE_PROLOGUE_F16)?
        };
        check_heads(name, n_heads, n_kv, head_dim)?;
        let g = n_heads / n_kv;
        let caps = self.gpu().caps();
        let shared =
            g * head_dim * 4 + g * GQA_CHUNK * 4 + GQA_CHUNK * 4 + 2 * g * 4 + GQA_CHUNK * 16 + head_dim * 4 + 4;
        if !head_dim.is_multiple_of(4) || head_dim > DECODE_WG || g > GQA_MAX_G || shared > caps.max_shared_memory {
            return Err(kerr(
                name,
                format!("head_dim {head_dim}, {g} query heads per KV head: needs head_dim a multiple of 4 (≤ {DECODE_WG}) and at most {GQA_MAX_G} heads per KV head"),
            ));
        }
        if kv_cap == 0 {
            return Err(kerr(name, "a cache of 0 positions".into()));
        }
        let [_, sh, sw] = mrope_section;
        check_rope(name, head_dim, theta, mrope_section)?;
        let mut chunk = GQA_CHUNK;
        while chunk > GQA_MIN_CHUNK && kv_cap.div_ceil(chunk) as u64 * (n_kv as u64) < GQA_TARGET_GROUPS {
            chunk /= 2;
        }
        let n_chunks = kv_cap.div_ceil(chunk);
        if n_kv > caps.max_workgroup_count[1] || n_chunks > caps.max_workgroup_count[0] {
            return Err(kerr(name, format!("{n_chunks} chunks × {n_kv} KV heads exceed the workgroup count limit")));
        }
        let hd = head_dim as u64 * 4;
        let rows = n_heads as u64;
        let o_bytes = rows * n_chunks as u64 * hd;
        let ml_off = round_up(o_bytes, 256);
        let ml_bytes = rows * n_chunks as u64 * 8;
        let cache_bytes = kv_bytes(ty, kv_cap as u64, n_kv, head_dim);
        let spec = [
            SpecConst { id: 0, value: GQA_CHUNK },
            SpecConst { id: 1, value: head_dim },
            SpecConst { id: 2, value: g },
            SpecConst { id: 3, value: chunk },
        ];
        let p = self.pipeline::<PushDecodeFused>(name, &spec)?;
        let push = PushDecodeFused {
            n_heads,
            n_kv,
            kv_cap,
            n_chunks,
            scale: 1.0 / (head_dim as f32).sqrt(),
            theta,
            section_h: sh,
            section_w: sw,
            eps,
        };
        let all = [
            Binding::read(q).range(0, rows * hd),
            Binding::read(k).range(0, n_kv as u64 * hd),
            Binding::read(v).range(0, n_kv as u64 * hd),
            Binding::read(q_w).range(0, hd),
            Binding::read(k_w).range(0, hd),
            Binding::read(pos).range(0, 12),
            Binding::read_write(k_cache).range(0, cache_bytes),
            Binding::read_write(v_cache).range(0, cache_bytes),
            Binding::read_write(scratch).range(0, o_bytes),
            Binding::read_write(scratch).range(ml_off, ml_bytes),
            Binding::read(cache_len).range(0, 4),
            Binding::read_write(counters).range(0, n_kv as u64 * 4),
            Binding::write(out).range(0, rows * hd),
        ];
        // Without the merge the kernel declares neither the counters nor the output.
        let b = if merge_here { &all[..] } else { &all[..11] };
        rec.dispatch(&p, b, push_bytes(&push), [n_chunks, n_kv, 1])?;
        if merge_here {
            return Ok(());
        }
        self.attn_merge_dyn(rec, MergeDyn { scratch, out, rows, n_chunks, head_dim, cache_len, chunk, n_q: 1, kv_cap })
    }

    /// Appends `n` tokens of new keys and values (`[n, n_kv, head_dim]` f32, from offset 0 of
    /// `k_new` / `v_new`) to the caches at positions p0 .. p0 + n − 1: two buffer copies into an
    /// f32 cache, `attn_kv_store_at_f16` (rounding) into an f16 one.
    pub fn kv_append<'a>(&self, rec: &mut Recorder<'a>, args: KvAppend<'a>, kv: KvCache<'a>) -> Result<()> {
        let KvAppend { k_new, v_new, n, n_kv, head_dim, p0 } = args;
        let KvCache { k: k_cache, v: v_cache, ty } = kv;
        if n == 0 || n_kv == 0 || head_dim == 0 {
            return Err(kerr("kv_append", format!("empty append ({n} tokens × {n_kv} heads × {head_dim})")));
        }
        if ty == CacheType::F32 {
            let row = n_kv as u64 * head_dim as u64 * 4;
            rec.copy(k_new, 0, k_cache, p0 as u64 * row, n as u64 * row)?;
            return rec.copy(v_new, 0, v_cache, p0 as u64 * row, n as u64 * row);
        }
        let name = kv_kernel(ty, names::ATTN_KV_STORE_F32, names::ATTN_KV_STORE_AT_F16)?;
        let row = n_kv as u64 * head_dim as u64;
        let end = p0 as u64 + n as u64;
        if n as u64 * row > u32::MAX as u64 || end * row > u32::MAX as u64 {
            return Err(kerr(name, "the caches exceed 2^32 - 1 values".into()));
        }
        let p = self.pipeline::<PushStore>(name, &[SpecConst { id: 0, value: ROPE_WG }])?;
        let push = PushStore { n, row: row as u32, max_len: end as u32, p0 };
        rec.dispatch(
            &p,
            &[
                Binding::read(k_new).range(0, n as u64 * row * 4),
                Binding::read(v_new).range(0, n as u64 * row * 4),
                Binding::write(k_cache).range(0, kv_bytes(ty, end, n_kv, head_dim)),
                Binding::write(v_cache).range(0, kv_bytes(ty, end, n_kv, head_dim)),
            ],
            push_bytes(&push),
            stride_grid(n as u64 * row, ROPE_WG),
        )
    }

    /// Keys per chunk that [`Kernels::attn_decode`] uses for a cache of `kv_len` entries: about
    /// kv_len/16 rounded up to 32, within 32..=512.
    pub fn attn_decode_chunk(kv_len: u32) -> u32 {
        (round_up(kv_len.div_ceil(DECODE_SPLITS) as u64, 32) as u32).clamp(32, MAX_CHUNK)
    }

    /// Bytes of scratch [`Kernels::attn_decode`] needs for `n_q` query tokens of `n_heads` heads
    /// and any cache length up to `max_kv_len` (allocate once for the context size).
    pub fn attn_decode_scratch_bytes(n_q: u32, n_heads: u32, head_dim: u32, max_kv_len: u32) -> u64 {
        // Chunks: on the GQA-shared path ⌈kv/128⌉, or fewer than 2·GQA_TARGET_GROUPS (and ≤ ⌈kv/32⌉)
        // where chunks were halved; ≤ max(16, ⌈kv/512⌉) on the other. The bound grows with kv_len.
        let kv = max_kv_len as u64;
        let chunks = (DECODE_SPLITS as u64)
            .max(kv.div_ceil(GQA_CHUNK as u64))
            .max(kv.div_ceil(GQA_MIN_CHUNK as u64).min(2 * GQA_TARGET_GROUPS));
        let rows = n_q as u64 * n_heads as u64;
        round_up(rows * chunks * head_dim as u64 * 4, 256) + rows * chunks * 8
    }

    /// Decode attention: `out` (`[n_q, n_heads, head_dim]`) for `n_q` query tokens `q` (same layout)
    /// at positions kv_len − n_q .. kv_len − 1, causal, against the first `kv_len` entries of the
    /// caches (which already hold these tokens). Splits the KV length into chunks, then merges them
    /// with a log-sum-exp reduce. Where head_dim is a multiple of 4 and at most 16 query heads share
    /// a KV head, one workgroup per (token, KV head, 128-key chunk) serves all of that KV head's
    /// query heads (attn_decode.comp: each K/V row read once); otherwise one per (token, head,
    /// chunk of kv_len/16 keys) (attn_split.comp). `scratch` holds at least
    /// [`Kernels::attn_decode_scratch_bytes`]. head_dim ≤ 128.
    pub fn attn_decode<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: AttnDecode<'a>,
        kv: KvCache<'a>,
        heads: Heads,
    ) -> Result<()> {
        let AttnDecode { q, out, scratch, n_q, kv_len } = args;
        let KvCache { k: k_cache, v: v_cache, ty } = kv;
        let Heads { n_heads, n_kv, head_dim } = heads;
        // Keys load as vec4s when rows allow it (every real head_dim does).
        let name = if head_dim.is_multiple_of(4) {
            kv_kernel(ty, names::ATTN_SPLIT_VEC4_F32, names::ATTN_SPLIT_VEC4_F16)?
        } else {
            kv_kernel(ty, names::ATTN_SPLIT_F32, names::ATTN_SPLIT_F16)?
        };
        check_heads(name, n_heads, n_kv, head_dim)?;
        // `QWEN3VK_ATTN_DECODE=split` forces the per-query-head split kernel (A/B measurements).
        let force_split = self.tuning().attn_decode_split;
        if let Some(r) = (!force_split).then(|| self.attn_decode_gqa(rec, args, kv, heads, None)).flatten() {
            return r;
        }
        if head_dim > DECODE_WG {
            return Err(kerr(name, format!("head_dim {head_dim} > {DECODE_WG}")));
        }
        if n_q == 0 || kv_len < n_q {
            return Err(kerr(
                name,
                format!("{n_q} query tokens against {kv_len} cache entries: need 0 < n_q ≤ kv_len"),
            ));
        }
        let chunk = Self::attn_decode_chunk(kv_len);
        let n_chunks = kv_len.div_ceil(chunk);
        let rows = n_q as u64 * n_heads as u64;
        let max_y = self.gpu().caps().max_workgroup_count[1] as u64;
        if rows > max_y {
            return Err(kerr(name, format!("{n_q} tokens × {n_heads} heads exceed {max_y} workgroups")));
        }
        let o_bytes = rows * n_chunks as u64 * head_dim as u64 * 4;
        let ml_off = round_up(o_bytes, 256);
        let ml_bytes = rows * n_chunks as u64 * 8;
        let kv_bytes = kv_bytes(ty, kv_len as u64, n_kv, head_dim);
        let q_bytes = rows * head_dim as u64 * 4;
        let p = self.pipeline::<PushSplit>(
            name,
            &[SpecConst { id: 0, value: DECODE_WG }, SpecConst { id: 1, value: MAX_CHUNK }],
        )?;
        let push =
            PushSplit { n_q, n_heads, n_kv, head_dim, kv_len, chunk, n_chunks, scale: 1.0 / (head_dim as f32).sqrt() };
        rec.dispatch(
            &p,
            &[
                Binding::read(q).range(0, q_bytes),
                Binding::read(k_cache).range(0, kv_bytes),
                Binding::read(v_cache).range(0, kv_bytes),
                Binding::write(scratch).range(0, o_bytes),
                Binding::write(scratch).range(ml_off, ml_bytes),
            ],
            push_bytes(&push),
            [n_chunks, rows as u32, 1],
        )?;
        self.attn_merge(rec, scratch, out, rows, n_chunks, head_dim)
    }

    /// The GQA-shared decode path (attn_decode.comp + the merge): `None` where it does not apply
    /// (head_dim not a multiple of 4, too many query heads per KV head, too little shared memory).
    fn attn_decode_gqa<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: AttnDecode<'a>,
        kv: KvCache<'a>,
        heads: Heads,
        dyn_len: Option<&'a Buffer>,
    ) -> Option<Result<()>> {
        let AttnDecode { q, out, scratch, n_q, kv_len } = args;
        let KvCache { k: k_cache, v: v_cache, ty } = kv;
        let Heads { n_heads, n_kv, head_dim } = heads;
        let name = match if dyn_len.is_some() {
            kv_kernel(ty, names::ATTN_DECODE_GQA_DYN_F32, names::ATTN_DECODE_GQA_DYN_F16)
        } else {
            kv_kernel(ty, names::ATTN_DECODE_GQA_F32, names::ATTN_DECODE_GQA_F16)
        } {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let g = n_heads / n_kv;
        let caps = self.gpu().caps();
        // qs, sc, scp (partial scores), red, hm / hl, po (row-group sums of up to 4 heads).
        let shared = g * head_dim * 4 + 2 * g * GQA_CHUNK * 4 + GQA_CHUNK * 4 + 2 * g * 4 + g.min(4) * GQA_CHUNK * 16;
        if !head_dim.is_multiple_of(4) || head_dim > DECODE_WG || g > GQA_MAX_G || shared > caps.max_shared_memory {
            return None;
        }
        let mut run = || -> Result<()> {
            if n_q == 0 || kv_len < n_q {
                return Err(kerr(
                    name,
                    format!("{n_q} query tokens against {kv_len} cache entries: need 0 < n_q ≤ kv_len"),
                ));
            }
            let rows = n_q as u64 * n_heads as u64;
            let groups_y = n_q as u64 * n_kv as u64;
            let mut chunk = GQA_CHUNK;
            while chunk > GQA_MIN_CHUNK && kv_len.div_ceil(chunk) as u64 * groups_y < GQA_TARGET_GROUPS {
                chunk /= 2;
            }
            let n_chunks = kv_len.div_ceil(chunk);
            if groups_y > caps.max_workgroup_count[1] as u64 || n_chunks > caps.max_workgroup_count[0] {
                return Err(kerr(
                    name,
                    format!("{n_chunks} chunks × {groups_y} (token, KV head) pairs exceed the workgroup count limit"),
                ));
            }
            let o_bytes = rows * n_chunks as u64 * head_dim as u64 * 4;
            let ml_off = round_up(o_bytes, 256);
            let ml_bytes = rows * n_chunks as u64 * 8;
            let kv_bytes = kv_bytes(ty, kv_len as u64, n_kv, head_dim);
            let q_bytes = rows * head_dim as u64 * 4;
            let spec = [
                SpecConst { id: 0, value: GQA_CHUNK },
                SpecConst { id: 1, value: head_dim },
                SpecConst { id: 2, value: g },
                SpecConst { id: 3, value: chunk },
            ];
            let p = self.pipeline::<PushDecode>(name, &spec)?;
            let push = PushDecode { n_q, n_heads, n_kv, kv_len, n_chunks, scale: 1.0 / (head_dim as f32).sqrt() };
            let mut b = vec![
                Binding::read(q).range(0, q_bytes),
                Binding::read(k_cache).range(0, kv_bytes),
                Binding::read(v_cache).range(0, kv_bytes),
                Binding::write(scratch).range(0, o_bytes),
                Binding::write(scratch).range(ml_off, ml_bytes),
            ];
            if let Some(l) = dyn_len {
                b.push(Binding::read(l).range(0, 4));
            }
            rec.dispatch(&p, &b, push_bytes(&push), [n_chunks, groups_y as u32, 1])?;
            match dyn_len {
                Some(l) => self.attn_merge_dyn(
                    rec,
                    MergeDyn { scratch, out, rows, n_chunks, head_dim, cache_len: l, chunk, n_q, kv_cap: kv_len },
                ),
                None => self.attn_merge(rec, scratch, out, rows, n_chunks, head_dim),
            }
        };
        Some(run())
    }

    /// Decode attention for replayable steps: as [`Kernels::attn_decode`], but the number of cache
    /// entries before the `n_q` query tokens is read from the GPU (`cache_len`, u32 `[1]`), so one
    /// recorded command buffer serves every step; kv_len = min(cache_len + n_q, `kv_cap`), where
    /// `kv_cap` (≥ n_q) is the capacity the caches are bound for. Sizes the split for `kv_cap`
    /// (chunks past kv_len exit at once, the merge reads only those holding keys). `scratch` holds
    /// [`Kernels::attn_decode_scratch_bytes`] for `kv_cap`. Needs head_dim a multiple of 4 (≤ 128)
    /// and at most 16 query heads per KV head.
    pub fn attn_decode_at<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: AttnDecodeAt<'a>,
        kv: KvCache<'a>,
        heads: Heads,
    ) -> Result<()> {
        let AttnDecodeAt { q, out, scratch, cache_len, n_q, kv_cap } = args;
        let Heads { n_heads, n_kv, head_dim } = heads;
        let name = kv_kernel(kv.ty, names::ATTN_DECODE_GQA_DYN_F32, names::ATTN_DECODE_GQA_DYN_F16)?;
        check_heads(name, n_heads, n_kv, head_dim)?;
        let r =
            self.attn_decode_gqa(rec, AttnDecode { q, out, scratch, n_q, kv_len: kv_cap }, kv, heads, Some(cache_len));
        r.unwrap_or_else(|| {
                let g = n_heads / n_kv;
                Err(kerr(
                    name,
                    format!(
                        "head_dim {head_dim}, {g} query heads per KV head: needs head_dim a multiple of 4 (≤ {DECODE_WG}) and at most {GQA_MAX_G} heads per KV head"
                    ),
                ))
            })
    }

    /// Appends `n` tokens of new keys and values (`[n, n_kv, head_dim]` f32) to the caches
    /// (`[max_len, n_kv, head_dim]` of `kv.ty`) at positions cache_len[0] .. cache_len[0] + n − 1, the length
    /// read from the GPU (`cache_len`, u32 `[1]`) for replayable steps; positions ≥ max_len are
    /// dropped.
    pub fn kv_store<'a>(&self, rec: &mut Recorder<'a>, args: KvStore<'a>, kv: KvCache<'a>) -> Result<()> {
        let KvStore { k_new, v_new, cache_len, n, n_kv, head_dim, max_len } = args;
        let KvCache { k: k_cache, v: v_cache, ty } = kv;
        let name = kv_kernel(ty, names::ATTN_KV_STORE_F32, names::ATTN_KV_STORE_F16)?;
        let row = n_kv as u64 * head_dim as u64;
        if n == 0 || row == 0 || max_len == 0 {
            return Err(kerr(
                name,
                format!("empty store ({n} tokens × {n_kv} heads × {head_dim}, {max_len} positions)"),
            ));
        }
        if n as u64 * row > u32::MAX as u64 || max_len as u64 * row > u32::MAX as u64 {
            return Err(kerr(name, "the caches exceed 2^32 - 1 values".into()));
        }
        let p = self.pipeline::<PushStore>(name, &[SpecConst { id: 0, value: ROPE_WG }])?;
        let push = PushStore { n, row: row as u32, max_len, p0: 0 };
        let (new_b, cache_b) = (n as u64 * row * 4, kv_bytes(ty, max_len as u64, n_kv, head_dim));
        rec.dispatch(
            &p,
            &[
                Binding::read(k_new).range(0, new_b),
                Binding::read(v_new).range(0, new_b),
                Binding::write(k_cache).range(0, cache_b),
                Binding::write(v_cache).range(0, cache_b),
                Binding::read(cache_len).range(0, 4),
            ],
            push_bytes(&push),
            stride_grid(n as u64 * row, ROPE_WG),
        )
    }

    /// attn_reduce_dyn_f32: merges the chunks holding keys (length from `cache_len`) into `out`.
    fn attn_merge_dyn<'a>(&self, rec: &mut Recorder<'a>, args: MergeDyn<'a>) -> Result<()> {
        let MergeDyn { scratch, out, rows, n_chunks, head_dim, cache_len, chunk, n_q, kv_cap } = args;
        let o_bytes = rows * n_chunks as u64 * head_dim as u64 * 4;
        let ml_off = round_up(o_bytes, 256);
        let ml_bytes = rows * n_chunks as u64 * 8;
        let q_bytes = rows * head_dim as u64 * 4;
        let p = self.pipeline::<PushReduceDyn>(names::ATTN_REDUCE_DYN_F32, &[SpecConst { id: 0, value: REDUCE_WG }])?;
        let (dims, grid_x) = grid(rows as u32, self.gpu().caps().max_workgroup_count[0]);
        let push = PushReduceDyn { rows: rows as u32, n_chunks, head_dim, grid_x, chunk, n_q, kv_cap };
        rec.dispatch(
            &p,
            &[
                Binding::read(scratch).range(0, o_bytes),
                Binding::read(scratch).range(ml_off, ml_bytes),
                Binding::write(out).range(0, q_bytes),
                Binding::read(cache_len).range(0, 4),
            ],
            push_bytes(&push),
            dims,
        )
    }

    /// attn_reduce_f32: merges `n_chunks` partials per row of `scratch` into `out`.
    fn attn_merge<'a>(
        &self,
        rec: &mut Recorder<'a>,
        scratch: &'a Buffer,
        out: &'a Buffer,
        rows: u64,
        n_chunks: u32,
        head_dim: u32,
    ) -> Result<()> {
        let o_bytes = rows * n_chunks as u64 * head_dim as u64 * 4;
        let ml_off = round_up(o_bytes, 256);
        let ml_bytes = rows * n_chunks as u64 * 8;
        let q_bytes = rows * head_dim as u64 * 4;
        let name = names::ATTN_REDUCE_F32;
        let p = self.pipeline::<PushReduce>(name, &[SpecConst { id: 0, value: REDUCE_WG }])?;
        let (dims, grid_x) = grid(rows as u32, self.gpu().caps().max_workgroup_count[0]);
        let push = PushReduce { rows: rows as u32, n_chunks, head_dim, grid_x };
        rec.dispatch(
            &p,
            &[
                Binding::read(scratch).range(0, o_bytes),
                Binding::read(scratch).range(ml_off, ml_bytes),
                Binding::write(out).range(0, q_bytes),
            ],
            push_bytes(&push),
            dims,
        )
    }
}
