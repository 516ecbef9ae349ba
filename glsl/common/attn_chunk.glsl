// One KV chunk of decode attention for the G query heads of one KV head, after its scores: the
// softmax statistics and the P·V partial sums. Shared by attn_decode.comp and
// attn_decode_fused.comp (which scores differently: P parts per key there, the new key from
// shared memory here).
// Include after: spec constants WG, G, CHUNK; consts H4 (vec4s per row), LPH = WG / G (softmax
// lanes per head) and NG = WG / H4 (P·V row groups); shared float sc[G * CHUNK] ([g][key]: the
// scores, turned into probabilities), red[WG], hm[G]; the V cache buffer vc (KV_T4[], common/kv.glsl).
// ATTN_NEW_KEY: the value of key position newp is read from vin[kvh * H4 + c4] instead of the
// cache, rounded as the cache rounds it (attn_decode_fused: it was written into the cache by this
// dispatch).

// Softmax statistics per head: lanes j of head g take keys j, j + LPH, ... of the n keys. Leaves
// head g's maximum m in hm[g] and exp(s - m) in sc; returns, for invocation g < G, head g's sum
// of exp(s - m) (0 elsewhere). Every invocation of the workgroup must call it (barriers).
float attn_chunk_softmax(uint n) {
    const uint tid = gl_LocalInvocationIndex;
    const uint hg = tid / LPH, hj = tid % LPH;
    float mx = -1.0 / 0.0;
    if (hg < G) for (uint k = hj; k < n; k += LPH) mx = max(mx, sc[hg * CHUNK + k]);
    red[tid] = mx;
    barrier();
    if (tid < G) {
        float m = -1.0 / 0.0;
        for (uint j = 0; j < LPH; j++) m = max(m, red[tid * LPH + j]);
        hm[tid] = m;
    }
    barrier();
    float ls = 0.0;
    if (hg < G) {
        const float m = hm[hg];
        for (uint k = hj; k < n; k += LPH) {
            const float pr = exp(sc[hg * CHUNK + k] - m);
            sc[hg * CHUNK + k] = pr;
            ls += pr;
        }
    }
    red[tid] = ls;
    barrier();
    float l = 0.0;
    if (tid < G) {
        for (uint j = 0; j < LPH; j++) l += red[tid * LPH + j];
    }
    return l;
}

// P·V: lane (row group rg, column c4) accumulates rows rg, rg + NG, ... of the chunk starting at
// key k0 (n keys) for all G heads into acc (8 rows per step, loads issued together). row4: vec4s
// per cache position.
void attn_chunk_pv(uint n, uint k0, uint kvh, uint row4, uint newp, out vec4 acc[G]) {
    const uint tid = gl_LocalInvocationIndex;
    const uint rg = tid / H4, c4 = tid % H4;
    [[unroll]] for (uint g = 0; g < G; g++) acc[g] = vec4(0.0);
    if (rg < NG) {
        const uint vb = k0 * row4 + kvh * H4 + c4;
        uint k = rg;
        for (; k + 7u * NG < n; k += 8u * NG) {
            vec4 v[8];
            [[unroll]] for (uint u = 0; u < 8u; u++) {
                v[u] = vec4(vc[vb + (k + u * NG) * row4]);
#ifdef ATTN_NEW_KEY
                if (k0 + k + u * NG == newp) v[u] = KV_ROUND4(vin[kvh * H4 + c4]);
#endif
            }
            [[unroll]] for (uint g = 0; g < G; g++) {
                const uint sb = g * CHUNK + k;
                [[unroll]] for (uint u = 0; u < 8u; u++) acc[g] += sc[sb + u * NG] * v[u];
            }
        }
        for (; k < n; k += NG) {
            vec4 v = vec4(vc[vb + k * row4]);
#ifdef ATTN_NEW_KEY
            if (k0 + k == newp) v = KV_ROUND4(vin[kvh * H4 + c4]);
#endif
            [[unroll]] for (uint g = 0; g < G; g++) acc[g] += sc[g * CHUNK + k] * v;
        }
    }
}
