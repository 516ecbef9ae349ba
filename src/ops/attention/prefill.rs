//! Prefill attention: causal GQA, tiled with an online softmax.

use super::*;
use crate::kernels::names;

impl Kernels {
    /// Prefill attention: `out` (`[n, n_heads, head_dim]`) for `n` query tokens `q` (same layout)
    /// at positions p0 .. p0 + n − 1, causal (token i sees cache entries 0 ..= p0 + i), against
    /// caches that already hold p0 + n entries. Tiled: one workgroup per 16 queries × head.
    /// head_dim a multiple of 8, at most 128.
    pub fn attn_prefill<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: AttnPrefill<'a>,
        kv: KvCache<'a>,
        heads: Heads,
    ) -> Result<()> {
        let AttnPrefill { q, out, n, p0 } = args;
        let KvCache { k: k_cache, v: v_cache, ty } = kv;
        let Heads { n_heads, n_kv, head_dim } = heads;
        // head_dim a multiple of 32: the vec4, register-blocked variant (attn_prefill_v4.comp).
        let v4 = head_dim.is_multiple_of(32) && head_dim <= 128;
        let name = if v4 {
            kv_kernel(ty, names::ATTN_PREFILL_V4_F32, names::ATTN_PREFILL_V4_F16)?
        } else {
            kv_kernel(ty, names::ATTN_PREFILL_F32, names::ATTN_PREFILL_F16)?
        };
        check_heads(name, n_heads, n_kv, head_dim)?;
        if !head_dim.is_multiple_of(8) || head_dim > 128 {
            return Err(kerr(name, format!("head_dim {head_dim}: need a multiple of 8, at most 128")));
        }
        if n == 0 {
            return Err(kerr(name, "no query tokens".into()));
        }
        let shared = if v4 {
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
        let kv_bytes = kv_bytes(ty, kv_len, n_kv, head_dim);
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
