//! Rotary embedding: `rope`, and the fused per-head RMSNorm + RoPE (`qk_norm_rope`, and
//! `qk_norm_rope_store` which also writes K and V into the caches).

use super::*;
use crate::kernels::names;

impl Kernels {
    /// Rotary embedding in place on x `[n_tokens, n_heads, head_dim]` (rotate-half: dimension j
    /// pairs with j + head_dim/2), inv_freq[j] = theta^(−2j/head_dim), positions from `pos`
    /// (u32 `[3, n_tokens]`: the t row, then h, then w, like HF's position_ids). Interleaved MRoPE
    /// with `mrope_section = [t, h, w]` (frequency counts, summing to at most head_dim/2):
    /// frequency j reads axis h if j % 3 == 1 and j < 3·h, axis w if j % 3 == 2 and j < 3·w, else
    /// t. `[head_dim/2, 0, 0]` is 1-D RoPE; so is any section when the three rows are equal.
    pub fn rope<'a>(&self, rec: &mut Recorder<'a>, args: RopeRows<'a>, rope: Rope) -> Result<()> {
        let RopeRows { x, pos, n_tokens, n_heads, head_dim } = args;
        let Rope { theta, mrope_section } = rope;
        let name = names::ROPE_F32;
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
    pub fn qk_norm_rope<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: QkNormRope<'a>,
        heads: Heads,
        rope: Rope,
    ) -> Result<()> {
        let QkNormRope { q, k, q_w, k_w, pos, n_tokens, eps } = args;
        let Heads { n_heads, n_kv, head_dim } = heads;
        let Rope { theta, mrope_section } = rope;
        let name = names::ROPE_QK_NORM_F32;
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
    /// past `max_len`), as the caches' type (`store.ty`) holds them. k itself is left as it was.
    /// One dispatch instead of two.
    pub fn qk_norm_rope_store<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: QkNormRope<'a>,
        store: KvWrite<'a>,
        heads: Heads,
        rope: Rope,
    ) -> Result<()> {
        let QkNormRope { q, k, q_w, k_w, pos, n_tokens, eps } = args;
        let KvWrite { v, k_cache, v_cache, cache_len, max_len, ty } = store;
        let Heads { n_heads, n_kv, head_dim } = heads;
        let Rope { theta, mrope_section } = rope;
        let name = kv_kernel(ty, names::ROPE_QK_NORM_STORE_F32, names::ROPE_QK_NORM_STORE_F16)?;
        if n_tokens == 0 || n_heads == 0 || n_kv == 0 || head_dim == 0 || !head_dim.is_multiple_of(2) || max_len == 0 {
            return Err(kerr(name, format!("{n_tokens} tokens × {n_heads}/{n_kv} heads × head_dim {head_dim}, {max_len} cache positions: need nonzero sizes, even head_dim")));
        }
        let [_, sh, sw] = mrope_section;
        check_rope(name, head_dim, theta, mrope_section)?;
        let hd = head_dim as u64 * 4;
        let kv_row = n_kv as u64 * hd;
        if max_len as u64 * kv_row / 4 > u32::MAX as u64 {
            return Err(kerr(name, "the caches exceed 2^32 - 1 values".into()));
        }
        let cache_bytes = kv_bytes(ty, max_len as u64, n_kv, head_dim);
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
                Binding::write(k_cache).range(0, cache_bytes),
                Binding::write(v_cache).range(0, cache_bytes),
                Binding::read(cache_len).range(0, 4),
            ],
            push_bytes(&PushQkNormRopeStore { base, max_len }),
            dims,
        )
    }
}
