#version 450
// Grouped expert projections for prefill: the pairs routed to each expert (moe_group's offsets and
// order) are multiplied by that expert's matrix together, TN pairs per weight load, so each weight
// is read once per TN pairs instead of once per pair.
//   gate/up: h[p, m] = silu(G_e[m, :] · x[t]) · (U_e[m, :] · x[t]),  p = t*k + j routed to e;
//   DOWN:    o[p, m] = D_e[m, :] · h[p]   (moe_combine then sums the k slots with their weights).
// Weights: stacked planar Q8_0 experts as in moe_gate_up (expert e at e * stride).
// Workgroup (x, y): ROWS_WG rows of expert y, looping over its pairs in tiles of TN; each subgroup
// owns RPS rows at a time, 16 weights per invocation per step, reduced with subgroupAdd alone.
// Float path: activations read as vec4; INTDOT: quantised to Q8_1 (quantize_q8_1 over all rows).
// Bindings: 0 qs (uvec4[]), 1 d (uint16[]), gate/up only: 2 up qs, 3 up d; then
//   activations: float: a (vec4[]); INTDOT: aq (uvec4[]), ad (vec2[] per 32-block);
//   then offsets (uint[n_experts+1]), order (uint[n_pairs]), out (float[n_pairs*M]).
// Push: K, M, k, n_experts, stride16 (stride/16), d_off2 (d_off/2), flags (unused; moe_gate_up's
// block). Spec: 0 WG, 1 RPS, 2 ROWS_WG.
// Activation row of pair p: x[p / k] for gate/up, h[p] for DOWN.
// Subgroup: full — lanes stride over a row's chunks by gl_SubgroupSize and subgroupAdd sums them, so every lane of a subgroup must run (the host checks that WG is a multiple of the size and sizes ROWS_WG from the smallest size the pipeline may get)
#ifdef INTDOT
#extension GL_EXT_integer_dot_product : require
#endif
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint RPS = 2;
layout(constant_id = 2) const uint ROWS_WG = 8;

layout(push_constant) uniform Push { uint K; uint M; uint k; uint n_experts; uint stride16; uint d_off2; uint flags; } pc;

#define TN 8u

layout(std430, binding = 0) readonly buffer GQ { uvec4 gq[]; };
layout(std430, binding = 1) readonly buffer GD { uint16_t gd[]; };
#ifdef DOWN
#define B0 2
#else
layout(std430, binding = 2) readonly buffer UQ { uvec4 uq[]; };
layout(std430, binding = 3) readonly buffer UD { uint16_t ud[]; };
#define B0 4
#endif
#ifdef INTDOT
layout(std430, binding = B0) readonly buffer AQ { uvec4 aq[]; };
layout(std430, binding = B0 + 1) readonly buffer AD { vec2 ad[]; };
layout(std430, binding = B0 + 2) readonly buffer OFF { uint offsets[]; };
layout(std430, binding = B0 + 3) readonly buffer ORD { uint order[]; };
layout(std430, binding = B0 + 4) writeonly buffer OUT { float outv[]; };
#else
layout(std430, binding = B0) readonly buffer A { vec4 a[]; };
layout(std430, binding = B0 + 1) readonly buffer OFF { uint offsets[]; };
layout(std430, binding = B0 + 2) readonly buffer ORD { uint order[]; };
layout(std430, binding = B0 + 3) writeonly buffer OUT { float outv[]; };
#endif

#include "common/q8_0p_dot.glsl"

void main() {
    const uint e = gl_WorkGroupID.y;
    const uint first = gl_WorkGroupID.x * ROWS_WG;
    const uint last = min(first + ROWS_WG, pc.M);
    const uint lane = gl_SubgroupInvocationID, ss = gl_SubgroupSize;
    const uint nb = pc.K / 32u;
    const uint nc = pc.K / 16u;
    const uint qbase = e * pc.stride16;
    const uint dbase = e * pc.stride16 * 8u + pc.d_off2;
    const uint beg = offsets[e], end = offsets[e + 1u];
    for (uint p0 = beg; p0 < end; p0 += TN) {
        const uint n = min(TN, end - p0);
        uint pr[TN], ar[TN]; // pair and activation row of each tile slot (the last repeated)
        for (uint q = 0; q < TN; q++) {
            pr[q] = order[p0 + min(q, n - 1u)];
#ifdef DOWN
            ar[q] = pr[q];
#else
            ar[q] = pr[q] / pc.k;
#endif
        }
        for (uint row0 = first + gl_SubgroupID * RPS; row0 < last; row0 += gl_NumSubgroups * RPS) {
            float ag[RPS][TN];
#ifndef DOWN
            float au[RPS][TN];
#endif
            for (uint r = 0; r < RPS; r++) {
                for (uint q = 0; q < TN; q++) {
                    ag[r][q] = 0.0;
#ifndef DOWN
                    au[r][q] = 0.0;
#endif
                }
            }
            for (uint c = lane; c < nc; c += ss) {
                const uint b = c >> 1;
                uvec4 wg[RPS];
                float dg[RPS];
#ifndef DOWN
                uvec4 wu[RPS];
                float du[RPS];
#endif
                for (uint r = 0; r < RPS; r++) {
                    const uint row = min(row0 + r, last - 1u);
                    wg[r] = gq[qbase + row * nc + c];
                    dg[r] = f16_bits_to_float(gd[dbase + row * nb + b]);
#ifndef DOWN
                    wu[r] = uq[qbase + row * nc + c];
                    du[r] = f16_bits_to_float(ud[dbase + row * nb + b]);
#endif
                }
                for (uint q = 0; q < TN; q++) {
                    if (q < n) {
#ifdef INTDOT
                        const uvec4 xv = aq[ar[q] * nc + c];
                        const float dx = ad[ar[q] * nb + b].x;
                        for (uint r = 0; r < RPS; r++) {
                            ag[r][q] += float(dot16(wg[r], xv)) * dg[r] * dx;
#ifndef DOWN
                            au[r][q] += float(dot16(wu[r], xv)) * du[r] * dx;
#endif
                        }
#else
                        const uint xi = (ar[q] * nc + c) * 4u;
                        const vec4 x0 = a[xi], x1 = a[xi + 1u], x2 = a[xi + 2u], x3 = a[xi + 3u];
                        for (uint r = 0; r < RPS; r++) {
                            ag[r][q] += dg[r] * dot16(wg[r], x0, x1, x2, x3);
#ifndef DOWN
                            au[r][q] += du[r] * dot16(wu[r], x0, x1, x2, x3);
#endif
                        }
#endif
                    }
                }
            }
            for (uint r = 0; r < RPS; r++) {
                for (uint q = 0; q < TN; q++) {
                    const float g = subgroupAdd(ag[r][q]);
#ifdef DOWN
                    const float v = g;
#else
                    const float u = subgroupAdd(au[r][q]);
                    const float v = g / (1.0 + exp(-g)) * u;
#endif
                    if (lane == 0u && q < n && row0 + r < last) outv[pr[q] * pc.M + row0 + r] = v;
                }
            }
        }
    }
}
