#version 450
// One Thinker decoder layer of a decode step in ONE persistent dispatch (replayable: position and
// cache length read from the GPU). The work of the fused decode kernels (mv_q8_0p_*_nq for q/k/v,
// attn_decode_fused, mv_q8_0p_*_pq_res for the o-projection, mv_f32_f32_norm for the router,
// moe_route_gate_up_norm, moe_down) runs as six stages of one dispatch, separated by grid barriers
// instead of dispatch boundaries:
//   S1  q, k, v = W · rmsnorm(x) · attn_norm          (rows of q, k, v spread over all subgroups)
//   S2  attention: q/k norm + RoPE, KV store at p, split over (KV head, chunk), merge by the last
//       workgroup of each KV head (as attn_decode_fused.comp)
//   S3  x += W_o · o
//   S4  router logits = W_r · rmsnorm(x) · ffn_norm   (f32 weights)
//   S5  top-k routing (every workgroup, kept in shared memory), h = silu(G·y) · (U·y)
//   S6  x += Σ_j w_j · D_{e_j} · h_j
// Each stage's prologue (RMSNorm, Q8_1 quantisation, routing) is computed by every workgroup for
// itself, exactly as the fused kernels do, so results match them up to the order of a few sums.
//
// Grid barrier: the workgroups must all be resident at once (the host launches at most as many as
// the device runs concurrently). sync[0] counts arrivals, sync[1] is the generation: each
// workgroup reads the generation, arrives, and the last to arrive resets the count and bumps the
// generation; the others spin until it changes. No reset is needed between dispatches. A spin that
// exceeds SPIN_CAP polls (workgroups not co-resident) sets sync[2] and gives up, so a bad launch
// is a reported error (the host checks sync[2]), never a hang. Everything one workgroup writes and
// another reads (x, the activation scratch, the sync words) is `coherent` and fenced with
// memoryBarrierBuffer on both sides of the barrier; weights and the KV cache (read by later
// dispatches only) are not.
//
// Float path: activations staged as f32; INTDOT: as Q8_1 (int8 dot products), both exactly as the
// matching fused kernels stage them. The router always uses f32.
//
// Bindings: 0/1 q quants/scales, 2/3 k, 4/5 v, 6/7 o (planar Q8_0), 8 router (f32 [E, H]),
//           9/10 gate experts, 11/12 up experts, 13/14 down experts (stacked planar Q8_0),
//           15 attn_norm, 16 ffn_norm, 17 q_norm, 18 k_norm, 19 x (in/out), 20 act, 21 K cache,
//           22 V cache, 23 pos (uint[3]), 24 cache_len (uint[1]),
//           25 sync (uint[8 + n_kv]: count, generation, error, -, counters).
// act layout (floats): q [NH*HD], k [NKV*HD], v [NKV*HD], o [NH*HD], logits [E, padded to 4],
//           h [TOPK*MI, padded to 4], part_o [NH*NCH*HD], part_ml [NH*NCH*2].
// Spec: 0 WG, 1 HD, 2 G (query heads per KV head), 3 CHUNK (keys per attention item, ≤ WG),
//       4 ACT_WORDS (shared activation staging, 32-bit words).
#ifdef INTDOT
#extension GL_EXT_integer_dot_product : require
#endif
#extension GL_EXT_control_flow_attributes : require
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint HD = 128;
layout(constant_id = 2) const uint G = 8;
layout(constant_id = 3) const uint CHUNK = 128;
layout(constant_id = 4) const uint ACT_WORDS = 2048;

layout(push_constant) uniform Push {
    uint H;        // hidden
    uint NH;       // query heads
    uint NKV;      // KV heads
    uint kv_cap;
    uint NCH;      // chunk slots per head in part_o / part_ml (≥ ceil(kv_cap / CHUNK))
    uint MI;       // expert intermediate size
    uint NE;       // experts
    uint TOPK;
    uint flags;    // bit 0: renormalise the top-k weights
    float eps;
    float theta;
    uint section_h;
    uint section_w;
    float scale;   // attention scale
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
layout(std430, binding = 17) readonly buffer QN { float q_w[]; };
layout(std430, binding = 18) readonly buffer KN { float k_w[]; };
// x and act are written by one workgroup and read by others, one float at a time: a single
// float view each (SPIR-V assumes distinct variables never alias, so a second, vec4 view could
// see stale values; and a component write through a vec4 view may rewrite all four floats).
layout(std430, binding = 19) coherent buffer X { float xf[]; };
layout(std430, binding = 20) coherent buffer ACT { float act[]; };
layout(std430, binding = 21) buffer KC { vec4 kc[]; };
layout(std430, binding = 22) buffer VC { vec4 vc[]; };
layout(std430, binding = 23) readonly buffer Pos { uint pos[]; };
layout(std430, binding = 24) readonly buffer Len { uint cache_len[]; };
layout(std430, binding = 25) coherent buffer Sync { uint sync[]; };

vec4 x4(uint i4) { return vec4(xf[4u * i4], xf[4u * i4 + 1u], xf[4u * i4 + 2u], xf[4u * i4 + 3u]); }
vec4 act4(uint i4) { return vec4(act[4u * i4], act[4u * i4 + 1u], act[4u * i4 + 2u], act[4u * i4 + 3u]); }
void act4_store(uint i4, vec4 v) {
    act[4u * i4] = v.x;
    act[4u * i4 + 1u] = v.y;
    act[4u * i4 + 2u] = v.z;
    act[4u * i4 + 3u] = v.w;
}

#include "common/reduce.glsl"
#define logits act
#include "moe_topk.glsl"
#undef logits

// Activation staging: INTDOT: Q8_1 quants (K/4 words) then the block scales (K/32 floats as bits);
// float path (and the router on both): K floats as bits.
shared uint s_act[ACT_WORDS];
// Attention.
const uint H4 = HD / 4u;
const uint HALF = HD / 2u;
const uint LPH = WG / G;
const uint NG = WG / H4;
shared vec4 s_q[G * H4];
shared float s_sc[G * CHUNK];
shared float s_red[WG];
shared float s_hm[G];
shared float s_hsc[G];
shared vec4 s_po[WG];
shared float s_kf[HD];
shared bool s_last;

// ---------------------------------------------------------------------------------------------
// Grid barrier.
void grid_barrier() {
    memoryBarrierBuffer();
    barrier();
    if (gl_LocalInvocationIndex == 0u) {
        const uint gen = atomicOr(sync[1], 0u);
        memoryBarrierBuffer();
        if (atomicAdd(sync[0], 1u) == gl_NumWorkGroups.x - 1u) {
            atomicExchange(sync[0], 0u);
            memoryBarrierBuffer();
            atomicAdd(sync[1], 1u);
        } else {
            uint spins = 0u;
            while (atomicOr(sync[1], 0u) == gen) {
                spins++;
                if (spins > pc.spin_cap || atomicOr(sync[2], 0u) != 0u) {
                    atomicOr(sync[2], 1u);
                    break;
                }
            }
        }
        memoryBarrierBuffer();
    }
    barrier();
}

// ---------------------------------------------------------------------------------------------
// Activation staging. src: 0 x · attn_norm (normed), 1 act[o], 2 x · ffn_norm (normed), 3 act[h].
uint o_off() { return (pc.NH + 2u * pc.NKV) * HD; }
uint logit_off() { return o_off() + pc.NH * HD; }
uint h_off() { return logit_off() + (pc.NE + 3u) / 4u * 4u; }
uint po_off() { return h_off() + (pc.TOPK * pc.MI + 3u) / 4u * 4u; }
uint ml_off() { return po_off() + pc.NH * pc.NCH * HD; }

vec4 src_load(uint src, uint i4, float nscale) {
    if (src == 0u) return x4(i4) * nscale * attn_norm[i4];
    if (src == 2u) return x4(i4) * nscale * ffn_norm[i4];
    if (src == 1u) return act4(o_off() / 4u + i4);
    return act4(h_off() / 4u + i4);
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
    const uint nb = K / 32u, nc = K / 16u; \
    float a0 = 0.0, a1 = 0.0; \
    for (uint c = gl_SubgroupInvocationID; c < nc; c += gl_SubgroupSize) { \
        const uint b = c >> 1; \
        XLOAD(K, c) \
        const uvec4 w0 = QS[row0 * nc + c]; \
        const uvec4 w1 = QS[row1 * nc + c]; \
        const float d0 = f16_bits_to_float(DW[row0 * nb + b]); \
        const float d1 = f16_bits_to_float(DW[row1 * nb + b]); \
        MAC(a0, w0, d0); \
        MAC(a1, w1, d1); \
    } \
    return vec2(subgroupAdd(a0), subgroupAdd(a1)); \
}
DOT2(dot2_q, wq_q, wq_d)
DOT2(dot2_k, wk_q, wk_d)
DOT2(dot2_v, wv_q, wv_d)
DOT2(dot2_o, wo_q, wo_d)

// ---------------------------------------------------------------------------------------------
// S2: attention for one (KV head, chunk) item; the last workgroup of the head merges.
vec2 rope_cs(uint j, float l2theta) {
    uint axis = 0u;
    if (j % 3u == 1u && j < 3u * pc.section_h) axis = 1u;
    else if (j % 3u == 2u && j < 3u * pc.section_w) axis = 2u;
    const float p = float(pos[axis]);
    const float a = p * exp2(-float(2u * j) / float(HD) * l2theta);
    const float k = roundEven(a * 0.15915494309189535);
    const float r = fma(-k, 0.0019353071795864769, fma(-k, 6.28125, a));
    return vec2(cos(r), sin(r));
}

void attention_item(uint kvh, uint c, uint p, uint kv_len, uint nch) {
    const uint tid = gl_LocalInvocationIndex;
    const uint k0 = c * CHUNK;
    const uint n = min(CHUNK, kv_len - k0);
    const uint h0 = kvh * G;
    const uint row4 = pc.NKV * H4;
    const float l2theta = log2(pc.theta);
    const uint kin = pc.NH * HD + kvh * HD;             // raw k of this KV head in act
    const uint vin4 = (pc.NH * HD + pc.NKV * HD) / 4u + kvh * H4; // raw v (vec4 index)
    barrier(); // shared memory of a previous item
    for (uint e = tid; e < G * H4; e += WG) s_q[e] = act4(h0 * H4 + e);
    barrier();
    if (tid < G) {
        float ss = 0.0;
        for (uint d4 = 0; d4 < H4; d4++) ss += dot(s_q[tid * H4 + d4], s_q[tid * H4 + d4]);
        s_hsc[tid] = inversesqrt(ss / float(HD) + pc.eps);
    }
    barrier();
    for (uint e = tid; e < G * HALF; e += WG) {
        const uint g = e / HALF, j = e % HALF;
        const uint a = g * HD + j, b = a + HALF;
        const float x0 = s_q[a / 4u][a % 4u] * s_hsc[g] * q_w[j];
        const float x1 = s_q[b / 4u][b % 4u] * s_hsc[g] * q_w[j + HALF];
        const vec2 cs = rope_cs(j, l2theta);
        s_q[a / 4u][a % 4u] = (x0 * cs.x - x1 * cs.y) * pc.scale;
        s_q[b / 4u][b % 4u] = (x1 * cs.x + x0 * cs.y) * pc.scale;
    }
    if (p >= k0 && p < k0 + CHUNK && p < pc.kv_cap) {
        for (uint d = tid; d < HD; d += WG) s_kf[d] = act[kin + d];
        barrier();
        if (tid == 0u) {
            float ss = 0.0;
            for (uint d = 0; d < HALF; d++) ss += s_kf[d] * s_kf[d] + s_kf[d + HALF] * s_kf[d + HALF];
            s_red[0] = inversesqrt(ss / float(HD) + pc.eps);
        }
        barrier();
        const float ks = s_red[0];
        float r0 = 0.0, r1 = 0.0;
        if (tid < HALF) {
            const float x0 = s_kf[tid] * ks * k_w[tid], x1 = s_kf[tid + HALF] * ks * k_w[tid + HALF];
            const vec2 cs = rope_cs(tid, l2theta);
            r0 = x0 * cs.x - x1 * cs.y;
            r1 = x1 * cs.x + x0 * cs.y;
        }
        barrier();
        if (tid < HALF) {
            s_kf[tid] = r0;
            s_kf[tid + HALF] = r1;
        }
        barrier();
        for (uint d4 = tid; d4 < H4; d4 += WG) {
            kc[p * row4 + kvh * H4 + d4] = vec4(s_kf[4u * d4], s_kf[4u * d4 + 1u], s_kf[4u * d4 + 2u], s_kf[4u * d4 + 3u]);
            vc[p * row4 + kvh * H4 + d4] = act4(vin4 + d4);
        }
    }
    barrier();

    if (tid < n) {
        const uint base = (k0 + tid) * row4 + kvh * H4;
        const bool newk = k0 + tid == p;
        float s[G];
        [[unroll]] for (uint g = 0; g < G; g++) s[g] = 0.0;
        [[unroll]] for (uint d4 = 0; d4 < H4; d4++) {
            vec4 kv = kc[base + d4];
            if (newk) kv = vec4(s_kf[4u * d4], s_kf[4u * d4 + 1u], s_kf[4u * d4 + 2u], s_kf[4u * d4 + 3u]);
            [[unroll]] for (uint g = 0; g < G; g++) s[g] += dot(s_q[g * H4 + d4], kv);
        }
        [[unroll]] for (uint g = 0; g < G; g++) s_sc[g * CHUNK + tid] = s[g];
    }
    barrier();

    const uint hg = tid / LPH, hj = tid % LPH;
    float mx = -1.0 / 0.0;
    if (hg < G) for (uint k = hj; k < n; k += LPH) mx = max(mx, s_sc[hg * CHUNK + k]);
    s_red[tid] = mx;
    barrier();
    if (tid < G) {
        float m = -1.0 / 0.0;
        for (uint j = 0; j < LPH; j++) m = max(m, s_red[tid * LPH + j]);
        s_hm[tid] = m;
    }
    barrier();
    float ls = 0.0;
    if (hg < G) {
        const float m = s_hm[hg];
        for (uint k = hj; k < n; k += LPH) {
            const float pr = exp(s_sc[hg * CHUNK + k] - m);
            s_sc[hg * CHUNK + k] = pr;
            ls += pr;
        }
    }
    s_red[tid] = ls;
    barrier();
    if (tid < G) {
        float l = 0.0;
        for (uint j = 0; j < LPH; j++) l += s_red[tid * LPH + j];
        const uint i = (h0 + tid) * pc.NCH + c;
        act[ml_off() + 2u * i] = s_hm[tid];
        act[ml_off() + 2u * i + 1u] = l;
    }

    const uint rg = tid / H4, c4 = tid % H4;
    vec4 acc[G];
    [[unroll]] for (uint g = 0; g < G; g++) acc[g] = vec4(0.0);
    if (rg < NG) {
        const uint vb = k0 * row4 + kvh * H4 + c4;
        uint k = rg;
        for (; k + 7u * NG < n; k += 8u * NG) {
            vec4 v[8];
            [[unroll]] for (uint u = 0; u < 8u; u++) {
                v[u] = vc[vb + (k + u * NG) * row4];
                if (k0 + k + u * NG == p) v[u] = act4(vin4 + c4);
            }
            [[unroll]] for (uint g = 0; g < G; g++) {
                const uint sb = g * CHUNK + k;
                [[unroll]] for (uint u = 0; u < 8u; u++) acc[g] += s_sc[sb + u * NG] * v[u];
            }
        }
        for (; k < n; k += NG) {
            vec4 v = vc[vb + k * row4];
            if (k0 + k == p) v = act4(vin4 + c4);
            [[unroll]] for (uint g = 0; g < G; g++) acc[g] += s_sc[g * CHUNK + k] * v;
        }
    }
    const uint pob = po_off() / 4u;
    [[unroll]] for (uint g = 0; g < G; g++) {
        barrier();
        s_po[tid] = acc[g];
        barrier();
        if (tid < H4) {
            vec4 t = vec4(0.0);
            for (uint r = 0; r < NG; r++) t += s_po[r * H4 + tid];
            act4_store(pob + ((h0 + g) * pc.NCH + c) * H4 + tid, t);
        }
    }
    memoryBarrierBuffer();
    barrier();
    if (tid == 0u) {
        s_last = atomicAdd(sync[8u + kvh], 1u) == nch - 1u;
        memoryBarrierBuffer();
    }
    barrier();
    if (!s_last) return;
    memoryBarrierBuffer();
    if (tid < G) s_hm[tid] = -1.0 / 0.0;
    barrier();
    for (uint g = 0; g < G; g++) {
        float m = -1.0 / 0.0;
        for (uint cc = tid; cc < nch; cc += WG) m = max(m, act[ml_off() + 2u * ((h0 + g) * pc.NCH + cc)]);
        s_red[tid] = m;
        barrier();
        if (tid == 0u) {
            float mm = -1.0 / 0.0;
            for (uint j = 0; j < min(WG, nch); j++) mm = max(mm, s_red[j]);
            s_hm[g] = mm;
        }
        barrier();
    }
    const uint oo4 = o_off() / 4u;
    for (uint e = tid; e < G * H4; e += WG) {
        const uint g = e / H4, d4 = e % H4;
        const uint mb = (h0 + g) * pc.NCH;
        const float m = s_hm[g];
        float l = 0.0;
        vec4 t = vec4(0.0);
        for (uint cc = 0u; cc < nch; cc++) {
            const float w = exp(act[ml_off() + 2u * (mb + cc)] - m);
            l += w * act[ml_off() + 2u * (mb + cc) + 1u];
            t += w * act4(pob + (mb + cc) * H4 + d4);
        }
        act4_store(oo4 + (h0 + g) * H4 + d4, t * (1.0 / l));
    }
    if (tid == 0u) atomicExchange(sync[8u + kvh], 0u);
}

// ---------------------------------------------------------------------------------------------
void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint lane = gl_SubgroupInvocationID;
    const uint NWG = gl_NumWorkGroups.x;
    const uint gsg = gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID; // global subgroup
    const uint TSG = NWG * gl_NumSubgroups;
    const uint H = pc.H;
    const uint QD = pc.NH * HD, KVD = pc.NKV * HD;

    // S1: q, k, v.
    {
        const float ns = x_norm_scale();
        STAGE(0u, H, ns);
        const uint total = QD + 2u * KVD; // rows, all even
        for (uint r = 2u * gsg; r < total; r += 2u * TSG) {
            vec2 t;
            if (r < QD) t = dot2_q(r, r + 1u, H);
            else if (r < QD + KVD) t = dot2_k(r - QD, r - QD + 1u, H);
            else t = dot2_v(r - QD - KVD, r - QD - KVD + 1u, H);
            if (lane == 0u) {
                act[r] = t.x;
                act[r + 1u] = t.y;
            }
        }
    }
    grid_barrier();

    // S2: attention.
    {
        const uint p = cache_len[0];
        const uint kv_len = min(p + 1u, pc.kv_cap);
        const uint nch = (kv_len + CHUNK - 1u) / CHUNK;
        for (uint item = gl_WorkGroupID.x; item < pc.NKV * nch; item += NWG) {
            attention_item(item / nch, item % nch, p, kv_len, nch);
        }
    }
    grid_barrier();

    // S3: x += W_o · o.
    {
        STAGE(1u, QD, 1.0);
        for (uint r = 2u * gsg; r < H; r += 2u * TSG) {
            const vec2 t = dot2_o(r, r + 1u, QD);
            if (lane == 0u) {
                xf[r] += t.x;
                xf[r + 1u] += t.y;
            }
        }
    }
    grid_barrier();

    // S4: router logits (f32 weights, f32 activation).
    const float ns2 = x_norm_scale();
    {
        stage_f32(2u, H, ns2);
        const uint lo = logit_off();
        for (uint r = gsg; r < pc.NE; r += TSG) {
            float a = 0.0;
            for (uint i = lane; i < H / 4u; i += gl_SubgroupSize) {
                a += dot(wr[r * (H / 4u) + i], uintBitsToFloat(uvec4(s_act[4u * i], s_act[4u * i + 1u], s_act[4u * i + 2u], s_act[4u * i + 3u])));
            }
            a = subgroupAdd(a);
            if (lane == 0u) act[lo + r] = a;
        }
    }
    grid_barrier();

    // S5: routing, then gate/up of the chosen experts.
    const vec2 ms = moe_topk(logit_off(), pc.NE, pc.TOPK);
    {
        barrier(); // s_act reads of S4 done before it is restaged
        STAGE(2u, H, ns2);
        const uint MI = pc.MI;
        const uint nb = H / 32u, nc = H / 16u;
        const uint ho = h_off();
        for (uint r = gsg; r < pc.TOPK * MI; r += TSG) {
            const uint j = r / MI, m = r - j * MI;
            const uint e = min(sel_idx[j], pc.NE - 1u);
            const uint qb = e * pc.gu_stride16 + m * nc;
            const uint db = e * pc.gu_stride16 * 8u + pc.gu_doff2 + m * nb;
            float ag = 0.0, au = 0.0;
            for (uint c = lane; c < nc; c += gl_SubgroupSize) {
                const uint b = c >> 1;
                XLOAD(H, c)
                const uvec4 wg = gate_q[qb + c];
                const uvec4 wu = up_q[qb + c];
                const float dg = f16_bits_to_float(gate_d[db + b]);
                const float du = f16_bits_to_float(up_d[db + b]);
                MAC(ag, wg, dg);
                MAC(au, wu, du);
            }
            const float g = subgroupAdd(ag);
            const float u = subgroupAdd(au);
            if (lane == 0u) act[ho + r] = g / (1.0 + exp(-g)) * u;
        }
    }
    grid_barrier();

    // S6: x += Σ_j w_j · D_{e_j} · h_j.
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
        for (uint r = gsg; r < H; r += TSG) {
            float a = 0.0;
            for (uint idx = lane; idx < total; idx += gl_SubgroupSize) {
                const uint j = idx / nc;
                const uint c = idx - j * nc;
                const uint b = c >> 1;
                const uint e = ej[j];
                const uvec4 wv = down_q[e * pc.dn_stride16 + r * nc + c];
                const float d = f16_bits_to_float(down_d[e * pc.dn_stride16 * 8u + pc.dn_doff2 + r * nb + b]);
#ifdef INTDOT
                XLOAD(KH, idx)
                const float wdx = wj[j] * dx;
                a += float(dot16(wv, xv)) * d * wdx;
#else
                XLOAD(KH, idx)
                a += wj[j] * d * (dot(bytes4(wv.x), x0) + dot(bytes4(wv.y), x1) + dot(bytes4(wv.z), x2) + dot(bytes4(wv.w), x3));
#endif
            }
            a = subgroupAdd(a);
            if (lane == 0u) xf[r] += a;
        }
    }
}
