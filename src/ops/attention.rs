//! Attention side of a decoder layer: rotary embedding (rotate-half, interleaved MRoPE), KV-cache
//! append, causal GQA attention for decode (split over the KV length, then merged) and prefill
//! (tiled, online softmax).
//!
//! Layouts (f32): q / k / v / attention output `[n_tokens, heads, head_dim]`; the K and V caches are
//! separate buffers `[max_len, n_kv, head_dim]` (position-major), so appending tokens is one copy each.
//! Query head h reads KV head h / (n_heads / n_kv). Scale 1/√head_dim.

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result, SpecConst};

use super::{grid, kerr, push_bytes, stride_grid};
use crate::kernels::Kernels;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushRope {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    theta: f32,
    section_h: u32,
    section_w: u32,
}
const _: () = assert!(std::mem::size_of::<PushRope>() == 24);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushQkNormRope {
    n_tokens: u32,
    n_heads: u32,
    n_kv: u32,
    head_dim: u32,
    theta: f32,
    section_h: u32,
    section_w: u32,
    eps: f32,
    grid_x: u32,
}
const _: () = assert!(std::mem::size_of::<PushQkNormRope>() == 36);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushDecodeFused {
    n_heads: u32,
    n_kv: u32,
    kv_cap: u32,
    n_chunks: u32,
    scale: f32,
    theta: f32,
    section_h: u32,
    section_w: u32,
    eps: f32,
}
const _: () = assert!(std::mem::size_of::<PushDecodeFused>() == 36);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushQkNormRopeStore {
    base: PushQkNormRope,
    max_len: u32,
}
const _: () = assert!(std::mem::size_of::<PushQkNormRopeStore>() == 40);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushSplit {
    n_q: u32,
    n_heads: u32,
    n_kv: u32,
    head_dim: u32,
    kv_len: u32,
    chunk: u32,
    n_chunks: u32,
    scale: f32,
}
const _: () = assert!(std::mem::size_of::<PushSplit>() == 32);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushDecode {
    n_q: u32,
    n_heads: u32,
    n_kv: u32,
    kv_len: u32,
    n_chunks: u32,
    scale: f32,
}
const _: () = assert!(std::mem::size_of::<PushDecode>() == 24);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushReduce {
    rows: u32,
    n_chunks: u32,
    head_dim: u32,
    grid_x: u32,
}
const _: () = assert!(std::mem::size_of::<PushReduce>() == 16);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushReduceDyn {
    rows: u32,
    n_chunks: u32,
    head_dim: u32,
    grid_x: u32,
    chunk: u32,
    n_q: u32,
    kv_cap: u32,
}
const _: () = assert!(std::mem::size_of::<PushReduceDyn>() == 28);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushStore {
    n: u32,
    row: u32,
    max_len: u32,
}
const _: () = assert!(std::mem::size_of::<PushStore>() == 12);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushPrefill {
    n: u32,
    n_heads: u32,
    n_kv: u32,
    p0: u32,
    scale: f32,
}
const _: () = assert!(std::mem::size_of::<PushPrefill>() == 20);

const ROPE_WG: u32 = 256;
/// Decode: invocations per workgroup (also the largest head_dim) and the largest KV chunk.
const DECODE_WG: u32 = 128;
const MAX_CHUNK: u32 = 512;
/// Decode splits the KV length into about this many chunks (until chunks reach MAX_CHUNK).
const DECODE_SPLITS: u32 = 16;
/// GQA-shared decode kernel (attn_decode.comp): invocations per workgroup = the largest chunk;
/// chunks halve (down to GQA_MIN_CHUNK keys) while there are fewer than GQA_TARGET_GROUPS
/// workgroups; the largest group of query heads per KV head it takes (registers: G floats + G vec4s).
const GQA_CHUNK: u32 = 128;
const GQA_MIN_CHUNK: u32 = 32;
const GQA_TARGET_GROUPS: u64 = 256;
const GQA_MAX_G: u32 = 16;
/// Invocations of the merge kernel.
const REDUCE_WG: u32 = 256;
/// Prefill: invocations per workgroup, query block and key tile (match attn_prefill.comp).
const PREFILL_WG: u32 = 128;
const BQ: u32 = 16;
const BK: u32 = 16;

fn round_up(v: u64, m: u64) -> u64 {
    v.div_ceil(m) * m
}

/// Checks the GQA head shape shared by the attention launchers.
pub(super) fn check_heads(name: &str, n_heads: u32, n_kv: u32, head_dim: u32) -> Result<()> {
    if n_heads == 0 || n_kv == 0 || !n_heads.is_multiple_of(n_kv) {
        return Err(kerr(name, format!("{n_heads} query heads cannot share {n_kv} KV heads evenly")));
    }
    if head_dim == 0 {
        return Err(kerr(name, "head_dim is 0".into()));
    }
    Ok(())
}

impl Kernels {
    /// Rotary embedding in place on x `[n_tokens, n_heads, head_dim]` (rotate-half: dimension j
    /// pairs with j + head_dim/2), inv_freq[j] = theta^(−2j/head_dim), positions from `pos`
    /// (u32 `[3, n_tokens]`: the t row, then h, then w, like HF's position_ids). Interleaved MRoPE
    /// with `mrope_section = [t, h, w]` (frequency counts, summing to at most head_dim/2):
    /// frequency j reads axis h if j % 3 == 1 and j < 3·h, axis w if j % 3 == 2 and j < 3·w, else
    /// t. `[head_dim/2, 0, 0]` is 1-D RoPE; so is any section when the three rows are equal.
    #[allow(clippy::too_many_arguments)]
    pub fn rope<'a>(
        &self,
        rec: &mut Recorder<'a>,
        x: &'a Buffer,
        pos: &'a Buffer,
        n_tokens: u32,
        n_heads: u32,
        head_dim: u32,
        theta: f32,
        mrope_section: [u32; 3],
    ) -> Result<()> {
        let name = "rope_f32";
        if n_tokens == 0 || n_heads == 0 || head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(kerr(
                name,
                format!("{n_tokens} tokens × {n_heads} heads × head_dim {head_dim}: need nonzero sizes, even head_dim"),
            ));
        }
        let [_, sh, sw] = mrope_section;
        check_rope(name, head_dim, theta, mrope_section)?;
        let values = n_tokens as u64 * n_heads as u64 * head_dim as u64;
        if values > u32::MAX as u64 {
            return Err(kerr(name, format!("{values} values exceed 2^32 - 1")));
        }
        let p = self.pipeline::<PushRope>(name, &[SpecConst { id: 0, value: ROPE_WG }])?;
        let push = PushRope { n_tokens, n_heads, head_dim, theta, section_h: sh, section_w: sw };
        rec.dispatch(
            &p,
            &[Binding::read_write(x).range(0, values * 4), Binding::read(pos).range(0, n_tokens as u64 * 12)],
            push_bytes(&push),
            stride_grid(values / 2, ROPE_WG),
        )
    }

    /// Per-head q/k RMSNorm then RoPE, in place, in one dispatch (spec §5.1: q_norm / k_norm
    /// before the rotary embedding): every head row of q `[n_tokens, n_heads, head_dim]` and k
    /// `[n_tokens, n_kv, head_dim]` becomes rope(x / sqrt(mean(x²) + eps) · w) with w = `q_w` or
    /// `k_w` (`[head_dim]` f32); the rotation is [`Kernels::rope`]'s (positions u32 `[3, n_tokens]`,
    /// `mrope_section = [t, h, w]`). Replaces two RMSNorm and two RoPE dispatches.
    #[allow(clippy::too_many_arguments)]
    pub fn qk_norm_rope<'a>(
        &self,
        rec: &mut Recorder<'a>,
        q: &'a Buffer,
        k: &'a Buffer,
        q_w: &'a Buffer,
        k_w: &'a Buffer,
        pos: &'a Buffer,
        n_tokens: u32,
        n_heads: u32,
        n_kv: u32,
        head_dim: u32,
        eps: f32,
        theta: f32,
        mrope_section: [u32; 3],
    ) -> Result<()> {
        let name = "rope_qk_norm_f32";
        if n_tokens == 0 || n_heads == 0 || n_kv == 0 || head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(kerr(name, format!("{n_tokens} tokens × {n_heads}/{n_kv} heads × head_dim {head_dim}: need nonzero sizes, even head_dim")));
        }
        let [_, sh, sw] = mrope_section;
        check_rope(name, head_dim, theta, mrope_section)?;
        let rows = n_tokens as u64 * (n_heads as u64 + n_kv as u64);
        if rows * head_dim as u64 > u32::MAX as u64 {
            return Err(kerr(name, format!("{rows} rows of {head_dim} exceed 2^32 - 1 values")));
        }
        let p = self.pipeline::<PushQkNormRope>(name, &[SpecConst { id: 0, value: 64 }])?;
        let (dims, grid_x) = grid(rows as u32, self.gpu().caps().max_workgroup_count[0]);
        let push =
            PushQkNormRope { n_tokens, n_heads, n_kv, head_dim, theta, section_h: sh, section_w: sw, eps, grid_x };
        let hd = head_dim as u64 * 4;
        rec.dispatch(
            &p,
            &[
                Binding::read_write(q).range(0, n_tokens as u64 * n_heads as u64 * hd),
                Binding::read_write(k).range(0, n_tokens as u64 * n_kv as u64 * hd),
                Binding::read(q_w).range(0, hd),
                Binding::read(k_w).range(0, hd),
                Binding::read(pos).range(0, n_tokens as u64 * 12),
            ],
            push_bytes(&push),
            dims,
        )
    }

    /// [`Kernels::qk_norm_rope`] fused with [`Kernels::kv_store`] for replayable decode steps: q is
    /// normalised and rotated in place; k is normalised, rotated and written straight into the K
    /// cache, and v copied into the V cache, at positions cache_len[0] .. + n_tokens (dropped at or
    /// past `max_len`). k itself is left as it was. One dispatch instead of two.
    #[allow(clippy::too_many_arguments)]
    pub fn qk_norm_rope_store<'a>(
        &self,
        rec: &mut Recorder<'a>,
        q: &'a Buffer,
        k: &'a Buffer,
        v: &'a Buffer,
        q_w: &'a Buffer,
        k_w: &'a Buffer,
        pos: &'a Buffer,
        k_cache: &'a Buffer,
        v_cache: &'a Buffer,
        cache_len: &'a Buffer,
        n_tokens: u32,
        n_heads: u32,
        n_kv: u32,
        head_dim: u32,
        max_len: u32,
        eps: f32,
        theta: f32,
        mrope_section: [u32; 3],
    ) -> Result<()> {
        let name = "rope_qk_norm_store_f32";
        if n_tokens == 0 || n_heads == 0 || n_kv == 0 || head_dim == 0 || !head_dim.is_multiple_of(2) || max_len == 0 {
            return Err(kerr(name, format!("{n_tokens} tokens × {n_heads}/{n_kv} heads × head_dim {head_dim}, {max_len} cache positions: need nonzero sizes, even head_dim")));
        }
        let [_, sh, sw] = mrope_section;
        check_rope(name, head_dim, theta, mrope_section)?;
        let hd = head_dim as u64 * 4;
        let kv_row = n_kv as u64 * hd;
        if max_len as u64 * kv_row / 4 > u32::MAX as u64 {
            return Err(kerr(name, "the caches exceed 2^32 - 1 floats".into()));
        }
        let rows = n_tokens as u64 * (n_heads as u64 + 2 * n_kv as u64);
        let p = self.pipeline::<PushQkNormRopeStore>(name, &[SpecConst { id: 0, value: 64 }])?;
        let (dims, grid_x) = grid(rows as u32, self.gpu().caps().max_workgroup_count[0]);
        let base =
            PushQkNormRope { n_tokens, n_heads, n_kv, head_dim, theta, section_h: sh, section_w: sw, eps, grid_x };
        let kv_bytes = n_tokens as u64 * kv_row;
        rec.dispatch(
            &p,
            &[
                Binding::read_write(q).range(0, n_tokens as u64 * n_heads as u64 * hd),
                Binding::read_write(k).range(0, kv_bytes),
                Binding::read(q_w).range(0, hd),
                Binding::read(k_w).range(0, hd),
                Binding::read(pos).range(0, n_tokens as u64 * 12),
                Binding::read(v).range(0, kv_bytes),
                Binding::write(k_cache).range(0, max_len as u64 * kv_row),
                Binding::write(v_cache).range(0, max_len as u64 * kv_row),
                Binding::read(cache_len).range(0, 4),
            ],
            push_bytes(&PushQkNormRopeStore { base, max_len }),
            dims,
        )
    }

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
    #[allow(clippy::too_many_arguments)]
    pub fn attn_decode_fused<'a>(
        &self,
        rec: &mut Recorder<'a>,
        q: &'a Buffer,
        k: &'a Buffer,
        v: &'a Buffer,
        q_w: &'a Buffer,
        k_w: &'a Buffer,
        pos: &'a Buffer,
        k_cache: &'a Buffer,
        v_cache: &'a Buffer,
        out: &'a Buffer,
        scratch: &'a Buffer,
        counters: &'a Buffer,
        cache_len: &'a Buffer,
        n_heads: u32,
        n_kv: u32,
        head_dim: u32,
        kv_cap: u32,
        eps: f32,
        theta: f32,
        mrope_section: [u32; 3],
        merge_here: bool,
    ) -> Result<()> {
        let name = if merge_here { "attn_decode_fused_f32" } else { "attn_decode_prologue_f32" };
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
        let cache_bytes = kv_cap as u64 * n_kv as u64 * hd;
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
        self.attn_merge_dyn(rec, scratch, out, rows, n_chunks, head_dim, cache_len, chunk, 1, kv_cap)
    }

    /// Appends `n` tokens of new keys and values (`[n, n_kv, head_dim]` f32, from offset 0 of
    /// `k_new` / `v_new`) to the caches at positions p0 .. p0 + n − 1 (two buffer copies).
    #[allow(clippy::too_many_arguments)]
    pub fn kv_append<'a>(
        &self,
        rec: &mut Recorder<'a>,
        k_new: &'a Buffer,
        v_new: &'a Buffer,
        k_cache: &'a Buffer,
        v_cache: &'a Buffer,
        n: u32,
        n_kv: u32,
        head_dim: u32,
        p0: u32,
    ) -> Result<()> {
        if n == 0 || n_kv == 0 || head_dim == 0 {
            return Err(kerr("kv_append", format!("empty append ({n} tokens × {n_kv} heads × {head_dim})")));
        }
        let row = n_kv as u64 * head_dim as u64 * 4;
        rec.copy(k_new, 0, k_cache, p0 as u64 * row, n as u64 * row)?;
        rec.copy(v_new, 0, v_cache, p0 as u64 * row, n as u64 * row)
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
    #[allow(clippy::too_many_arguments)]
    pub fn attn_decode<'a>(
        &self,
        rec: &mut Recorder<'a>,
        q: &'a Buffer,
        k_cache: &'a Buffer,
        v_cache: &'a Buffer,
        out: &'a Buffer,
        scratch: &'a Buffer,
        n_q: u32,
        n_heads: u32,
        n_kv: u32,
        head_dim: u32,
        kv_len: u32,
    ) -> Result<()> {
        // Keys load as vec4s when rows allow it (every real head_dim does).
        let name = if head_dim.is_multiple_of(4) { "attn_split_vec4_f32" } else { "attn_split_f32" };
        check_heads(name, n_heads, n_kv, head_dim)?;
        // `QWEN3VK_ATTN_DECODE=split` forces the per-query-head split kernel (A/B measurements).
        let force_split = self.tuning().attn_decode_split;
        if let Some(r) = (!force_split)
            .then(|| {
                self.attn_decode_gqa(rec, q, k_cache, v_cache, out, scratch, n_q, n_heads, n_kv, head_dim, kv_len, None)
            })
            .flatten()
        {
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
        let kv_bytes = kv_len as u64 * n_kv as u64 * head_dim as u64 * 4;
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
    #[allow(clippy::too_many_arguments)]
    fn attn_decode_gqa<'a>(
        &self,
        rec: &mut Recorder<'a>,
        q: &'a Buffer,
        k_cache: &'a Buffer,
        v_cache: &'a Buffer,
        out: &'a Buffer,
        scratch: &'a Buffer,
        n_q: u32,
        n_heads: u32,
        n_kv: u32,
        head_dim: u32,
        kv_len: u32,
        dyn_len: Option<&'a Buffer>,
    ) -> Option<Result<()>> {
        let name = if dyn_len.is_some() { "attn_decode_gqa_dyn_f32" } else { "attn_decode_gqa_f32" };
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
            let kv_bytes = kv_len as u64 * n_kv as u64 * head_dim as u64 * 4;
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
                Some(l) => self.attn_merge_dyn(rec, scratch, out, rows, n_chunks, head_dim, l, chunk, n_q, kv_len),
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
    #[allow(clippy::too_many_arguments)]
    pub fn attn_decode_at<'a>(
        &self,
        rec: &mut Recorder<'a>,
        q: &'a Buffer,
        k_cache: &'a Buffer,
        v_cache: &'a Buffer,
        out: &'a Buffer,
        scratch: &'a Buffer,
        cache_len: &'a Buffer,
        n_q: u32,
        n_heads: u32,
        n_kv: u32,
        head_dim: u32,
        kv_cap: u32,
    ) -> Result<()> {
        let name = "attn_decode_gqa_dyn_f32";
        check_heads(name, n_heads, n_kv, head_dim)?;
        let r = self.attn_decode_gqa(
            rec,
            q,
            k_cache,
            v_cache,
            out,
            scratch,
            n_q,
            n_heads,
            n_kv,
            head_dim,
            kv_cap,
            Some(cache_len),
        );
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
    /// (`[max_len, n_kv, head_dim]`) at positions cache_len[0] .. cache_len[0] + n − 1, the length
    /// read from the GPU (`cache_len`, u32 `[1]`) for replayable steps; positions ≥ max_len are
    /// dropped.
    #[allow(clippy::too_many_arguments)]
    pub fn kv_store<'a>(
        &self,
        rec: &mut Recorder<'a>,
        k_new: &'a Buffer,
        v_new: &'a Buffer,
        k_cache: &'a Buffer,
        v_cache: &'a Buffer,
        cache_len: &'a Buffer,
        n: u32,
        n_kv: u32,
        head_dim: u32,
        max_len: u32,
    ) -> Result<()> {
        let name = "attn_kv_store_f32";
        let row = n_kv as u64 * head_dim as u64;
        if n == 0 || row == 0 || max_len == 0 {
            return Err(kerr(
                name,
                format!("empty store ({n} tokens × {n_kv} heads × {head_dim}, {max_len} positions)"),
            ));
        }
        if n as u64 * row > u32::MAX as u64 || max_len as u64 * row > u32::MAX as u64 {
            return Err(kerr(name, "the caches exceed 2^32 - 1 floats".into()));
        }
        let p = self.pipeline::<PushStore>(name, &[SpecConst { id: 0, value: ROPE_WG }])?;
        let push = PushStore { n, row: row as u32, max_len };
        let (new_b, cache_b) = (n as u64 * row * 4, max_len as u64 * row * 4);
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
    #[allow(clippy::too_many_arguments)]
    fn attn_merge_dyn<'a>(
        &self,
        rec: &mut Recorder<'a>,
        scratch: &'a Buffer,
        out: &'a Buffer,
        rows: u64,
        n_chunks: u32,
        head_dim: u32,
        cache_len: &'a Buffer,
        chunk: u32,
        n_q: u32,
        kv_cap: u32,
    ) -> Result<()> {
        let o_bytes = rows * n_chunks as u64 * head_dim as u64 * 4;
        let ml_off = round_up(o_bytes, 256);
        let ml_bytes = rows * n_chunks as u64 * 8;
        let q_bytes = rows * head_dim as u64 * 4;
        let p = self.pipeline::<PushReduceDyn>("attn_reduce_dyn_f32", &[SpecConst { id: 0, value: REDUCE_WG }])?;
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
        let name = "attn_reduce_f32";
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

    /// Prefill attention: `out` (`[n, n_heads, head_dim]`) for `n` query tokens `q` (same layout)
    /// at positions p0 .. p0 + n − 1, causal (token i sees cache entries 0 ..= p0 + i), against
    /// caches that already hold p0 + n entries. Tiled: one workgroup per 16 queries × head.
    /// head_dim a multiple of 8, at most 128.
    #[allow(clippy::too_many_arguments)]
    pub fn attn_prefill<'a>(
        &self,
        rec: &mut Recorder<'a>,
        q: &'a Buffer,
        k_cache: &'a Buffer,
        v_cache: &'a Buffer,
        out: &'a Buffer,
        n: u32,
        n_heads: u32,
        n_kv: u32,
        head_dim: u32,
        p0: u32,
    ) -> Result<()> {
        // head_dim a multiple of 32: the vec4, register-blocked variant (attn_prefill_v4.comp).
        let name =
            if head_dim.is_multiple_of(32) && head_dim <= 128 { "attn_prefill_v4_f32" } else { "attn_prefill_f32" };
        check_heads(name, n_heads, n_kv, head_dim)?;
        if !head_dim.is_multiple_of(8) || head_dim > 128 {
            return Err(kerr(name, format!("head_dim {head_dim}: need a multiple of 8, at most 128")));
        }
        if n == 0 {
            return Err(kerr(name, "no query tokens".into()));
        }
        let shared = if name == "attn_prefill_v4_f32" {
            (BQ * head_dim + BK * (head_dim + 4) + BK * head_dim + BQ * BK + 3 * BQ) * 4
        } else {
            (BQ * head_dim + BK * (head_dim + 1) + BK * head_dim + BQ * BK + 3 * BQ) * 4
        };
        let caps = self.gpu().caps();
        if shared > caps.max_shared_memory {
            return Err(kerr(
                name,
                format!("needs {shared} bytes of shared memory; the device has {}", caps.max_shared_memory),
            ));
        }
        let blocks = n.div_ceil(BQ);
        if blocks > caps.max_workgroup_count[0] || n_heads > caps.max_workgroup_count[1] {
            return Err(kerr(
                name,
                format!("{blocks} query blocks × {n_heads} heads exceed the workgroup count limit"),
            ));
        }
        let kv_len = p0 as u64 + n as u64;
        let kv_bytes = kv_len * n_kv as u64 * head_dim as u64 * 4;
        let q_bytes = n as u64 * n_heads as u64 * head_dim as u64 * 4;
        let p = self.pipeline::<PushPrefill>(
            name,
            &[SpecConst { id: 0, value: PREFILL_WG }, SpecConst { id: 1, value: head_dim }],
        )?;
        let push = PushPrefill { n, n_heads, n_kv, p0, scale: 1.0 / (head_dim as f32).sqrt() };
        rec.dispatch(
            &p,
            &[
                Binding::read(q).range(0, q_bytes),
                Binding::read(k_cache).range(0, kv_bytes),
                Binding::read(v_cache).range(0, kv_bytes),
                Binding::write(out).range(0, q_bytes),
            ],
            push_bytes(&push),
            [blocks, n_heads, 1],
        )
    }
}

/// The rotary-embedding arguments every RoPE launcher takes: the MRoPE sections fit in head_dim/2
/// frequencies and theta is a usable base.
pub(super) fn check_rope(name: &str, head_dim: u32, theta: f32, mrope_section: [u32; 3]) -> Result<()> {
    if mrope_section.iter().map(|&s| s as u64).sum::<u64>() > (head_dim / 2) as u64 {
        return Err(kerr(
            name,
            format!("mrope_section {mrope_section:?} covers more than head_dim/2 = {} frequencies", head_dim / 2),
        ));
    }
    if !(theta.is_finite() && theta > 1.0) {
        return Err(kerr(name, format!("theta {theta} must be finite and > 1")));
    }
    Ok(())
}
