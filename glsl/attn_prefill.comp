#version 450
// Prefill attention: causal GQA attention of n query tokens at positions p0 .. p0 + n - 1 against
// a KV cache (KV_T: f32, KV_F16 f16, common/kv.glsl) already holding p0 + n entries. Query i,
// head h (KV head h / (n_heads / n_kv)):
//   out[i, h, :] = sum_{k <= p0 + i} softmax_k(scale * dot(q[i, h, :], K[k, kvh, :])) V[k, kvh, :]
// Layouts: q, out [n, n_heads, HD]; K, V [max_len, n_kv, HD].
// One workgroup per (block of BQ queries, head); it walks key tiles of BK up to the block's last
// visible key, staging Q (pre-scaled), K (rows padded to HD + 1 against bank conflicts) and V in
// shared memory, with an online softmax (running max m, sum l, rescale alpha per query row).
// Invocation e-mapping: scores e = tid + r*WG -> (e / BK, e % BK); outputs -> (e / HD, e % HD), so
// nothing depends on the subgroup size. Needs WG | BQ*BK and WG | BQ*HD (HD a multiple of 8).
//
// Bindings: 0 q (float[]), 1 K (KV_T[]), 2 V (KV_T[]), 3 out (float[n*n_heads*HD]).
// Push: n, n_heads, n_kv, p0, scale. Grid: x = query block, y = head.
// Spec: 0 WG (128), 1 HD (head_dim).
// Subgroup: none — no subgroup operations
#include "common/common.glsl"
#include "common/kv.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint HD = 128;
layout(push_constant) uniform Push { uint n; uint n_heads; uint n_kv; uint p0; float scale; } pc;

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { KV_T kc[]; };
layout(std430, binding = 2) readonly buffer V { KV_T vc[]; };
layout(std430, binding = 3) writeonly buffer O { float o[]; };

#define BQ 16u
#define BK 16u
const uint KS = HD + 1u;         // padded K row stride in shared memory
const uint RS = BQ * BK / WG;    // scores per invocation
const uint RO = BQ * HD / WG;    // outputs per invocation

shared float Qs[BQ * HD];
shared float Ks[BK * KS];
shared float Vs[BK * HD];
shared float S[BQ * BK];
shared float m_s[BQ];
shared float l_s[BQ];
shared float alpha_s[BQ];

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint q_first = gl_WorkGroupID.x * BQ;
    const uint h = gl_WorkGroupID.y;
    const uint kvh = h / (pc.n_heads / pc.n_kv);
    const uint kstride = pc.n_kv * HD;
    for (uint e = tid; e < BQ * HD; e += WG) {
        const uint t = q_first + e / HD;
        Qs[e] = t < pc.n ? q[(t * pc.n_heads + h) * HD + e % HD] * pc.scale : 0.0;
    }
    if (tid < BQ) {
        m_s[tid] = -1.0 / 0.0;
        l_s[tid] = 0.0;
    }
    float acc[RO];
    for (uint r = 0; r < RO; r++) acc[r] = 0.0;
    const uint kv_end = pc.p0 + min(q_first + BQ, pc.n); // keys the block needs
    for (uint kt = 0; kt < kv_end; kt += BK) {
        barrier(); // the previous tile is consumed (and Q, m, l are initialised)
        for (uint e = tid; e < BK * HD; e += WG) {
            const uint kj = e / HD, d = e % HD;
            const uint kpos = kt + kj;
            const bool ok = kpos < kv_end;
            Ks[kj * KS + d] = ok ? float(kc[kpos * kstride + kvh * HD + d]) : 0.0;
            Vs[e] = ok ? float(vc[kpos * kstride + kvh * HD + d]) : 0.0;
        }
        barrier();
        for (uint r = 0; r < RS; r++) {
            const uint e = tid + r * WG;
            const uint qi = e / BK, kj = e % BK;
            const uint kpos = kt + kj, qpos = pc.p0 + q_first + qi;
            float s = 0.0;
            for (uint d = 0; d < HD; d++) s += Qs[qi * HD + d] * Ks[kj * KS + d];
            S[e] = (kpos <= qpos && kpos < kv_end) ? s : -1.0 / 0.0;
        }
        barrier();
        if (tid < BQ) {
            const float mo = m_s[tid];
            float mx = mo;
            for (uint j = 0; j < BK; j++) mx = max(mx, S[tid * BK + j]);
            float ps = 0.0;
            for (uint j = 0; j < BK; j++) {
                const float p = exp(S[tid * BK + j] - mx);
                S[tid * BK + j] = p;
                ps += p;
            }
            const float a = exp(mo - mx); // 0 on the first tile (mo = -inf); key 0 is always seen
            alpha_s[tid] = a;
            m_s[tid] = mx;
            l_s[tid] = l_s[tid] * a + ps;
        }
        barrier();
        for (uint r = 0; r < RO; r++) {
            const uint e = tid + r * WG;
            const uint qi = e / HD, d = e % HD;
            float t = acc[r] * alpha_s[qi];
            for (uint j = 0; j < BK; j++) t += S[qi * BK + j] * Vs[j * HD + d];
            acc[r] = t;
        }
    }
    for (uint r = 0; r < RO; r++) {
        const uint e = tid + r * WG;
        const uint qi = e / HD;
        const uint t = q_first + qi;
        if (t < pc.n) o[(t * pc.n_heads + h) * HD + e % HD] = acc[r] / l_s[qi];
    }
}
