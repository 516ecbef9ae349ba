#version 450
// Decode attention, pass 1 of 2 (split over the KV length): causal GQA attention of n_q query
// tokens at positions kv_len - n_q .. kv_len - 1 against a KV cache of KV_T (f32, KV_F16 f16:
// common/kv.glsl), one KV chunk per
// workgroup. Query i sees keys 0 .. kv_len - n_q + i. For chunk c (keys c*chunk .. c*chunk+chunk-1)
// and query head h (KV head h / (n_heads / n_kv)) it writes, over the keys k it sees:
//   m = max_k s_k,  l = sum_k exp(s_k - m),  o[d] = sum_k exp(s_k - m) * V[k, d],
//   s_k = scale * dot(q[i, h, :], K[k, kvh, :])
// (m = -inf, l = 0, o = 0 for a chunk the query does not see); attn_reduce merges the chunks.
// Layouts: q [n_q, n_heads, head_dim]; K, V [max_len, n_kv, head_dim];
//          part_o [n_q, n_heads, n_chunks, head_dim]; part_ml [n_q, n_heads, n_chunks] (m, l).
// Each invocation computes whole dot products for keys tid, tid + WG, ... (any subgroup size);
// scores stay in shared memory; each (dimension, key group) lane then sums p_k V[k, d].
//
// Bindings: 0 q, 1 K, 2 V, 3 part_o (float[]), 4 part_ml (vec2[]).
// Push: n_q, n_heads, n_kv, head_dim, kv_len, chunk, n_chunks, scale.
// Grid: x = chunk, y = query token * n_heads + head. Spec: 0 WG (≥ head_dim), 1 MAX_CHUNK.
// Variant VEC4 (head_dim % 4 == 0) reads keys as vec4s.
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#include "common/common.glsl"
#include "common/kv.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint MAX_CHUNK = 512;
layout(push_constant) uniform Push {
    uint n_q;
    uint n_heads;
    uint n_kv;
    uint head_dim;
    uint kv_len;
    uint chunk;
    uint n_chunks;
    float scale;
} pc;

layout(std430, binding = 0) readonly buffer Q { float q[]; };
#ifdef VEC4
// head_dim % 4 == 0: each key row is read as vec4s (4× fewer, 16-byte loads).
layout(std430, binding = 1) readonly buffer K { KV_T4 kc4[]; };
#else
layout(std430, binding = 1) readonly buffer K { KV_T kc[]; };
#endif
layout(std430, binding = 2) readonly buffer V { KV_T vc[]; };
layout(std430, binding = 3) writeonly buffer PO { float part_o[]; };
layout(std430, binding = 4) writeonly buffer PML { vec2 part_ml[]; };

#include "common/reduce.glsl"

shared float qs[WG];
shared float sc[MAX_CHUNK];
shared float acc[WG];

void main() {
    const uint c = gl_WorkGroupID.x;
    const uint row = gl_WorkGroupID.y; // token * n_heads + head
    const uint i = row / pc.n_heads, h = row % pc.n_heads;
    const uint kvh = h / (pc.n_heads / pc.n_kv);
    const uint tid = gl_LocalInvocationIndex;
    const uint hd = pc.head_dim;
    const uint k0 = c * pc.chunk;
    const uint seen = pc.kv_len - pc.n_q + i + 1u; // keys this query sees
    const uint k1 = min(k0 + pc.chunk, seen);
    const uint part = row * pc.n_chunks + c;
    if (k0 >= k1) { // nothing visible in this chunk (whole workgroup)
        for (uint d = tid; d < hd; d += WG) part_o[part * hd + d] = 0.0;
        if (tid == 0u) part_ml[part] = vec2(-1.0 / 0.0, 0.0);
        return;
    }
    const uint n = k1 - k0;
    if (tid < hd) qs[tid] = q[row * hd + tid];
    barrier();
    const uint kstride = pc.n_kv * hd;
    float m = -1.0 / 0.0;
    for (uint k = tid; k < n; k += WG) {
        const uint base = (k0 + k) * kstride + kvh * hd;
        float s = 0.0;
#ifdef VEC4
        for (uint d4 = 0; d4 < hd / 4u; d4++) {
            const uint d = 4u * d4;
            s += dot(vec4(qs[d], qs[d + 1u], qs[d + 2u], qs[d + 3u]), vec4(kc4[base / 4u + d4]));
        }
#else
        for (uint d = 0; d < hd; d++) s += qs[d] * float(kc[base + d]);
#endif
        s *= pc.scale;
        sc[k] = s;
        m = max(m, s);
    }
    m = wg_max(m); // its barriers also publish sc[]
    float l = 0.0;
    for (uint k = tid; k < n; k += WG) {
        const float p = exp(sc[k] - m);
        sc[k] = p;
        l += p;
    }
    l = wg_sum(l);
    // Lane (d, g): dimension d over keys g, g + groups, ...; then the groups are summed.
    const uint groups = WG / hd;
    const uint d = tid % hd, g = tid / hd;
    float o = 0.0;
    if (g < groups) {
        for (uint k = g; k < n; k += groups) o += sc[k] * float(vc[(k0 + k) * kstride + kvh * hd + d]);
    }
    acc[tid] = o;
    barrier();
    if (tid < hd) {
        float t = 0.0;
        for (uint j = 0; j < groups; j++) t += acc[j * hd + tid];
        part_o[part * hd + tid] = t;
    }
    if (tid == 0u) part_ml[part] = vec2(m, l);
}
