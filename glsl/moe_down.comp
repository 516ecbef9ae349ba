#version 450
// MoE down projection with the routing weights and the sum over the k chosen experts fused:
//   y[t, m] = (flags bit 0: res[t, m] +) Σ_j w[t, j] · Σ_i D_e[m, i] · h[t, j, i],  e = ids[t, j].
// Weights: all experts stacked in one buffer, expert e's planar Q8_0 [M, K] block (quants qs[M*K]
// int8, then f16 scales d[M*K/32] at d_off) at e * stride bytes (stride a multiple of 256).
// Like matvec_q8_0p: each subgroup owns RPS rows at a time, 16 weights (one uvec4) per invocation
// per step, reduced with subgroupAdd alone; its lanes stride over the k·K/16 chunks of all k slots
// at once (slot-major, every lane busy), each product scaled by its slot's weight. The token's ids
// and weights are staged in shared memory (k ≤ MAX_SLOTS). Workgroup: ROWS_WG rows of token z.
// Float path: h read as vec4; INTDOT: h quantised to Q8_1 (quantize_q8_1, n_tokens*k*K values).
// QUANT_H (with INTDOT): each workgroup quantises its token's k*K values of h to Q8_1 into shared
// memory itself, exactly as quantize_q8_1 does (k*K ≤ MAX_HK), so h is bound as floats, as on the
// float path, and no quantisation dispatch (nor its barrier) precedes.
// res may alias y (in-place residual add: each element is read, then written, by one invocation).
//
// Bindings: 0 qs (uvec4[]), 1 d (uint16[]),
//           float: 2 h (vec4[n_tokens*k*K/4]), 3 ids, 4 w (float[n_tokens*k]), 5 res, 6 y (float[n_tokens*M]);
//           INTDOT: 2 hq (uvec4[]), 3 hd (vec2[] per 32-block), 4 ids, 5 w, 6 res, 7 y;
//           INTDOT + QUANT_H: as the float path.
// Push: K, M, k, n_experts (ids are clamped below it), stride16 (stride/16), d_off2 (d_off/2),
//       flags, grid_x. Spec: 0 WG, 1 RPS (rows per subgroup step), 2 ROWS_WG (rows per workgroup).
// Subgroup: full, min 4 — lanes stride over a row's chunks by gl_SubgroupSize and subgroupAdd sums them, so every lane of a subgroup must run (the host checks that WG is a multiple of the size and sizes ROWS_WG from the smallest size the pipeline may get); the KSPLIT path keeps WG/4·RPS partial sums (≥ 4 lanes per subgroup) and writes RPS rows from lanes 0..RPS-1 (RPS ≤ subgroup size, checked by the host)
#ifdef INTDOT
#extension GL_EXT_integer_dot_product : require
#endif
#include "common/common.glsl"
#include "common/q8_1_block.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint RPS = 2;
layout(constant_id = 2) const uint ROWS_WG = 8;
// KSPLIT subgroups share each row group, each taking every KSPLIT-th chunk (fewer dependent loads
// per lane: decode's down projection is latency-bound); their sums meet in shared memory and are
// added in a fixed order.
layout(constant_id = 3) const uint KSPLIT = 1;
shared float s_part[(WG / 4u) * RPS];

layout(push_constant) uniform Push {
    uint K; uint M; uint k; uint n_experts; uint stride16; uint d_off2; uint flags; uint grid_x;
} pc;

layout(std430, binding = 0) readonly buffer QS { uvec4 qs[]; };
layout(std430, binding = 1) readonly buffer D { uint16_t dw[]; };
#if defined(INTDOT) && !defined(QUANT_H)
layout(std430, binding = 2) readonly buffer HQ { uvec4 hq[]; };
layout(std430, binding = 3) readonly buffer HD { vec2 hd[]; };
layout(std430, binding = 4) readonly buffer IDS { uint ids[]; };
layout(std430, binding = 5) readonly buffer WT { float wt[]; };
layout(std430, binding = 6) readonly buffer RES { float res[]; };
layout(std430, binding = 7) writeonly buffer Y { float y[]; };
#else
layout(std430, binding = 2) readonly buffer H { vec4 h[]; };
layout(std430, binding = 3) readonly buffer IDS { uint ids[]; };
layout(std430, binding = 4) readonly buffer WT { float wt[]; };
layout(std430, binding = 5) readonly buffer RES { float res[]; };
layout(std430, binding = 6) writeonly buffer Y { float y[]; };
#endif

#ifdef QUANT_H
#define MAX_HK 16384u
shared uint s_hq[MAX_HK / 4u];
shared float s_hd[MAX_HK / 32u];
#endif

#define MAX_SLOTS 16u
shared uint s_e[MAX_SLOTS];
shared float s_w[MAX_SLOTS];

#include "common/q8_0p_dot.glsl"

// One 16-weight chunk idx (of slot idx / nc) of h[t] times rows row0 .. row0 + RPS - 1 (clamped to
// last - 1) of the slot's expert, weighted, added to acc: the step of both row loops of main.
void down_chunk(uint idx, uint row0, uint last, uint nc, uint nb, uint hbase, inout float acc[RPS]) {
    const uint j = idx / nc;
    const uint c = idx - j * nc;
    const uint b = c >> 1;
    const uint e = s_e[j];
    const float wj = s_w[j];
    const uint qbase = e * pc.stride16;
    const uint dbase = e * pc.stride16 * 8u + pc.d_off2;
#if defined(QUANT_H)
    const uvec4 xv = uvec4(s_hq[idx * 4u], s_hq[idx * 4u + 1u], s_hq[idx * 4u + 2u], s_hq[idx * 4u + 3u]);
    const float wdx = wj * s_hd[idx >> 1];
#elif defined(INTDOT)
    const uvec4 xv = hq[hbase + idx];
    const float wdx = wj * hd[(hbase + idx) >> 1].x;
#else
    const uint xi = (hbase + idx) * 4u;
    const vec4 x0 = h[xi], x1 = h[xi + 1u], x2 = h[xi + 2u], x3 = h[xi + 3u];
#endif
    for (uint r = 0; r < RPS; r++) {
        const uint row = min(row0 + r, last - 1u);
        const uvec4 wv = qs[qbase + row * nc + c];
        const float d = f16_bits_to_float(dw[dbase + row * nb + b]);
#ifdef INTDOT
        const int s = dot16(wv, xv);
        acc[r] += float(s) * d * wdx;
#else
        acc[r] += wj * d * dot16(wv, x0, x1, x2, x3);
#endif
    }
}

void main() {
    MARK(0);
    const uint t = gl_WorkGroupID.z;
    const uint group = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    const uint first = group * ROWS_WG;
    const uint last = min(first + ROWS_WG, pc.M);
    const uint lane = gl_SubgroupInvocationID, ss = gl_SubgroupSize;
    const uint nb = pc.K / 32u;
    const uint nc = pc.K / 16u; // 16-weight chunks per row
    for (uint j = gl_LocalInvocationIndex; j < pc.k; j += WG) {
        s_e[j] = min(ids[t * pc.k + j], pc.n_experts - 1u);
        s_w[j] = wt[t * pc.k + j];
    }
    const uint total = pc.k * nc;  // chunks of all slots
    const uint hbase = t * total;  // h chunk index of (t, slot 0, chunk 0)
#ifdef QUANT_H
    // h[t] (k*K values) → Q8_1 in shared memory, as quantize_q8_1.
    for (uint blk = gl_LocalInvocationIndex; blk < pc.k * nb; blk += WG) {
        vec4 v[8];
        float amax = 0.0;
        for (uint q = 0; q < 8u; q++) {
            v[q] = h[(hbase / 2u + blk) * 8u + q];
            amax = max(amax, q81_amax4(v[q]));
        }
        const float d = q81_scale(amax);
        const float id = q81_inv(d);
        for (uint q = 0; q < 8u; q++) {
            const ivec4 qv = q81_round(v[q], id);
            s_hq[blk * 8u + q] = q81_pack(qv);
        }
        s_hd[blk] = d;
    }
#endif
    barrier();
    MARK(1);
    // One subgroup per row group (KSPLIT = 1): the plain loop.
    for (uint row0 = first + gl_SubgroupID * RPS; row0 < last && KSPLIT == 1u; row0 += gl_NumSubgroups * RPS) {
        float acc[RPS];
        for (uint r = 0; r < RPS; r++) acc[r] = 0.0;
        for (uint idx = lane; idx < total; idx += ss) {
            down_chunk(idx, row0, last, nc, nb, hbase, acc);
        }
        for (uint r = 0; r < RPS; r++) {
            const float v = subgroupAdd(acc[r]);
            const uint row = row0 + r;
            if (lane == 0u && row < last) {
                const uint o = t * pc.M + row;
                y[o] = (pc.flags & 1u) != 0u ? res[o] + v : v;
            }
        }
    }
    // KSPLIT > 1: row groups of ks subgroups, partial sums through shared memory.
    const uint ks = min(KSPLIT, gl_NumSubgroups); // subgroups per row group
    const uint groups = gl_NumSubgroups / ks;
    const uint grp = gl_SubgroupID / ks, part = gl_SubgroupID % ks;
    const uint steps = (ROWS_WG + groups * RPS - 1u) / (groups * RPS);
    for (uint st = 0u; st < steps && KSPLIT > 1u; st++) {
        const uint row0 = first + (st * groups + grp) * RPS;
        float acc[RPS];
        for (uint r = 0; r < RPS; r++) acc[r] = 0.0;
        for (uint idx = lane + part * ss; idx < total && grp < groups; idx += ss * ks) {
            down_chunk(idx, row0, last, nc, nb, hbase, acc);
        }
        if (ks == 1u) {
            for (uint r = 0; r < RPS; r++) {
                const float v = subgroupAdd(acc[r]);
                const uint row = row0 + r;
                if (lane == 0u && row < last) {
                    const uint o = t * pc.M + row;
                    y[o] = (pc.flags & 1u) != 0u ? res[o] + v : v;
                }
            }
        } else {
            for (uint r = 0; r < RPS; r++) {
                const float v = subgroupAdd(acc[r]);
                if (lane == 0u && grp < groups) s_part[(grp * RPS + r) * ks + part] = v;
            }
            barrier();
            if (part == 0u && grp < groups && lane < RPS) {
                const uint row = row0 + lane;
                float v = 0.0;
                for (uint q = 0; q < ks; q++) v += s_part[(grp * RPS + lane) * ks + q];
                if (row < last) {
                    const uint o = t * pc.M + row;
                    y[o] = (pc.flags & 1u) != 0u ? res[o] + v : v;
                }
            }
            barrier();
        }
    }
    MARK(2);
    MARK(3);
}
