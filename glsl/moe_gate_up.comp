#version 450
// MoE gate and up projections of the chosen experts, one dispatch for all k of them:
//   h[t, j, m] = silu(Σ_i G_e[m, i] · x[t, i]) · (Σ_i U_e[m, i] · x[t, i]),  e = ids[t, j],
// for every token t (n_tokens) and slot j (k). The ids come from a GPU buffer (moe_route).
// Weights: all experts of one projection stacked in one buffer, expert e's planar Q8_0 [M, K] block
// (quants qs[M*K] int8, then f16 scales d[M*K/32] at d_off) at e * stride bytes (stride a multiple of
// 256). Gate and up are separate stacks (bound as qs and d views of each).
//
// Like matvec_q8_0p: each subgroup owns RPS rows at a time, 16 weights (one uvec4) per invocation
// per step, reduced with subgroupAdd alone; a subgroup computes the gate and up rows together and
// writes silu(gate)·up. Workgroup (x, y): ROWS_WG rows of pair y = t*k + j.
// Float path: x read as vec4; INTDOT: x quantised to Q8_1 (quantize_q8_1, n_tokens*K values).
//
// Bindings: 0 gate qs (uvec4[]), 1 gate d (uint16[]), 2 up qs, 3 up d,
//           float: 4 x (vec4[n_tokens*K/4]), 5 ids (uint[n_tokens*k]), 6 h (float[n_tokens*k*M]);
//           INTDOT: 4 xq (uvec4[]), 5 xd (vec2[] per 32-block), 6 ids, 7 h.
// Push: K, M, k, n_experts (ids are clamped below it), stride16 (stride/16), d_off2 (d_off/2).
// Spec: 0 WG, 1 RPS (rows per subgroup step), 2 ROWS_WG (rows per workgroup).
#ifdef INTDOT
#extension GL_EXT_integer_dot_product : require
#endif
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint RPS = 2;
layout(constant_id = 2) const uint ROWS_WG = 8;

layout(push_constant) uniform Push { uint K; uint M; uint k; uint n_experts; uint stride16; uint d_off2; } pc;

layout(std430, binding = 0) readonly buffer GQ { uvec4 gq[]; };
layout(std430, binding = 1) readonly buffer GD { uint16_t gd[]; };
layout(std430, binding = 2) readonly buffer UQ { uvec4 uq[]; };
layout(std430, binding = 3) readonly buffer UD { uint16_t ud[]; };
#ifdef INTDOT
layout(std430, binding = 4) readonly buffer XQ { uvec4 xq[]; };
layout(std430, binding = 5) readonly buffer XD { vec2 xd[]; };
layout(std430, binding = 6) readonly buffer IDS { uint ids[]; };
layout(std430, binding = 7) writeonly buffer H { float h[]; };
#else
layout(std430, binding = 4) readonly buffer X { vec4 x[]; };
layout(std430, binding = 5) readonly buffer IDS { uint ids[]; };
layout(std430, binding = 6) writeonly buffer H { float h[]; };
#endif

#ifdef INTDOT
int dot16(uvec4 w, uvec4 v) {
    int s = dotPacked4x8EXT(int(w.x), int(v.x));
    s = dotPacked4x8AccSatEXT(int(w.y), int(v.y), s);
    s = dotPacked4x8AccSatEXT(int(w.z), int(v.z), s);
    return dotPacked4x8AccSatEXT(int(w.w), int(v.w), s);
}
#else
vec4 bytes4(uint w) {
    const int v = int(w);
    return vec4(bitfieldExtract(v, 0, 8), bitfieldExtract(v, 8, 8), bitfieldExtract(v, 16, 8), bitfieldExtract(v, 24, 8));
}
float dot16(uvec4 w, vec4 x0, vec4 x1, vec4 x2, vec4 x3) {
    return dot(bytes4(w.x), x0) + dot(bytes4(w.y), x1) + dot(bytes4(w.z), x2) + dot(bytes4(w.w), x3);
}
#endif

void main() {
    const uint pair = gl_WorkGroupID.y;
    const uint t = pair / pc.k;
    const uint e = min(ids[pair], pc.n_experts - 1u);
    const uint first = gl_WorkGroupID.x * ROWS_WG;
    const uint last = min(first + ROWS_WG, pc.M);
    const uint lane = gl_SubgroupInvocationID, ss = gl_SubgroupSize;
    const uint nb = pc.K / 32u;
    const uint nc = pc.K / 16u; // 16-weight chunks per row
    const uint qbase = e * pc.stride16;
    const uint dbase = e * pc.stride16 * 8u + pc.d_off2;
    for (uint row0 = first + gl_SubgroupID * RPS; row0 < last; row0 += gl_NumSubgroups * RPS) {
        float ag[RPS], au[RPS];
        for (uint r = 0; r < RPS; r++) { ag[r] = 0.0; au[r] = 0.0; }
        for (uint c = lane; c < nc; c += ss) {
            const uint b = c >> 1;
#ifdef INTDOT
            const uvec4 xv = xq[t * nc + c];
            const float dx = xd[t * nb + b].x;
#else
            const uint xi = (t * nc + c) * 4u;
            const vec4 x0 = x[xi], x1 = x[xi + 1u], x2 = x[xi + 2u], x3 = x[xi + 3u];
#endif
            for (uint r = 0; r < RPS; r++) {
                const uint row = min(row0 + r, last - 1u);
                const uvec4 wg = gq[qbase + row * nc + c];
                const uvec4 wu = uq[qbase + row * nc + c];
                const float dg = f16_bits_to_float(gd[dbase + row * nb + b]);
                const float du = f16_bits_to_float(ud[dbase + row * nb + b]);
#ifdef INTDOT
                ag[r] += float(dot16(wg, xv)) * dg * dx;
                au[r] += float(dot16(wu, xv)) * du * dx;
#else
                ag[r] += dg * dot16(wg, x0, x1, x2, x3);
                au[r] += du * dot16(wu, x0, x1, x2, x3);
#endif
            }
        }
        for (uint r = 0; r < RPS; r++) {
            const float g = subgroupAdd(ag[r]);
            const float u = subgroupAdd(au[r]);
            if (lane == 0u && row0 + r < last) h[pair * pc.M + row0 + r] = g / (1.0 + exp(-g)) * u;
        }
    }
}
