#version 450
// y[m] = sum_k W[m, k] * x[k] with W in "Q8_0 planar" layout: the same numbers as ggml's Q8_0
// (per 32-block an f16 scale d and 32 int8 quants), stored as two planes so that quants load as
// aligned 16-byte vectors: quants qs[M*K] (int8, row-major), scales d[M*K/32] (f16, row-major).
// The loader repacks ggml blocks into this layout while it copies weights to the device.
//
// Float path: each invocation takes 16 weights (one uvec4) per step, x read as 4 vec4.
// INTDOT: x already quantised to Q8_1 (quantize_q8_1); 4 dotPacked4x8EXT per step.
//
// Each subgroup owns RPS rows at a time and reduces them with subgroupAdd alone (no shared memory,
// no barrier). A workgroup covers ROWS_WG rows; its subgroups stride over them, so the result is
// right for any subgroup size (the host sizes ROWS_WG from the smallest possible subgroup).
//
// Bindings: 0 qs (uvec4[]), 1 d (uint16[]), float path: 2 x (vec4[]), 3 y (float[M]);
//           INTDOT: 2 xq (uvec4[]), 3 xd (vec2[] per 32-block), 4 y.
// Variant RESIDUAL: one more binding (after y), res[M]; writes y = res + W·x (the residual add of a
// decoder layer fused into its output projection).
// Push: K, M, grid_x. Spec: 0 WG, 1 RPS (rows per subgroup step), 2 ROWS_WG (rows per workgroup).
//
// Variant PROLOGUE (decode fusions): x is bound as raw floats and every workgroup prepares its own
// copy in shared memory first: with NORM, RMSNorm x / sqrt(mean(x^2) + eps) * nw; with INTDOT,
// quantised to Q8_1 exactly as quantize_q8_1 (K ≤ MAX_K). That replaces an rms_norm and a
// quantize_q8_1 dispatch, and their barriers, per matrix × vector (q, k and v are three such
// dispatches that need no barrier between them).
// Bindings (PROLOGUE): 0 qs, 1 d, 2 x (vec4[K/4]), NORM: 3 nw (vec4[K/4]); then y, (RESIDUAL: res).
// Push: K, M, grid_x, eps.
//
// Variant HEAD (with PROLOGUE and NORM; decode q/k/v): a workgroup owns one head (ROWS_WG =
// head_dim rows), keeps its rows in shared memory and finishes the head itself, doing
// rope_qk_norm.comp's STORE work in its epilogue: mode 0 (q) per-head RMSNorm with hw, then the
// rotation at the token's position, into y; mode 1 (k) the same into the K cache at position
// cache_len[0]; mode 2 (v) the rows into the V cache there (positions ≥ max_len dropped). One
// dependent dispatch (norm/RoPE/store) fewer per layer.
// Bindings (HEAD): 0 qs, 1 d, 2 x, 3 nw, 4 y (q [M], or the cache [max_len, M]), 5 hw (float[HD]),
//           6 pos (uint[3]), 7 cache_len (uint[1]).
// Push (HEAD): K, M, grid_x, eps, mode, theta, section_h, section_w, max_len.
// KV_F16 (with HEAD, modes 1 and 2 only): the cache y holds f16 (common/kv.glsl).
// Subgroup: full — lanes stride over a row's chunks by gl_SubgroupSize and subgroupAdd sums them, so every lane of a subgroup must run (the host checks that WG is a multiple of the size and sizes ROWS_WG from the smallest size the pipeline may get)
#ifdef INTDOT
#extension GL_EXT_integer_dot_product : require
#endif
#include "common/common.glsl"
#include "common/q8_1_block.glsl"
#include "common/rope.glsl"
#include "common/kv.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint RPS = 2;
layout(constant_id = 2) const uint ROWS_WG = 8;

layout(std430, binding = 0) readonly buffer QS { uvec4 qs[]; };
layout(std430, binding = 1) readonly buffer D { uint16_t dw[]; };
#ifdef PROLOGUE
#ifdef HEAD
layout(push_constant) uniform Push {
    uint K; uint M; uint grid_x; float eps; uint mode; float theta; uint section_h; uint section_w; uint max_len;
} pc;
layout(std430, binding = 5) readonly buffer HW { float hw[]; };
layout(std430, binding = 6) readonly buffer Pos { uint pos[]; };
layout(std430, binding = 7) readonly buffer Len { uint cache_len[]; };
#define HEAD_MAX 256u
shared float s_head[HEAD_MAX];
#else
layout(push_constant) uniform Push { uint K; uint M; uint grid_x; float eps; } pc;
#endif
layout(std430, binding = 2) readonly buffer X { vec4 xin[]; };
#ifdef NORM
layout(std430, binding = 3) readonly buffer NW { vec4 nw[]; };
#define B_Y 4
#define B_RES 5
#else
#define B_Y 3
#define B_RES 4
#endif
#if defined(HEAD) && defined(KV_F16)
layout(std430, binding = B_Y) writeonly buffer Y { KV_T y[]; };
#else
layout(std430, binding = B_Y) writeonly buffer Y { float y[]; };
#endif
#ifdef RESIDUAL
layout(std430, binding = B_RES) readonly buffer R { float res[]; };
#endif
#ifdef INTDOT
#define MAX_K 8192u
shared uvec4 s_xq[MAX_K / 16u];
shared float s_xd[MAX_K / 32u];
#define Q81_MAX4 (MAX_K / 4u)
#define Q81_STORE(i, w) s_xq[(i) >> 2u][(i) & 3u] = (w)
#include "common/q8_1.glsl"
#else
#define MAX_K 4096u
shared vec4 s_x[MAX_K / 4u];
#endif
#include "common/reduce.glsl"
#else
layout(push_constant) uniform Push { uint K; uint M; uint grid_x; } pc;
#if defined(INTDOT)
layout(std430, binding = 2) readonly buffer XQ { uvec4 xq[]; };
layout(std430, binding = 3) readonly buffer XD { vec2 xd[]; };
layout(std430, binding = 4) writeonly buffer Y { float y[]; };
#ifdef RESIDUAL
layout(std430, binding = 5) readonly buffer R { float res[]; };
#endif
#else
layout(std430, binding = 2) readonly buffer X { vec4 x[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };
#ifdef RESIDUAL
layout(std430, binding = 4) readonly buffer R { float res[]; };
#endif
#endif

#endif

#include "common/q8_0p_dot.glsl"

#ifdef PROLOGUE
// x (optionally RMS-normalised) into shared memory, as floats or as Q8_1. All invocations call it.
void prologue() {
    const uint tid = gl_LocalInvocationIndex;
    const uint n4 = pc.K / 4u;
#ifdef INTDOT
    if (n4 <= Q81_R * WG) {
        // Every load first (x, and the norm weights), then the reductions (common/q8_1.glsl).
        vec4 v[Q81_R];
#ifdef NORM
        vec4 g[Q81_R];
#endif
        for (uint r = 0; r < Q81_R; r++) {
            const uint i = min(tid + r * WG, n4 - 1u);
            v[r] = xin[i];
#ifdef NORM
            g[r] = nw[i];
#endif
        }
#ifdef NORM
        float ssr = 0.0;
        for (uint r = 0; r < Q81_R; r++) {
            if (tid + r * WG < n4) ssr += dot(v[r], v[r]);
        }
        const float sc = inversesqrt(wg_sum(ssr) / float(pc.K) + pc.eps);
        for (uint r = 0; r < Q81_R; r++) v[r] = v[r] * sc * g[r];
#endif
        q81_from_regs(v, n4);
        return;
    }
#endif
    float scale = 1.0;
#ifdef NORM
    float ss = 0.0;
    for (uint i = tid; i < n4; i += WG) {
        const vec4 v = xin[i];
        ss += dot(v, v);
    }
    scale = inversesqrt(wg_sum(ss) / float(pc.K) + pc.eps);
#endif
#ifdef INTDOT
    for (uint blk = tid; blk < pc.K / 32u; blk += WG) {
        vec4 v[8];
        float amax = 0.0;
        for (uint j = 0; j < 8u; j++) {
#ifdef NORM
            v[j] = xin[blk * 8u + j] * scale * nw[blk * 8u + j];
#else
            v[j] = xin[blk * 8u + j];
#endif
            amax = max(amax, q81_amax4(v[j]));
        }
        const float d = q81_scale(amax);
        const float id = q81_inv(d);
        uint wq[8];
        for (uint j = 0; j < 8u; j++) {
            const ivec4 q = q81_round(v[j], id);
            wq[j] = q81_pack(q);
        }
        s_xq[blk * 2u] = uvec4(wq[0], wq[1], wq[2], wq[3]);
        s_xq[blk * 2u + 1u] = uvec4(wq[4], wq[5], wq[6], wq[7]);
        s_xd[blk] = d;
    }
#else
    for (uint i = tid; i < n4; i += WG) {
#ifdef NORM
        s_x[i] = xin[i] * scale * nw[i];
#else
        s_x[i] = xin[i];
#endif
    }
#endif
    barrier();
}
#endif

// Row `row`'s finished dot product (first: the workgroup's first row).
void put_row(uint row, uint first, float t) {
#if defined(HEAD)
    s_head[row - first] = t;
#elif defined(RESIDUAL)
    y[row] = res[row] + t;
#else
    y[row] = t;
#endif
}

void main() {
    MARK(0);
#ifdef PROLOGUE
    prologue();
#endif
    MARK(1);
    const uint group = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    const uint first = group * ROWS_WG;
    const uint last = min(first + ROWS_WG, pc.M);
    const uint lane = gl_SubgroupInvocationID, ss = gl_SubgroupSize;
    const uint nb = pc.K / 32u;
    const uint nc = pc.K / 16u; // 16-weight chunks per row
    for (uint row0 = first + gl_SubgroupID * RPS; row0 < last; row0 += gl_NumSubgroups * RPS) {
        float acc[RPS];
        for (uint r = 0; r < RPS; r++) acc[r] = 0.0;
        for (uint c = lane; c < nc; c += ss) {
            const uint b = c >> 1;
#if defined(PROLOGUE) && defined(INTDOT)
            const uvec4 xv = s_xq[c];
            const float dx = s_xd[b];
#elif defined(PROLOGUE)
            const vec4 x0 = s_x[c * 4u], x1 = s_x[c * 4u + 1u], x2 = s_x[c * 4u + 2u], x3 = s_x[c * 4u + 3u];
#elif defined(INTDOT)
            const uvec4 xv = xq[c];
            const float dx = xd[b].x;
#else
            const vec4 x0 = x[c * 4u], x1 = x[c * 4u + 1u], x2 = x[c * 4u + 2u], x3 = x[c * 4u + 3u];
#endif
            for (uint r = 0; r < RPS; r++) {
                const uint row = min(row0 + r, last - 1u);
                const uvec4 wv = qs[row * nc + c];
                const float d = f16_bits_to_float(dw[row * nb + b]);
#ifdef INTDOT
                const int s = dot16(wv, xv);
                acc[r] += float(s) * d * dx;
#else
                const float s = dot16(wv, x0, x1, x2, x3);
                acc[r] += d * s;
#endif
            }
        }
        for (uint r = 0; r < RPS; r++) {
            const float t = subgroupAdd(acc[r]);
            if (lane == 0u && row0 + r < last) put_row(row0 + r, first, t);
        }
    }
    MARK(2);
#ifdef HEAD
#if defined(KV_F16)
#define Y_T KV_T
#else
#define Y_T float
#endif
    // The head's epilogue (rope_qk_norm.comp STORE's work for this head).
    barrier();
    const uint hd = ROWS_WG, half_dim = hd / 2u, tid = gl_LocalInvocationIndex;
    const uint head = first / hd, head0 = head * hd;
    const uint p = cache_len[0];
    if (pc.mode == 2u) {
        if (p < pc.max_len) for (uint j = tid; j < ROWS_WG; j += WG) y[p * pc.M + first + j] = Y_T(s_head[j]);
        MARK(3);
        return;
    }
    float sq = 0.0;
    for (uint j = tid; j < half_dim; j += WG) sq += s_head[j] * s_head[j] + s_head[j + half_dim] * s_head[j + half_dim];
    const float scale = inversesqrt(wg_sum(sq) / float(hd) + pc.eps);
    const float l2theta = log2(pc.theta);
    const uint base = pc.mode == 1u ? p * pc.M : 0u;
    if (pc.mode == 1u && p >= pc.max_len) {
        MARK(3);
        return;
    }
    for (uint j = tid; j < half_dim; j += WG) {
        const float p = float(pos[mrope_axis(j, pc.section_h, pc.section_w)]);
        const vec2 cs = rope_cos_sin(rope_angle(p, j, hd, l2theta));
        const float x0 = s_head[j] * scale * hw[j], x1 = s_head[j + half_dim] * scale * hw[j + half_dim];
        y[base + head0 + j] = Y_T(x0 * cs.x - x1 * cs.y);
        y[base + head0 + j + half_dim] = Y_T(x1 * cs.x + x0 * cs.y);
    }
    MARK(3);
#else
    MARK(3);
#endif
}
