#version 450
// The decode step's work between two attentions as ONE persistent dispatch (replayable): for layer
// l the o-projection + residual, the router, top-k routing + gate/up and the down projection +
// residual, then the q/k/v of layer l + 1 — the work of five fused decode kernels
// (mv_q8_0p_*_pq_res, mv_f32_f32_norm, moe_route_gate_up_norm, moe_down, mv_q8_0p_*_nq), as
// stages of one dispatch separated by grid barriers instead of dispatch boundaries. Attention
// stays its own dispatch (attn_decode_fused: its registers would cap the workgroups per SM of
// everything else). Stages, each enabled by a flag bit (so the first dispatch of a step runs only
// QKV and the last no QKV):
//   S_O    x += W_o · o                                   (flag 2)
//   S_R    router logits = W_r · rmsnorm(x) · ffn_norm    (flag 2; f32 weights, a row per workgroup)
//   S_GU   top-k routing (every workgroup, kept in shared memory), h = silu(G·y) · (U·y)   (flag 2)
//   S_D    x += Σ_j w_j · D_{e_j} · h_j                   (flag 2)
//   S_QKV  q, k, v = W · rmsnorm(x) · attn_norm          (flag 4)
// Each stage's prologue (RMSNorm, Q8_1 quantisation, routing) is computed by every workgroup for
// itself, exactly as the fused kernels do, so results match them up to the order of a few sums.
// Flag 8 (probe): no work, MI grid barriers — the host tries workgroup counts with one to find how
// many this pipeline keeps resident at once, and times many to measure a barrier.
//
// Grid barrier: the workgroups must all be resident at once (the host launches at most as many as
// the probe found resident). S_COUNT counts arrivals, S_GEN is the generation: each
// workgroup reads the generation, arrives, and the last to arrive resets the count and bumps the
// generation; the others spin until it changes. No reset is needed between dispatches. A spin that
// exceeds spin_cap polls (workgroups not co-resident) sets the error word and gives up, so a bad
// launch is a reported error (the host checks it), never a hang. Everything one workgroup writes and
// another reads (x, q/k/v, the scratch, the sync words) is `coherent` and fenced with
// memoryBarrierBuffer on both sides of the barrier, by every invocation; weights are not.
//
// Float path: activations staged as f32; INTDOT: as Q8_1 (int8 dot products), both exactly as the
// matching fused kernels stage them. The router always uses f32.
//
// Bindings: 0/1 q quants/scales, 2/3 k, 4/5 v (layer l + 1), 6/7 o (planar Q8_0), 8 router
//           (f32 [E, H]), 9/10 gate experts, 11/12 up experts, 13/14 down experts (stacked planar
//           Q8_0), 15 attn_norm (l + 1), 16 ffn_norm, 17 x (in/out), 18 q out, 19 k out, 20 v out,
//           21 o (attention output), 22 act (logits [E, padded to 4], h [TOPK*MI]),
//           23 sync (count, generation, error at words 0, 32, 64).
// Spec: 0 WG, 1 ACT_WORDS (shared activation staging, 32-bit words).
// Subgroup: full — lanes stride over a row's chunks by gl_SubgroupSize and subgroupAdd sums them, so every lane of a subgroup must run (the host checks that WG is a multiple of the size and sizes ROWS_WG from the smallest size the pipeline may get)
#ifdef INTDOT
#extension GL_EXT_integer_dot_product : require
#endif
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint ACT_WORDS = 2048;

layout(push_constant) uniform Push {
    uint H;        // hidden
    uint QD;       // q width (heads × head_dim)
    uint KVD;      // k / v width
    uint MI;       // expert intermediate size
    uint NE;       // experts
    uint TOPK;
    uint flags;    // bit 0 renormalise top-k, 1 o/router/MoE, 2 q/k/v, 3 probe
    float eps;
    uint gu_stride16;
    uint gu_doff2;
    uint dn_stride16;
    uint dn_doff2;
    uint spin_cap;
} pc;

layout(std430, binding = 0) readonly buffer WQq { uvec4 wq_q[]; };
layout(std430, binding = 1) readonly buffer WQd { uint16_t wq_d[]; };
layout(std430, binding = 2) readonly buffer WKq { uvec4 wk_q[]; };
layout(std430, binding = 3) readonly buffer WKd { uint16_t wk_d[]; };
layout(std430, binding = 4) readonly buffer WVq { uvec4 wv_q[]; };
layout(std430, binding = 5) readonly buffer WVd { uint16_t wv_d[]; };
layout(std430, binding = 6) readonly buffer WOq { uvec4 wo_q[]; };
layout(std430, binding = 7) readonly buffer WOd { uint16_t wo_d[]; };
layout(std430, binding = 8) readonly buffer WR { vec4 wr[]; };
layout(std430, binding = 9) readonly buffer GQ { uvec4 gate_q[]; };
layout(std430, binding = 10) readonly buffer GD { uint16_t gate_d[]; };
layout(std430, binding = 11) readonly buffer UQ { uvec4 up_q[]; };
layout(std430, binding = 12) readonly buffer UD { uint16_t up_d[]; };
layout(std430, binding = 13) readonly buffer DQ { uvec4 down_q[]; };
layout(std430, binding = 14) readonly buffer DD { uint16_t down_d[]; };
layout(std430, binding = 15) readonly buffer AN { vec4 attn_norm[]; };
layout(std430, binding = 16) readonly buffer FN { vec4 ffn_norm[]; };
// Buffers one workgroup writes and others read: one float view each (SPIR-V assumes distinct
// variables never alias, so a second, vec4 view could see stale values; and a component write
// through a vec4 view may rewrite all four floats).
layout(std430, binding = 17) coherent buffer X { float xf[]; };
layout(std430, binding = 18) coherent writeonly buffer QB { float qb[]; };
layout(std430, binding = 19) coherent writeonly buffer KB { float kb[]; };
layout(std430, binding = 20) coherent writeonly buffer VB { float vb[]; };
layout(std430, binding = 21) readonly buffer OB { float ob[]; };
layout(std430, binding = 22) coherent buffer ACT { float act[]; };
layout(std430, binding = 23) volatile coherent buffer Sync { uint sync[]; };
// Sync words, each on its own 128-byte line: arrivals, generation (polled with plain loads, so the
// pollers do not queue atomics in front of the arrivals), error.
#define S_COUNT 0u
#define S_GEN 32u
#define S_ERR 64u
#define H_OFF ((pc.NE + 3u) / 4u * 4u)

vec4 x4(uint i4) { return vec4(xf[4u * i4], xf[4u * i4 + 1u], xf[4u * i4 + 2u], xf[4u * i4 + 3u]); }
vec4 act4(uint i4) { return vec4(act[4u * i4], act[4u * i4 + 1u], act[4u * i4 + 2u], act[4u * i4 + 3u]); }

#include "common/reduce.glsl"
#define logits act
#include "moe_topk.glsl"
#undef logits

// Activation staging: INTDOT: Q8_1 quants (K/4 words) then the block scales (K/32 floats as bits);
// float path (and the router on both): K floats as bits.
shared uint s_act[ACT_WORDS];

// ---------------------------------------------------------------------------------------------
// Grid barrier.
void grid_barrier() {
    memoryBarrierBuffer();
    barrier();
    if (gl_LocalInvocationIndex == 0u) {
        const uint gen = sync[S_GEN];
        memoryBarrierBuffer();
        if (atomicAdd(sync[S_COUNT], 1u) == gl_NumWorkGroups.x - 1u) {
            atomicExchange(sync[S_COUNT], 0u);
            memoryBarrierBuffer();
            atomicAdd(sync[S_GEN], 1u);
        } else {
            uint spins = 0u;
            while (sync[S_GEN] == gen) {
                spins++;
                if (spins > pc.spin_cap || sync[S_ERR] != 0u) {
                    atomicOr(sync[S_ERR], 1u);
                    break;
                }
            }
        }
        memoryBarrierBuffer();
    }
    barrier();
    memoryBarrierBuffer();
}

// ---------------------------------------------------------------------------------------------
// Activation staging. src: 0 x · attn_norm (normed), 1 o, 2 x · ffn_norm (normed), 3 act[h].
vec4 src_load(uint src, uint i4, float nscale) {
    if (src == 0u) return x4(i4) * nscale * attn_norm[i4];
    if (src == 2u) return x4(i4) * nscale * ffn_norm[i4];
    if (src == 1u) return vec4(ob[4u * i4], ob[4u * i4 + 1u], ob[4u * i4 + 2u], ob[4u * i4 + 3u]);
    return act4(H_OFF / 4u + i4);
}

// RMS scale of x (all invocations call it).
float x_norm_scale() {
    float ss = 0.0;
    for (uint i = gl_LocalInvocationIndex; i < pc.H / 4u; i += WG) {
        const vec4 v = x4(i);
        ss += dot(v, v);
    }
    return inversesqrt(wg_sum(ss) / float(pc.H) + pc.eps);
}

// K values of src as f32 into s_act (all invocations call it; ends with a barrier).
void stage_f32(uint src, uint K, float nscale) {
    for (uint i = gl_LocalInvocationIndex; i < K / 4u; i += WG) {
        const vec4 v = src_load(src, i, nscale);
        s_act[4u * i] = floatBitsToUint(v.x);
        s_act[4u * i + 1u] = floatBitsToUint(v.y);
        s_act[4u * i + 2u] = floatBitsToUint(v.z);
        s_act[4u * i + 3u] = floatBitsToUint(v.w);
    }
    barrier();
}

#ifdef INTDOT
// K values of src as Q8_1 into s_act, as quantize_q8_1 (all invocations call it; ends with a barrier).
void stage_q81(uint src, uint K, float nscale) {
    const uint xd = K / 4u;
    for (uint blk = gl_LocalInvocationIndex; blk < K / 32u; blk += WG) {
        vec4 v[8];
        float amax = 0.0;
        for (uint j = 0; j < 8u; j++) {
            v[j] = src_load(src, blk * 8u + j, nscale);
            const vec4 a = abs(v[j]);
            amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
        }
        const float d = amax / 127.0;
        const float id = d != 0.0 ? 1.0 / d : 0.0;
        for (uint j = 0; j < 8u; j++) {
            const ivec4 q = clamp(ivec4(roundEven(v[j] * id)), ivec4(-127), ivec4(127));
            s_act[blk * 8u + j] = (uint(q.x) & 0xffu) | ((uint(q.y) & 0xffu) << 8) | ((uint(q.z) & 0xffu) << 16) | (uint(q.w) << 24);
        }
        s_act[xd + blk] = floatBitsToUint(d);
    }
    barrier();
}
#define STAGE(src, K, ns) stage_q81(src, K, ns)

int dot16(uvec4 w, uvec4 v) {
    int s = dotPacked4x8EXT(int(w.x), int(v.x));
    s = dotPacked4x8AccSatEXT(int(w.y), int(v.y), s);
    s = dotPacked4x8AccSatEXT(int(w.z), int(v.z), s);
    return dotPacked4x8AccSatEXT(int(w.w), int(v.w), s);
}
// Chunk c (16 values) of the staged activation: quants and the block scale.
#define XLOAD(K, c) \
    const uvec4 xv = uvec4(s_act[(c) * 4u], s_act[(c) * 4u + 1u], s_act[(c) * 4u + 2u], s_act[(c) * 4u + 3u]); \
    const float dx = uintBitsToFloat(s_act[(K) / 4u + ((c) >> 1)]);
// acc += row chunk · x for weights wv with block scale d (as matvec_q8_0p INTDOT).
#define MAC(acc, wv, d) acc += float(dot16(wv, xv)) * (d) * dx
#else
#define STAGE(src, K, ns) stage_f32(src, K, ns)
vec4 bytes4(uint w) {
    const int v = int(w);
    return vec4(bitfieldExtract(v, 0, 8), bitfieldExtract(v, 8, 8), bitfieldExtract(v, 16, 8), bitfieldExtract(v, 24, 8));
}
vec4 sx4(uint i4) {
    return uintBitsToFloat(uvec4(s_act[4u * i4], s_act[4u * i4 + 1u], s_act[4u * i4 + 2u], s_act[4u * i4 + 3u]));
}
#define XLOAD(K, c) \
    const vec4 x0 = sx4((c) * 4u), x1 = sx4((c) * 4u + 1u), x2 = sx4((c) * 4u + 2u), x3 = sx4((c) * 4u + 3u);
#define MAC(acc, wv, d) acc += (d) * (dot(bytes4(wv.x), x0) + dot(bytes4(wv.y), x1) + dot(bytes4(wv.z), x2) + dot(bytes4(wv.w), x3))
#endif

// Two rows (row0, row1) of a planar Q8_0 matrix with K columns times the staged activation,
// reduced over the subgroup. Subgroup-uniform control flow.
#define DOT2(FN, QS, DW) \
vec2 FN(uint row0, uint row1, uint K) { \
    const uint nb = K / 32u, nc = K / 16u, ss = gl_SubgroupSize; \
    float a0 = 0.0, a1 = 0.0; \
    for (uint c = gl_SubgroupInvocationID; c < nc; c += 2u * ss) { \
        const uint c2 = min(c + ss, nc - 1u); \
        const uvec4 w0 = QS[row0 * nc + c], w1 = QS[row1 * nc + c]; \
        const uvec4 w2 = QS[row0 * nc + c2], w3 = QS[row1 * nc + c2]; \
        const float d0 = f16_bits_to_float(DW[row0 * nb + (c >> 1)]); \
        const float d1 = f16_bits_to_float(DW[row1 * nb + (c >> 1)]); \
        const float d2 = f16_bits_to_float(DW[row0 * nb + (c2 >> 1)]); \
        const float d3 = f16_bits_to_float(DW[row1 * nb + (c2 >> 1)]); \
        { \
            XLOAD(K, c) \
            MAC(a0, w0, d0); \
            MAC(a1, w1, d1); \
        } \
        if (c + ss < nc) { \
            XLOAD(K, c2) \
            MAC(a0, w2, d2); \
            MAC(a1, w3, d3); \
        } \
    } \
    return vec2(subgroupAdd(a0), subgroupAdd(a1)); \
}
DOT2(dot2_q, wq_q, wq_d)
DOT2(dot2_k, wk_q, wk_d)
DOT2(dot2_v, wv_q, wv_d)
DOT2(dot2_o, wo_q, wo_d)



// ---------------------------------------------------------------------------------------------
void main() {
    const uint lane = gl_SubgroupInvocationID;
    const uint NWG = gl_NumWorkGroups.x;
    const uint wg = gl_WorkGroupID.x;
    const uint gsg = wg * gl_NumSubgroups + gl_SubgroupID; // global subgroup
    const uint TSG = NWG * gl_NumSubgroups;
    const uint H = pc.H;
    if ((pc.flags & 8u) != 0u) {
        // Probe / barrier benchmark: MI grid barriers and nothing else.
        for (uint i = 0u; i < max(pc.MI, 1u); i++) grid_barrier();
        return;
    }
    if ((pc.flags & 2u) != 0u) {
        // S_O: x += W_o · o.
        STAGE(1u, pc.QD, 1.0);
        for (uint r = 2u * gsg; r < H; r += 2u * TSG) {
            const vec2 t = dot2_o(r, r + 1u, pc.QD);
            if (lane == 0u) {
                xf[r] += t.x;
                xf[r + 1u] += t.y;
            }
        }
        grid_barrier();

        // S_R: router logits (f32 weights, f32 activation); a row per workgroup.
        const float ns2 = x_norm_scale();
        stage_f32(2u, H, ns2);
        for (uint r = wg; r < pc.NE; r += NWG) {
            float a = 0.0;
            for (uint i = gl_LocalInvocationIndex; i < H / 4u; i += WG) {
                a += dot(wr[r * (H / 4u) + i], uintBitsToFloat(uvec4(s_act[4u * i], s_act[4u * i + 1u], s_act[4u * i + 2u], s_act[4u * i + 3u])));
            }
            a = wg_sum(a);
            if (gl_LocalInvocationIndex == 0u) act[r] = a;
        }
        grid_barrier();

        // S_GU: routing, then gate/up of the chosen experts.
        const vec2 ms = moe_topk(0u, pc.NE, pc.TOPK, 1.0, true);
        STAGE(2u, H, ns2);
        {
            const uint MI = pc.MI;
            const uint nb = H / 32u, nc = H / 16u;
            for (uint r = gsg; r < pc.TOPK * MI; r += TSG) {
                const uint j = r / MI, m = r - j * MI;
                const uint e = min(sel_idx[j], pc.NE - 1u);
                const uint qb0 = e * pc.gu_stride16 + m * nc;
                const uint db0 = e * pc.gu_stride16 * 8u + pc.gu_doff2 + m * nb;
                float ag = 0.0, au = 0.0;
                for (uint c = lane; c < nc; c += gl_SubgroupSize) {
                    const uint b = c >> 1;
                    const uvec4 wg4 = gate_q[qb0 + c];
                    const uvec4 wu4 = up_q[qb0 + c];
                    const float dg = f16_bits_to_float(gate_d[db0 + b]);
                    const float du = f16_bits_to_float(up_d[db0 + b]);
                    XLOAD(H, c)
                    MAC(ag, wg4, dg);
                    MAC(au, wu4, du);
                }
                const float g = subgroupAdd(ag);
                const float u = subgroupAdd(au);
                if (lane == 0u) act[H_OFF + r] = g / (1.0 + exp(-g)) * u;
            }
        }
        grid_barrier();

        // S_D: x += Σ_j w_j · D_{e_j} · h_j (two rows per subgroup).
        {
            const uint MI = pc.MI;
            const uint KH = pc.TOPK * MI;
            STAGE(3u, KH, 1.0);
            const uint nb = MI / 32u, nc = MI / 16u;
            const uint total = pc.TOPK * nc;
            float wj[MOE_MAX_K];
            uint ej[MOE_MAX_K];
            for (uint j = 0; j < MOE_MAX_K; j++) {
                wj[j] = j < pc.TOPK ? moe_weight(j, pc.TOPK, ms, (pc.flags & 1u) != 0u) : 0.0;
                ej[j] = min(sel_idx[j], pc.NE - 1u);
            }
            for (uint r = 2u * gsg; r < H; r += 2u * TSG) {
                float a = 0.0, a1 = 0.0;
                for (uint idx = lane; idx < total; idx += gl_SubgroupSize) {
                    const uint j = idx / nc;
                    const uint c = idx - j * nc;
                    const uint b = c >> 1;
                    const uint e = ej[j];
                    const uint qb0 = e * pc.dn_stride16 + r * nc + c;
                    const uint db0 = e * pc.dn_stride16 * 8u + pc.dn_doff2 + r * nb + b;
                    const uvec4 wv = down_q[qb0], wv1 = down_q[qb0 + nc];
                    const float d = f16_bits_to_float(down_d[db0]), d1 = f16_bits_to_float(down_d[db0 + nb]);
                    XLOAD(KH, idx)
#ifdef INTDOT
                    const float wdx = wj[j] * dx;
                    a += float(dot16(wv, xv)) * d * wdx;
                    a1 += float(dot16(wv1, xv)) * d1 * wdx;
#else
                    a += wj[j] * d * (dot(bytes4(wv.x), x0) + dot(bytes4(wv.y), x1) + dot(bytes4(wv.z), x2) + dot(bytes4(wv.w), x3));
                    a1 += wj[j] * d1 * (dot(bytes4(wv1.x), x0) + dot(bytes4(wv1.y), x1) + dot(bytes4(wv1.z), x2) + dot(bytes4(wv1.w), x3));
#endif
                }
                a = subgroupAdd(a);
                a1 = subgroupAdd(a1);
                if (lane == 0u) {
                    xf[r] += a;
                    xf[r + 1u] += a1;
                }
            }
        }
        if ((pc.flags & 4u) != 0u) grid_barrier();
    }
    if ((pc.flags & 4u) != 0u) {
        // S_QKV: q, k, v of the next layer.
        const float ns = x_norm_scale();
        STAGE(0u, H, ns);
        const uint QD = pc.QD, KVD = pc.KVD;
        const uint total = QD + 2u * KVD; // rows, all even
        for (uint r = 2u * gsg; r < total; r += 2u * TSG) {
            if (r < QD) {
                const vec2 t = dot2_q(r, r + 1u, H);
                if (lane == 0u) { qb[r] = t.x; qb[r + 1u] = t.y; }
            } else if (r < QD + KVD) {
                const vec2 t = dot2_k(r - QD, r - QD + 1u, H);
                if (lane == 0u) { kb[r - QD] = t.x; kb[r - QD + 1u] = t.y; }
            } else {
                const vec2 t = dot2_v(r - QD - KVD, r - QD - KVD + 1u, H);
                if (lane == 0u) { vb[r - QD - KVD] = t.x; vb[r - QD - KVD + 1u] = t.y; }
            }
        }
    }
}
