#version 450
// Prefill attention, vec4 variant for head_dim HD a multiple of 32 (≤ 128): the math, layouts,
// tiling (16 queries × 16-key tiles, online softmax) and push constants of attn_prefill, with
// shared memory read as vec4s and register-blocked P·V:
//   scores: e = tid + r*WG -> (query e / BK, key e % BK), dot of HD/4 vec4s (Q pre-scaled; K rows
//           padded by one vec4 against bank conflicts), written transposed St[key][query];
//   P·V: invocation (row group rg, column c4) owns RPT = HD/32 query rows × one vec4 of columns;
//        per key one vec4 of V and RPT probabilities from shared memory feed 4·RPT FMAs.
// Nothing depends on the subgroup size.
//
// Bindings: 0 q (vec4[]), 1 K (KV_T4[]), 2 V (KV_T4[]) (f32, KV_F16 f16: common/kv.glsl),
//           3 out (vec4[n*n_heads*HD/4]).
// Push: n, n_heads, n_kv, p0, scale. Grid: x = query block, y = head. Spec: 0 WG (128), 1 HD.
// Subgroup: none — no subgroup operations
#extension GL_EXT_control_flow_attributes : require
#include "common/common.glsl"
#include "common/kv.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint HD = 128;
layout(push_constant) uniform Push { uint n; uint n_heads; uint n_kv; uint p0; float scale; } pc;

layout(std430, binding = 0) readonly buffer Q { vec4 q[]; };
layout(std430, binding = 1) readonly buffer K { KV_T4 kc[]; };
layout(std430, binding = 2) readonly buffer V { KV_T4 vc[]; };
layout(std430, binding = 3) writeonly buffer O { vec4 o[]; };

#define BQ 16u
#define BK 16u
const uint H4 = HD / 4u;        // vec4s per row
const uint KS = H4 + 1u;        // padded K row stride (vec4s)
const uint RS = BQ * BK / WG;   // scores per invocation
const uint NRG = WG / H4;       // P·V row groups
const uint RPT = BQ / NRG;      // query rows per invocation in P·V

shared vec4 Qs[BQ * H4];
shared vec4 Ks[BK * KS];
shared vec4 Vs[BK * H4];
shared float St[BK * BQ];       // [key][query]
shared float m_s[BQ];
shared float l_s[BQ];
shared float alpha_s[BQ];

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint q_first = gl_WorkGroupID.x * BQ;
    const uint h = gl_WorkGroupID.y;
    const uint kvh = h / (pc.n_heads / pc.n_kv);
    const uint row4 = pc.n_kv * H4;
    for (uint e = tid; e < BQ * H4; e += WG) {
        const uint t = q_first + e / H4;
        Qs[e] = t < pc.n ? q[(t * pc.n_heads + h) * H4 + e % H4] * pc.scale : vec4(0.0);
    }
    if (tid < BQ) {
        m_s[tid] = -1.0 / 0.0;
        l_s[tid] = 0.0;
    }
    const uint rg = tid / H4, c4 = tid % H4;
    vec4 acc[RPT];
    [[unroll]] for (uint u = 0; u < RPT; u++) acc[u] = vec4(0.0);
    const uint kv_end = pc.p0 + min(q_first + BQ, pc.n); // keys the block needs
    for (uint kt = 0; kt < kv_end; kt += BK) {
        barrier(); // the previous tile is consumed (and Q, m, l are initialised)
        for (uint e = tid; e < BK * H4; e += WG) {
            const uint kj = e / H4, d4 = e % H4;
            const uint kpos = kt + kj;
            const bool ok = kpos < kv_end;
            Ks[kj * KS + d4] = ok ? vec4(kc[kpos * row4 + kvh * H4 + d4]) : vec4(0.0);
            Vs[e] = ok ? vec4(vc[kpos * row4 + kvh * H4 + d4]) : vec4(0.0);
        }
        barrier();
        [[unroll]] for (uint r = 0; r < RS; r++) {
            const uint e = tid + r * WG;
            const uint qi = e / BK, kj = e % BK;
            const uint kpos = kt + kj, qpos = pc.p0 + q_first + qi;
            float s = 0.0;
            [[unroll]] for (uint d4 = 0; d4 < H4; d4++) s += dot(Qs[qi * H4 + d4], Ks[kj * KS + d4]);
            St[kj * BQ + qi] = (kpos <= qpos && kpos < kv_end) ? s : -1.0 / 0.0;
        }
        barrier();
        if (tid < BQ) {
            const float mo = m_s[tid];
            float mx = mo;
            for (uint j = 0; j < BK; j++) mx = max(mx, St[j * BQ + tid]);
            float ps = 0.0;
            for (uint j = 0; j < BK; j++) {
                const float p = exp(St[j * BQ + tid] - mx);
                St[j * BQ + tid] = p;
                ps += p;
            }
            const float a = exp(mo - mx); // 0 on the first tile (mo = -inf); key 0 is always seen
            alpha_s[tid] = a;
            m_s[tid] = mx;
            l_s[tid] = l_s[tid] * a + ps;
        }
        barrier();
        [[unroll]] for (uint u = 0; u < RPT; u++) acc[u] *= alpha_s[rg * RPT + u];
        [[unroll]] for (uint j = 0; j < BK; j++) {
            const vec4 v = Vs[j * H4 + c4];
            [[unroll]] for (uint u = 0; u < RPT; u++) acc[u] += St[j * BQ + rg * RPT + u] * v;
        }
    }
    [[unroll]] for (uint u = 0; u < RPT; u++) {
        const uint qi = rg * RPT + u;
        const uint t = q_first + qi;
        if (t < pc.n) o[(t * pc.n_heads + h) * H4 + c4] = acc[u] / l_s[qi];
    }
}
