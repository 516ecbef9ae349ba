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
// ROUTE (fused decode variant): each workgroup first routes its token itself (moe_topk.glsl on the
// router logits: the same selection and weights as moe_route) and, with INTDOT, quantises x[t] to
// Q8_1 into shared memory exactly as quantize_q8_1 does (K ≤ MAX_XK); the workgroups of pair
// (t, 0) with x = 0 write the token's ids and weights for moe_down. Saves two dispatches and their
// barriers per MoE block.
//
// NORM (with ROUTE): x is the raw residual stream; every workgroup applies the layer's RMSNorm
// (x / sqrt(mean(x^2) + eps) * nw, binding 9 nw, push eps) itself, so the post-attention rms_norm
// dispatch and its barrier go away (the router reads the same norm through matvec's NORM variant).
// With flags bit 1 the logits are W_r·(nw ⊙ x) without the RMS factor (moe_router_fold computes
// them alongside the o-projection) and are scaled by it here.
//
// Bindings: 0 gate qs (uvec4[]), 1 gate d (uint16[]), 2 up qs, 3 up d, then
//           float: 4 x (vec4[n_tokens*K/4]), 5 ids (uint[n_tokens*k]), 6 h (float[n_tokens*k*M]);
//           INTDOT: 4 xq (uvec4[]), 5 xd (vec2[] per 32-block), 6 ids, 7 h;
//           ROUTE (either path): 4 x (vec4[]), 5 logits (float[n_tokens*n_experts]),
//           6 ids (written), 7 weights (float[n_tokens*k], written), 8 h.
// Push: K, M, k, n_experts (ids are clamped below it), stride16 (stride/16), d_off2 (d_off/2),
//       flags (ROUTE: bit 0 renormalise). Spec: 0 WG, 1 RPS (rows per subgroup step), 2 ROWS_WG.
// Subgroup: full — lanes stride over a row's chunks by gl_SubgroupSize and subgroupAdd sums them, so every lane of a subgroup must run (the host checks that WG is a multiple of the size and sizes ROWS_WG from the smallest size the pipeline may get); routing and the Q8_1 prologue use common/reduce.glsl
#ifdef INTDOT
#extension GL_EXT_integer_dot_product : require
#endif
#include "common/common.glsl"
#include "common/q8_1_block.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint RPS = 2;
layout(constant_id = 2) const uint ROWS_WG = 8;

#ifdef NORM
layout(push_constant) uniform Push { uint K; uint M; uint k; uint n_experts; uint stride16; uint d_off2; uint flags; float eps; } pc;
#else
layout(push_constant) uniform Push { uint K; uint M; uint k; uint n_experts; uint stride16; uint d_off2; uint flags; } pc;
#endif

layout(std430, binding = 0) readonly buffer GQ { uvec4 gq[]; };
layout(std430, binding = 1) readonly buffer GD { uint16_t gd[]; };
layout(std430, binding = 2) readonly buffer UQ { uvec4 uq[]; };
layout(std430, binding = 3) readonly buffer UD { uint16_t ud[]; };
#if defined(ROUTE)
layout(std430, binding = 4) readonly buffer X { vec4 x[]; };
layout(std430, binding = 5) readonly buffer L { float logits[]; };
layout(std430, binding = 6) writeonly buffer IDS { uint ids[]; };
layout(std430, binding = 7) writeonly buffer WT { float weights[]; };
layout(std430, binding = 8) writeonly buffer H { float h[]; };
#ifdef NORM
layout(std430, binding = 9) readonly buffer NW { vec4 nw[]; };
#endif
#include "common/reduce.glsl"
#include "moe_topk.glsl"
#elif defined(INTDOT)
layout(std430, binding = 4) readonly buffer XQ { uvec4 xq[]; };
layout(std430, binding = 5) readonly buffer XD { vec2 xd[]; };
layout(std430, binding = 6) readonly buffer IDS { uint ids[]; };
layout(std430, binding = 7) writeonly buffer H { float h[]; };
#else
layout(std430, binding = 4) readonly buffer X { vec4 x[]; };
layout(std430, binding = 5) readonly buffer IDS { uint ids[]; };
layout(std430, binding = 6) writeonly buffer H { float h[]; };
#endif

#if defined(ROUTE) && defined(INTDOT)
#define MAX_XK 8192u
shared uint s_xq[MAX_XK / 4u];
shared float s_xd[MAX_XK / 32u];
#endif

#include "common/q8_0p_dot.glsl"

void main() {
    MARK(0);
    const uint pair = gl_WorkGroupID.y;
    const uint t = pair / pc.k;
    const uint nb = pc.K / 32u;
    const uint nc = pc.K / 16u; // 16-weight chunks per row
#ifdef ROUTE
    const uint tid = gl_LocalInvocationIndex;
#ifdef NORM
    float ssq = 0.0;
    for (uint i = tid; i < nc * 4u; i += WG) {
        const vec4 v = x[t * nc * 4u + i];
        ssq += dot(v, v);
    }
    const float nscale = inversesqrt(wg_sum(ssq) / float(pc.K) + pc.eps);
    // flags bit 1: the logits were computed from the un-normalised x (the router folded into the
    // o-projection, moe_router_fold): scale them by the same RMS factor here.
    const float lscale = (pc.flags & 2u) != 0u ? nscale : 1.0;
#else
    const float lscale = 1.0;
#endif
    // Only the workgroup that writes the token's ids and weights needs the softmax.
    const bool writer = gl_WorkGroupID.x == 0u && pair == t * pc.k;
    const vec2 ms = moe_topk(t * pc.n_experts, pc.n_experts, pc.k, lscale, writer);
    if (writer) {
        for (uint j = tid; j < pc.k; j += WG) {
            ids[pair + j] = sel_idx[j];
            weights[pair + j] = moe_weight(j, pc.k, ms, (pc.flags & 1u) != 0u);
        }
    }
    const uint e = min(sel_idx[pair - t * pc.k], pc.n_experts - 1u);
    MARK(1);
#ifdef INTDOT
    // x[t] → Q8_1 in shared memory, as quantize_q8_1.
    for (uint blk = tid; blk < nb; blk += WG) {
        vec4 v[8];
        float amax = 0.0;
        for (uint j = 0; j < 8u; j++) {
#ifdef NORM
            v[j] = x[(t * nb + blk) * 8u + j] * nscale * nw[blk * 8u + j];
#else
            v[j] = x[(t * nb + blk) * 8u + j];
#endif
            amax = max(amax, q81_amax4(v[j]));
        }
        const float d = q81_scale(amax);
        const float id = q81_inv(d);
        for (uint j = 0; j < 8u; j++) {
            const ivec4 q = q81_round(v[j], id);
            s_xq[blk * 8u + j] = q81_pack(q);
        }
        s_xd[blk] = d;
    }
    barrier();
#endif
#else
    const uint e = min(ids[pair], pc.n_experts - 1u);
#endif
    MARK(2);
    const uint first = gl_WorkGroupID.x * ROWS_WG;
    const uint last = min(first + ROWS_WG, pc.M);
    const uint lane = gl_SubgroupInvocationID, ss = gl_SubgroupSize;
    const uint qbase = e * pc.stride16;
    const uint dbase = e * pc.stride16 * 8u + pc.d_off2;
    for (uint row0 = first + gl_SubgroupID * RPS; row0 < last; row0 += gl_NumSubgroups * RPS) {
        float ag[RPS], au[RPS];
        for (uint r = 0; r < RPS; r++) { ag[r] = 0.0; au[r] = 0.0; }
        for (uint c = lane; c < nc; c += ss) {
            const uint b = c >> 1;
#if defined(INTDOT) && defined(ROUTE)
            const uvec4 xv = uvec4(s_xq[c * 4u], s_xq[c * 4u + 1u], s_xq[c * 4u + 2u], s_xq[c * 4u + 3u]);
            const float dx = s_xd[b];
#elif defined(INTDOT)
            const uvec4 xv = xq[t * nc + c];
            const float dx = xd[t * nb + b].x;
#else
            const uint xi = (t * nc + c) * 4u;
#ifdef NORM
            const uint ni = c * 4u;
            const vec4 x0 = x[xi] * nscale * nw[ni], x1 = x[xi + 1u] * nscale * nw[ni + 1u];
            const vec4 x2 = x[xi + 2u] * nscale * nw[ni + 2u], x3 = x[xi + 3u] * nscale * nw[ni + 3u];
#else
            const vec4 x0 = x[xi], x1 = x[xi + 1u], x2 = x[xi + 2u], x3 = x[xi + 3u];
#endif
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
    MARK(3);
}
