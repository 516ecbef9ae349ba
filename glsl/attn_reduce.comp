#version 450
// Decode attention, pass 2 of 2: merges the per-chunk partials of attn_split / attn_decode
// (log-sum-exp):
//   M = max_c m_c,  w_c = exp(m_c - M),  out[i, h, d] = sum_c w_c o_c[d] / sum_c w_c l_c
// (chunks a query does not see have m_c = -inf, so w_c = 0; chunk 0 is always seen).
// Layouts: part_o [rows, n_chunks, head_dim], part_ml [rows, n_chunks] (m, l), rows = n_q*n_heads;
//          out [rows, head_dim] = [n_q, n_heads * head_dim].
// One workgroup per row. M and the denominator are workgroup reductions over the chunks; the
// chunk weights go to shared memory WG at a time; lane (chunk group cg, dimension d) sums chunks
// cg, cg + WG/head_dim, ... (4 loads in flight per step), then the chunk groups are added.
//
// Bindings: 0 part_o (float[]), 1 part_ml (vec2[]), 2 out (float[rows*head_dim]);
//           DYN_LEN: 3 cache_len (uint[1]).
// Push: rows, n_chunks, head_dim (≤ WG), grid_x; DYN_LEN adds chunk, n_q, kv_cap and merges only
// the ⌈min(cache_len[0] + n_q, kv_cap) / chunk⌉ chunks that hold keys (n_chunks stays the stride).
// Row = y * grid_x + x. Spec: 0 WG.
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
#ifdef DYN_LEN
layout(push_constant) uniform Push {
    uint rows;
    uint n_chunks;
    uint head_dim;
    uint grid_x;
    uint chunk;
    uint n_q;
    uint kv_cap;
} pc;
layout(std430, binding = 3) readonly buffer Len { uint cache_len[]; };
#else
layout(push_constant) uniform Push { uint rows; uint n_chunks; uint head_dim; uint grid_x; } pc;
#endif

layout(std430, binding = 0) readonly buffer PO { float part_o[]; };
layout(std430, binding = 1) readonly buffer PML { vec2 part_ml[]; };
layout(std430, binding = 2) writeonly buffer O { float o[]; };

#include "common/reduce.glsl"

shared float wts[WG];
shared float sums[WG];

void main() {
    MARK(0);
    const uint row = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (row >= pc.rows) return;
    const uint tid = gl_LocalInvocationIndex;
    const uint hd = pc.head_dim;
    const uint base = row * pc.n_chunks;
#ifdef DYN_LEN
    const uint nc = min(pc.n_chunks, (min(cache_len[0] + pc.n_q, pc.kv_cap) + pc.chunk - 1u) / pc.chunk);
#else
    const uint nc = pc.n_chunks;
#endif
    float mx = -1.0 / 0.0;
    for (uint c = tid; c < nc; c += WG) mx = max(mx, part_ml[base + c].x);
    mx = wg_max(mx);
    float l = 0.0;
    for (uint c = tid; c < nc; c += WG) {
        const vec2 ml = part_ml[base + c];
        l += exp(ml.x - mx) * ml.y;
    }
    const float inv = 1.0 / wg_sum(l);
    const uint groups = WG / hd;
    const uint cg = tid / hd, d = tid % hd;
    float t = 0.0;
    for (uint cb = 0; cb < nc; cb += WG) {
        barrier(); // wts of the previous block are consumed
        if (cb + tid < nc) wts[tid] = exp(part_ml[base + cb + tid].x - mx);
        barrier();
        if (cg < groups) {
            const uint cn = min(WG, nc - cb);
            const uint ob = (base + cb) * hd + d;
            uint c = cg;
            for (; c + 3u * groups < cn; c += 4u * groups) {
                const float a0 = part_o[ob + c * hd];
                const float a1 = part_o[ob + (c + groups) * hd];
                const float a2 = part_o[ob + (c + 2u * groups) * hd];
                const float a3 = part_o[ob + (c + 3u * groups) * hd];
                t += wts[c] * a0 + wts[c + groups] * a1 + wts[c + 2u * groups] * a2 + wts[c + 3u * groups] * a3;
            }
            for (; c < cn; c += groups) t += wts[c] * part_o[ob + c * hd];
        }
    }
    sums[tid] = t;
    barrier();
    if (tid < hd) {
        float s = 0.0;
        for (uint g = 0; g < groups; g++) s += sums[g * hd + tid];
        o[row * hd + tid] = s * inv;
    }
    MARK(3);
}
