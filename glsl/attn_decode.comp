#version 450
// Decode attention, pass 1 of 2, GQA-shared variant (head_dim HD a multiple of 4, spec constant):
// same math and outputs as attn_split, but one workgroup serves all G = n_heads / n_kv query heads
// of one KV head, so every K and V row of its chunk is read once (not G times), with wide loads:
//   scores: P = WG / CHUNK invocations per key c*CHUNK + k, each reading 1/P of its K row as vec4s (a
//           constant-trip loop the compiler unrolls, so the loads are all in flight), dotting it
//           with the G pre-scaled query vectors held in shared memory (broadcast reads); the P
//           partial sums are added in a fixed order;
//   softmax: WG/G lanes per head reduce max and sum through shared memory;
//   P·V: R = HD/4 lanes cover one V row as vec4s, WG/R row groups stride over the chunk's keys
//        (8 rows per step, loads issued together), then the row groups are summed, 4 heads at a time.
// CHUNK (≤ WG) keys per chunk: the launcher shrinks it at short contexts to have more workgroups.
// For chunk c, query token i and head h = kvh*G + g it writes, over the keys it sees:
//   m = max_k s_k,  l = sum_k exp(s_k - m),  o[d] = sum_k exp(s_k - m) * V[k, d],
//   s_k = scale * dot(q[i, h, :], K[k, kvh, :])   (m = -inf, l = 0, o = 0 if it sees none).
// Query i (of n_q) sits at position kv_len - n_q + i and sees keys 0 .. kv_len - n_q + i.
// Layouts: q [n_q, n_heads, HD]; K, V [max_len, n_kv, HD] of KV_T (f32, KV_F16 f16: common/kv.glsl); part_o [n_q, n_heads, n_chunks, HD];
//          part_ml [n_q, n_heads, n_chunks] (m, l) — the layout attn_reduce merges.
// Nothing depends on the subgroup size (shared memory and barriers only). Loops over heads and
// over a row are [[unroll]]ed (G and HD are spec constants) so the per-head arrays stay in registers.
//
// Bindings: 0 q (vec4[]), 1 K (KV_T4[]), 2 V (KV_T4[]), 3 part_o (vec4[]), 4 part_ml (vec2[]);
//           DYN_LEN: 5 cache_len (uint[1]).
// Push: n_q, n_heads, n_kv, kv_len, n_chunks, scale. DYN_LEN (replayable steps): the cache length
// is read from the GPU, kv_len = min(cache_len[0] + n_q, push kv_len) (push kv_len = the capacity
// the caches were bound for); the grid covers the capacity and chunks past kv_len exit early.
// Grid: x = chunk, y = query token * n_kv + KV head. Spec: 0 WG, 1 HD, 2 G, 3 CHUNK.
// Subgroup: none — no subgroup operations
#extension GL_EXT_control_flow_attributes : require
#include "common/common.glsl"
#include "common/kv.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint HD = 128;
layout(constant_id = 2) const uint G = 8;
layout(constant_id = 3) const uint CHUNK = 128;
layout(push_constant) uniform Push {
    uint n_q;
    uint n_heads;
    uint n_kv;
    uint kv_len;
    uint n_chunks;
    float scale;
} pc;

layout(std430, binding = 0) readonly buffer Q { vec4 q[]; };
layout(std430, binding = 1) readonly buffer K { KV_T4 kc[]; };
layout(std430, binding = 2) readonly buffer V { KV_T4 vc[]; };
layout(std430, binding = 3) writeonly buffer PO { vec4 part_o[]; };
layout(std430, binding = 4) writeonly buffer PML { vec2 part_ml[]; };
#ifdef DYN_LEN
layout(std430, binding = 5) readonly buffer Len { uint cache_len[]; };
#endif

const uint H4 = HD / 4u;        // vec4s per row
const uint LPH = WG / G;        // softmax lanes per head
const uint NG = WG / H4;        // P·V row groups

// Scores: P = WG / CHUNK invocations per key, each dotting 1/P of the row (all WG invocations
// busy at short chunks); their partial sums meet in scp and are added in a fixed order.
const uint P = (H4 % (WG / CHUNK) == 0u) ? WG / CHUNK : 1u;
const uint DP = H4 / P;         // vec4s of a row per part
// P·V row groups are summed GB heads at a time (fewer barriers than one head at a time).
const uint GB = G < 4u ? G : 4u;

shared vec4 qs[G * H4];
shared float sc[G * CHUNK];     // [g][key]: scores, then probabilities
shared float scp[P * G * CHUNK]; // [part][g][key]: partial scores
shared float red[WG];
shared float hm[G];
shared float hl[G];
shared vec4 po[GB * WG];

#include "common/attn_chunk.glsl"

void main() {
    MARK(0);
    const uint tid = gl_LocalInvocationIndex;
    const uint c = gl_WorkGroupID.x;
    const uint i = gl_WorkGroupID.y / pc.n_kv, kvh = gl_WorkGroupID.y % pc.n_kv;
    const uint k0 = c * CHUNK;
#ifdef DYN_LEN
    const uint kv_len = min(cache_len[0] + pc.n_q, pc.kv_len);
#else
    const uint kv_len = pc.kv_len;
#endif
    const uint seen = kv_len - pc.n_q + i + 1u;
    const uint n = k0 < seen ? min(CHUNK, seen - k0) : 0u; // keys of this chunk the query sees
    const uint h0 = kvh * G;
    if (n == 0u) { // whole workgroup: nothing visible
        for (uint e = tid; e < G * H4; e += WG) {
            const uint g = e / H4;
            part_o[((i * pc.n_heads + h0 + g) * pc.n_chunks + c) * H4 + e % H4] = vec4(0.0);
        }
        if (tid < G) part_ml[(i * pc.n_heads + h0 + tid) * pc.n_chunks + c] = vec2(-1.0 / 0.0, 0.0);
        return;
    }
    for (uint e = tid; e < G * H4; e += WG) qs[e] = q[(i * pc.n_heads + h0) * H4 + e] * pc.scale;
    barrier();

    // Scores: invocation (part pp, key kk) dots its DP vec4s of key kk's row with all G heads.
    const uint row4 = pc.n_kv * H4; // vec4s per cache position
    const uint kk = tid % CHUNK, pp = tid / CHUNK;
    if (kk < n && pp < P) {
        const uint base = (k0 + kk) * row4 + kvh * H4 + pp * DP;
        float s[G];
        [[unroll]] for (uint g = 0; g < G; g++) s[g] = 0.0;
        [[unroll]] for (uint d = 0; d < DP; d++) {
            const vec4 kv = vec4(kc[base + d]);
            [[unroll]] for (uint g = 0; g < G; g++) s[g] += dot(qs[g * H4 + pp * DP + d], kv);
        }
        [[unroll]] for (uint g = 0; g < G; g++) scp[(pp * G + g) * CHUNK + kk] = s[g];
    }
    barrier();
    for (uint e = tid; e < G * CHUNK; e += WG) {
        if (e % CHUNK < n) {
            float t = scp[e];
            for (uint q = 1u; q < P; q++) t += scp[q * G * CHUNK + e];
            sc[e] = t;
        }
    }
    barrier();

    // Softmax statistics and P·V (common/attn_chunk.glsl).
    const float l = attn_chunk_softmax(n);
    if (tid < G) part_ml[(i * pc.n_heads + h0 + tid) * pc.n_chunks + c] = vec2(hm[tid], l);
    vec4 acc[G];
    attn_chunk_pv(n, k0, kvh, row4, 0u, acc);
    // Sum the row groups, GB heads at a time.
    [[unroll]] for (uint g0 = 0; g0 < G; g0 += GB) {
        barrier(); // po is free (and, for g0 = 0, sc is no longer written)
        [[unroll]] for (uint b = 0; b < GB; b++) {
            if (g0 + b < G) po[b * WG + tid] = acc[g0 + b];
        }
        barrier();
        for (uint e = tid; e < GB * H4; e += WG) {
            const uint b = e / H4, d4 = e % H4;
            if (g0 + b < G) {
                vec4 t = vec4(0.0);
                for (uint r = 0; r < NG; r++) t += po[b * WG + r * H4 + d4];
                part_o[((i * pc.n_heads + h0 + g0 + b) * pc.n_chunks + c) * H4 + d4] = t;
            }
        }
    }
    MARK(3);
}
