#version 450
// Per-head q/k RMSNorm fused with rotary embedding (spec §5.1: q_norm / k_norm over each head's
// head_dim values, then RoPE), for q [n_tokens, n_heads, head_dim] and k [n_tokens, n_kv, head_dim]
// in place, in one dispatch. For each head row x (one workgroup per row: the q rows, then the k rows):
//   y = x / sqrt(mean(x^2) + eps) * w   (w = q_w or k_w, [head_dim])
//   then rope.comp's rotation of y: pairs (j, j + head_dim/2), angle pos_axis(j) * theta^(-2j/head_dim),
//   axis h if j % 3 == 1 and j < 3*section_h, w if j % 3 == 2 and j < 3*section_w, else t, the f32
//   angle reduced modulo 2*pi with fma before sin/cos.
// Invocation j < head_dim/2 owns pair j (looping if head_dim/2 > WG); the sum of squares is a
// workgroup reduction (any subgroup size).
//
// Bindings: 0 q (float[], read-write), 1 k (float[], read-write), 2 q_w (float[head_dim]),
//           3 k_w (float[head_dim]), 4 pos (uint[3*n_tokens], axis-major t, h, w).
// Push: n_tokens, n_heads, n_kv, head_dim, theta, section_h, section_w, eps, grid_x.
// Row = y * grid_x + x over n_tokens*(n_heads + n_kv) rows. Spec: 0 WG.
// Variant STORE (replayable decode): the k rows go to the K cache instead of back into k, and
// n_tokens*n_kv more rows copy v into the V cache, at positions cache_len[0] + t (dropped at or
// past max_len): attn_kv_store's work in the same dispatch. Bindings 5 v (float[]), 6 K cache,
// 7 V cache (KV_T[max_len*n_kv*head_dim]: f32, KV_F16 f16, common/kv.glsl), 8 cache_len (uint[1]);
// push max_len last.
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#include "common/common.glsl"
#include "common/rope.glsl"
#include "common/kv.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(push_constant) uniform Push {
    uint n_tokens;
    uint n_heads;
    uint n_kv;
    uint head_dim;
    float theta;
    uint section_h;
    uint section_w;
    float eps;
    uint grid_x;
#ifdef STORE
    uint max_len;
#endif
} pc;

layout(std430, binding = 0) buffer Qb { float qv[]; };
layout(std430, binding = 1) buffer Kb { float kv[]; };
layout(std430, binding = 2) readonly buffer QW { float q_w[]; };
layout(std430, binding = 3) readonly buffer KW { float k_w[]; };
layout(std430, binding = 4) readonly buffer Pos { uint pos[]; };
#ifdef STORE
layout(std430, binding = 5) readonly buffer Vb { float vv[]; };
layout(std430, binding = 6) writeonly buffer KC { KV_T kcache[]; };
layout(std430, binding = 7) writeonly buffer VC { KV_T vcache[]; };
layout(std430, binding = 8) readonly buffer Len { uint cache_len[]; };
#endif

#include "common/reduce.glsl"

// (cos, sin) of frequency j for token t.
vec2 rope_cs(uint j, uint t, float l2theta) {
    const float p = float(pos[mrope_axis(j, pc.section_h, pc.section_w) * pc.n_tokens + t]);
    return rope_cos_sin(rope_angle(p, j, pc.head_dim, l2theta));
}

void main() {
    const uint row = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    const uint q_rows = pc.n_tokens * pc.n_heads;
#ifdef STORE
    const uint kv_rows = pc.n_tokens * pc.n_kv;
    const uint p0 = cache_len[0];
    if (row >= q_rows + kv_rows) {
        // A v row: copied to the V cache.
        const uint vr = row - q_rows - kv_rows;
        if (vr >= kv_rows || p0 + vr / pc.n_kv >= pc.max_len) return;
        for (uint j = gl_LocalInvocationIndex; j < pc.head_dim; j += WG)
            vcache[(p0 * pc.n_kv + vr) * pc.head_dim + j] = KV_T(vv[vr * pc.head_dim + j]);
        return;
    }
#endif
    if (row >= q_rows + pc.n_tokens * pc.n_kv) return;
    const bool is_q = row < q_rows;
    const uint t = is_q ? row / pc.n_heads : (row - q_rows) / pc.n_kv;
    const uint off = (is_q ? row : row - q_rows) * pc.head_dim;
    const uint half_dim = pc.head_dim / 2u;
    const uint tid = gl_LocalInvocationIndex;
    float ss = 0.0;
    for (uint j = tid; j < half_dim; j += WG) {
        const float x0 = is_q ? qv[off + j] : kv[off + j];
        const float x1 = is_q ? qv[off + j + half_dim] : kv[off + j + half_dim];
        ss += x0 * x0 + x1 * x1;
    }
    const float scale = inversesqrt(wg_sum(ss) / float(pc.head_dim) + pc.eps);
    const float l2theta = log2(pc.theta);
    for (uint j = tid; j < half_dim; j += WG) {
        const vec2 cs = rope_cs(j, t, l2theta);
        if (is_q) {
            const float x0 = qv[off + j] * scale * q_w[j], x1 = qv[off + j + half_dim] * scale * q_w[j + half_dim];
            qv[off + j] = x0 * cs.x - x1 * cs.y;
            qv[off + j + half_dim] = x1 * cs.x + x0 * cs.y;
        } else {
            const float x0 = kv[off + j] * scale * k_w[j], x1 = kv[off + j + half_dim] * scale * k_w[j + half_dim];
#ifdef STORE
            if (p0 + t < pc.max_len) {
                const uint co = p0 * pc.n_kv * pc.head_dim + off;
                kcache[co + j] = KV_T(x0 * cs.x - x1 * cs.y);
                kcache[co + j + half_dim] = KV_T(x1 * cs.x + x0 * cs.y);
            }
#else
            kv[off + j] = x0 * cs.x - x1 * cs.y;
            kv[off + j + half_dim] = x1 * cs.x + x0 * cs.y;
#endif
        }
    }
}
