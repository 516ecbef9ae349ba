#version 450
// Decode attention for one token in ONE dispatch (replayable steps): the work of rope_qk_norm_store,
// attn_decode (GQA-shared, DYN_LEN) and attn_reduce together.
//   * Prologue, every workgroup with keys: the raw q of the G query heads of its KV head gets its
//     per-head RMSNorm (q_norm), the rotation of rope_qk_norm.comp at position p = cache_len[0] and
//     the attention scale, in shared memory. The workgroup whose chunk holds p also normalises and
//     rotates the raw k of its KV head (k_norm) and writes it, and the raw v, into the caches at p
//     (dropped when p ≥ kv_cap); its own reads of key p take them from shared memory / the input
//     (a cache read could miss the write), so the caches need no coherent loads.
//   * Scores, softmax statistics and P·V exactly as attn_decode.comp, partials to part_o/part_ml.
//   * The last workgroup of each KV head to finish (an atomic counter per KV head, reset by it for
//     the next step) merges the chunks holding keys as attn_reduce.comp does (log-sum-exp) and
//     writes out for its G heads.
// NO_MERGE: stop after the partials (attn_reduce.comp DYN_LEN merges them in a second dispatch):
// the q/k norm, RoPE and KV store stay in this kernel's prologue, so the split path needs two
// dispatches instead of three, and no workgroup waits for the others.
// kv_len = min(p + 1, kv_cap). Layouts: q, out [n_heads, HD]; k, v [n_kv, HD]; K, V [kv_cap, n_kv, HD]
// of KV_T (f32, KV_F16 f16: common/kv.glsl; the new key and value are used as the cache rounds them);
// part_o [n_heads, n_chunks, HD]; part_ml [n_heads, n_chunks]. What the merging workgroup reads of
// the others' writes is `coherent` and fenced by memoryBarrierBuffer.
//
// Bindings: 0 q (vec4[]), 1 k (float[]), 2 v (vec4[]), 3 q_w (float[HD]), 4 k_w (float[HD]),
//           5 pos (uint[3]: t, h, w), 6 K (KV_T4[]), 7 V (KV_T4[]), 8 part_o (vec4[]), 9 part_ml (vec2[]),
//           10 cache_len (uint[1]), 11 counters (uint[n_kv], zero between steps), 12 out (vec4[]).
// Push: n_heads, n_kv, kv_cap, n_chunks, scale, theta, section_h, section_w, eps.
// Grid: x = chunk, y = KV head. Spec: 0 WG, 1 HD, 2 G, 3 CHUNK (≤ WG).
// Subgroup: none — no subgroup operations
#extension GL_EXT_control_flow_attributes : require
#include "common/common.glsl"
#include "common/rope.glsl"
#include "common/kv.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint HD = 128;
layout(constant_id = 2) const uint G = 8;
layout(constant_id = 3) const uint CHUNK = 128;
layout(push_constant) uniform Push {
    uint n_heads;
    uint n_kv;
    uint kv_cap;
    uint n_chunks;
    float scale;
    float theta;
    uint section_h;
    uint section_w;
    float eps;
} pc;

layout(std430, binding = 0) readonly buffer Q { vec4 q[]; };
layout(std430, binding = 1) readonly buffer Kn { float kin[]; };
layout(std430, binding = 2) readonly buffer Vn { vec4 vin[]; };
layout(std430, binding = 3) readonly buffer QW { float q_w[]; };
layout(std430, binding = 4) readonly buffer KW { float k_w[]; };
layout(std430, binding = 5) readonly buffer Pos { uint pos[]; };
layout(std430, binding = 6) buffer K { KV_T4 kc[]; };
layout(std430, binding = 7) buffer V { KV_T4 vc[]; };
layout(std430, binding = 8) coherent buffer PO { vec4 part_o[]; };
layout(std430, binding = 9) coherent buffer PML { vec2 part_ml[]; };
layout(std430, binding = 10) readonly buffer Len { uint cache_len[]; };
layout(std430, binding = 11) coherent buffer Cnt { uint counters[]; };
layout(std430, binding = 12) writeonly buffer O { vec4 o[]; };

const uint H4 = HD / 4u;        // vec4s per row
const uint HALF = HD / 2u;      // rotation pairs per row
const uint LPH = WG / G;        // softmax lanes per head
const uint NG = WG / H4;        // P·V row groups

shared vec4 qs[G * H4];
shared float sc[G * CHUNK];     // [g][key]: scores, then probabilities
shared float red[WG];
shared float hm[G];
shared float hsc[G];
shared vec4 po[WG];
shared float kf[HD];
shared bool s_last;

#define ATTN_NEW_KEY 1
#include "common/attn_chunk.glsl"

// (cos, sin) of frequency j at the token's position, as rope_qk_norm.comp.
vec2 rope_cs(uint j, float l2theta) {
    return rope_cos_sin(rope_angle(float(pos[mrope_axis(j, pc.section_h, pc.section_w)]), j, HD, l2theta));
}

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint c = gl_WorkGroupID.x;
    const uint kvh = gl_WorkGroupID.y;
    const uint k0 = c * CHUNK;
    const uint p = cache_len[0];
    const uint kv_len = min(p + 1u, pc.kv_cap);
    const uint n = k0 < kv_len ? min(CHUNK, kv_len - k0) : 0u; // keys of this chunk
    const uint h0 = kvh * G;
    const uint row4 = pc.n_kv * H4; // vec4s per cache position
    const float l2theta = log2(pc.theta);
    if (n > 0u) { // uniform over the workgroup
        // q of the G heads: RMSNorm, rotation, scale.
        for (uint e = tid; e < G * H4; e += WG) qs[e] = q[h0 * H4 + e];
        barrier();
        if (tid < G) {
            float ss = 0.0;
            for (uint d4 = 0; d4 < H4; d4++) ss += dot(qs[tid * H4 + d4], qs[tid * H4 + d4]);
            hsc[tid] = inversesqrt(ss / float(HD) + pc.eps);
        }
        barrier();
        for (uint e = tid; e < G * HALF; e += WG) {
            const uint g = e / HALF, j = e % HALF;
            const uint a = g * HD + j, b = a + HALF;
            const float x0 = qs[a / 4u][a % 4u] * hsc[g] * q_w[j];
            const float x1 = qs[b / 4u][b % 4u] * hsc[g] * q_w[j + HALF];
            const vec2 cs = rope_cs(j, l2theta);
            qs[a / 4u][a % 4u] = (x0 * cs.x - x1 * cs.y) * pc.scale;
            qs[b / 4u][b % 4u] = (x1 * cs.x + x0 * cs.y) * pc.scale;
        }
        // The new key and value, by the workgroup whose chunk holds p.
        if (p >= k0 && p < k0 + CHUNK && p < pc.kv_cap) {
            for (uint d = tid; d < HD; d += WG) kf[d] = kin[kvh * HD + d];
            barrier();
            if (tid == 0u) {
                float ss = 0.0;
                for (uint d = 0; d < HALF; d++) ss += kf[d] * kf[d] + kf[d + HALF] * kf[d + HALF];
                red[0] = inversesqrt(ss / float(HD) + pc.eps);
            }
            barrier();
            const float ks = red[0];
            // One rotation pair per invocation (HALF ≤ WG, checked by the launcher).
            float r0 = 0.0, r1 = 0.0;
            if (tid < HALF) {
                const float x0 = kf[tid] * ks * k_w[tid], x1 = kf[tid + HALF] * ks * k_w[tid + HALF];
                const vec2 cs = rope_cs(tid, l2theta);
                r0 = x0 * cs.x - x1 * cs.y;
                r1 = x1 * cs.x + x0 * cs.y;
            }
            barrier(); // every kf read before it is overwritten
            if (tid < HALF) { // as the cache holds them
                kf[tid] = KV_ROUND(r0);
                kf[tid + HALF] = KV_ROUND(r1);
            }
            barrier();
            for (uint d4 = tid; d4 < H4; d4 += WG) {
                kc[p * row4 + kvh * H4 + d4] = KV_T4(vec4(kf[4u * d4], kf[4u * d4 + 1u], kf[4u * d4 + 2u], kf[4u * d4 + 3u]));
                vc[p * row4 + kvh * H4 + d4] = KV_T4(vin[kvh * H4 + d4]);
            }
        }
        barrier();

        // Scores: one key per invocation, all G heads (key p from shared memory).
        if (tid < n) {
            const uint base = (k0 + tid) * row4 + kvh * H4;
            const bool newk = k0 + tid == p;
            float s[G];
            [[unroll]] for (uint g = 0; g < G; g++) s[g] = 0.0;
            [[unroll]] for (uint d4 = 0; d4 < H4; d4++) {
                vec4 kv = vec4(kc[base + d4]);
                if (newk) kv = vec4(kf[4u * d4], kf[4u * d4 + 1u], kf[4u * d4 + 2u], kf[4u * d4 + 3u]);
                [[unroll]] for (uint g = 0; g < G; g++) s[g] += dot(qs[g * H4 + d4], kv);
            }
            [[unroll]] for (uint g = 0; g < G; g++) sc[g * CHUNK + tid] = s[g];
        }
        barrier();

        // Softmax statistics and P·V as attn_decode.comp (common/attn_chunk.glsl), key p's value
        // from the input.
        const float l = attn_chunk_softmax(n);
        if (tid < G) part_ml[(h0 + tid) * pc.n_chunks + c] = vec2(hm[tid], l);
        vec4 acc[G];
        attn_chunk_pv(n, k0, kvh, row4, p, acc);
        [[unroll]] for (uint g = 0; g < G; g++) {
            barrier();
            po[tid] = acc[g];
            barrier();
            if (tid < H4) {
                vec4 t = vec4(0.0);
                for (uint r = 0; r < NG; r++) t += po[r * H4 + tid];
                part_o[((h0 + g) * pc.n_chunks + c) * H4 + tid] = t;
            }
        }
        memoryBarrierBuffer();
    }
#ifdef NO_MERGE
}
#else
    barrier();
    if (tid == 0u) s_last = atomicAdd(counters[kvh], 1u) == pc.n_chunks - 1u;
    barrier();
    if (!s_last) return;
    memoryBarrierBuffer();
    // The merge of attn_reduce.comp over the chunks holding keys, for the G heads: first every
    // head's maximum over its chunks (all (head, chunk) pairs loaded at once, reduced in shared
    // memory), then each output vec4 sums its chunks 16 loads at a time.
    const uint nc = (kv_len + CHUNK - 1u) / CHUNK;
    if (tid < G) hm[tid] = -1.0 / 0.0;
    barrier();
    for (uint g = 0; g < G; g++) {
        float m = -1.0 / 0.0;
        for (uint cc = tid; cc < nc; cc += WG) m = max(m, part_ml[(h0 + g) * pc.n_chunks + cc].x);
        red[tid] = m;
        barrier();
        if (tid == 0u) {
            float mm = -1.0 / 0.0;
            for (uint j = 0; j < min(WG, nc); j++) mm = max(mm, red[j]);
            hm[g] = mm;
        }
        barrier();
    }
    for (uint e = tid; e < G * H4; e += WG) {
        const uint g = e / H4, d4 = e % H4;
        const uint mb = (h0 + g) * pc.n_chunks;
        const float m = hm[g];
        float l = 0.0;
        vec4 t = vec4(0.0);
        uint cc = 0u;
        for (; cc + 16u <= nc; cc += 16u) {
            vec2 ml[16];
            vec4 ov[16];
            [[unroll]] for (uint u = 0; u < 16u; u++) {
                ml[u] = part_ml[mb + cc + u];
                ov[u] = part_o[(mb + cc + u) * H4 + d4];
            }
            [[unroll]] for (uint u = 0; u < 16u; u++) {
                const float w = exp(ml[u].x - m);
                l += w * ml[u].y;
                t += w * ov[u];
            }
        }
        for (; cc < nc; cc++) {
            const vec2 ml = part_ml[mb + cc];
            const float w = exp(ml.x - m);
            l += w * ml.y;
            t += w * part_o[(mb + cc) * H4 + d4];
        }
        o[(h0 + g) * H4 + d4] = t * (1.0 / l);
    }
    if (tid == 0u) atomicExchange(counters[kvh], 0u);
}
#endif
