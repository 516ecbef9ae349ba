#version 450
// Sampling, step 2: one workgroup picks the token from the prepared logits z[0..n) (sample_prep).
//  1. Top-k threshold by radix select on order-preserving keys (key(f) = bits ^ 0x80000000 for
//     f >= +0, ~bits for negatives, 0 for NaN; larger key = larger float): three counting passes over
//     z (digits of 11, 11 and 10 bits, shared-memory histogram of 2048 bins) find the key T of the
//     k-th largest element and how many elements equal to T to take (`need`).
//  2. Gather (one more pass over z): every key > T, and the first `need` keys == T in index order
//     (an exclusive scan per chunk, only when some ties at T are left out), into shared memory;
//     then a bitonic sort by (key descending, index ascending): k candidates, a total order.
//  3. e_i = exp(z_i - z_0); inclusive Hillis-Steele scan c_i = e_0 + ... + e_i (fixed pairing, the
//     same for every subgroup size). Top-p: m = 1 + #{i < k : c_i < top_p * c_{k-1}} (the smallest
//     prefix whose mass reaches top_p, clamped to [1, k]); top_p = 1 keeps all k.
//  4. u in [0, 1) from a counter-based hash of (seed, step) (below); target = u * c_{m-1};
//     the token is candidate #{i < m : c_i <= target} (clamped to m - 1). Counts, not searches, so
//     a non-monotone rounding of c cannot give two answers.
// If z_0 is -inf or NaN (nothing finite) the token is candidate 0 (the lowest index among the best).
// RNG: h = mix(step + 0x9E3779B9), h = mix(h ^ seed_lo), h = mix(h ^ seed_hi), u = (h >> 8) * 2^-24,
// with mix the 32-bit integer hash x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b;
// x ^= x >> 16. The same (seed, step) always gives the same u (exact in f32).
// Chunked loops index elements by gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID so the
// tie scan follows index order for any subgroup size (WG = 256 is a multiple of every subgroup size,
// so subgroups are full).
//
// Bindings: 0 z (float[n]), 1 out (uint[1]). Push: n, k (1..=KMAX, <= n), top_p, seed_lo, seed_hi,
// step. Spec: 0 WG (a power of two, 256..=2048: it divides the 2048 bins and covers KMAX in 4
// strides). Shared memory: 2048 + 2 * KMAX + 3 * WG words (19 KiB at WG = 256).
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push {
    uint n;
    uint k;
    float top_p;
    uint seed_lo;
    uint seed_hi;
    uint step;
} pc;

layout(std430, binding = 0) readonly buffer Z { float z[]; };
layout(std430, binding = 1) writeonly buffer Out { uint outv[]; };

#include "common/reduce.glsl"

const uint KMAX = 1024u;
const uint NB = 2048u;
shared uint hist[NB];   // radix histogram; later the scan c (float bits)
shared uint ckey[KMAX]; // candidates: keys, then indices
shared uint cidx[KMAX];
shared uint part[WG];   // per-invocation bin sums (suffix scan)
shared uint sub_tot[WG];
shared uint sel_bin, sel_need, sel_cnt, n_cand;

uint fkey(float f) {
    if (isnan(f)) return 0u;
    const uint b = floatBitsToUint(f);
    return (b & 0x80000000u) != 0u ? ~b : (b | 0x80000000u);
}

float key_to_float(uint k) {
    return uintBitsToFloat((k & 0x80000000u) != 0u ? (k & 0x7FFFFFFFu) : ~k);
}

uint mix32(uint x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

// (ka, ia) comes before (kb, ib): larger key, then lower index.
bool before(uint ka, uint ia, uint kb, uint ib) {
    return ka > kb || (ka == kb && ia < ib);
}

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint n = pc.n, K = pc.k;

    // 1. Radix select of the K-th largest key.
    uint prefix = 0u, pmask = 0u, need = K, cnt_t = 0u;
    for (uint pass = 0u; pass < 3u; pass++) {
        const uint shift = pass == 0u ? 21u : (pass == 1u ? 10u : 0u);
        const uint nb = pass == 2u ? 1024u : 2048u;
        for (uint b = tid; b < NB; b += WG) hist[b] = 0u;
        barrier();
        for (uint i = tid; i < n; i += WG) {
            const uint kk = fkey(z[i]);
            if ((kk & pmask) == prefix) atomicAdd(hist[(kk >> shift) & (nb - 1u)], 1u);
        }
        barrier();
        // Invocation t owns bins [t*per, (t+1)*per); suffix sums of the owners' totals.
        const uint per = NB / WG;
        uint s = 0u;
        for (uint j = 0u; j < per; j++) s += hist[tid * per + j];
        part[tid] = s;
        barrier();
        for (uint off = 1u; off < WG; off <<= 1) {
            const uint v = tid + off < WG ? part[tid + off] : 0u;
            barrier();
            part[tid] += v;
            barrier();
        }
        // part[t] = sum of owners >= t; above = sum of owners > t.
        const uint above = part[tid] - s;
        if (above < need && need <= part[tid]) {
            uint acc = above;
            for (uint j = per; j-- > 0u;) {
                const uint h = hist[tid * per + j];
                if (acc + h >= need) {
                    sel_bin = tid * per + j;
                    sel_need = need - acc;
                    sel_cnt = h;
                    break;
                }
                acc += h;
            }
        }
        barrier();
        prefix |= sel_bin << shift;
        pmask |= (nb - 1u) << shift;
        need = sel_need;
        cnt_t = sel_cnt;
        barrier();
    }
    const uint T = prefix;

    // 2. Gather the K candidates, then sort them.
    if (tid == 0u) n_cand = 0u;
    barrier();
    const uint lane = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
    const uint stride = gl_NumSubgroups * gl_SubgroupSize;
    const bool ordered = need < cnt_t; // some ties at T stay out: take the lowest indices
    uint eq_seen = 0u;
    for (uint base = 0u; base < n; base += stride) {
        const uint i = base + lane;
        const uint kk = i < n ? fkey(z[i]) : 0u;
        const bool gt = i < n && kk > T;
        const bool eq = i < n && kk == T;
        bool take = gt || eq;
        if (ordered) {
            const uint r = subgroupExclusiveAdd(eq ? 1u : 0u);
            const uint tot = subgroupAdd(eq ? 1u : 0u);
            if (subgroupElect()) sub_tot[gl_SubgroupID] = tot;
            barrier();
            uint off = eq_seen, all = 0u;
            for (uint sg = 0u; sg < gl_NumSubgroups; sg++) {
                if (sg < gl_SubgroupID) off += sub_tot[sg];
                all += sub_tot[sg];
            }
            barrier();
            take = gt || (eq && off + r < need);
            eq_seen += all;
        }
        if (take) {
            const uint slot = atomicAdd(n_cand, 1u);
            ckey[slot] = kk;
            cidx[slot] = i;
        }
    }
    barrier();
    uint kp = 1u;
    while (kp < K) kp <<= 1;
    for (uint i = K + tid; i < kp; i += WG) {
        ckey[i] = 0u;
        cidx[i] = 0xFFFFFFFFu;
    }
    barrier();
    for (uint size = 2u; size <= kp; size <<= 1) {
        for (uint st = size >> 1; st > 0u; st >>= 1) {
            for (uint t = tid; t < kp / 2u; t += WG) {
                const uint a = 2u * st * (t / st) + (t % st), b = a + st;
                const uint ka = ckey[a], ia = cidx[a], kb = ckey[b], ib = cidx[b];
                const bool swap = (a & size) == 0u ? before(kb, ib, ka, ia) : before(ka, ia, kb, ib);
                if (swap) {
                    ckey[a] = kb;
                    cidx[a] = ib;
                    ckey[b] = ka;
                    cidx[b] = ia;
                }
            }
            barrier();
        }
    }

    // 3. Softmax numerators and their inclusive scan (in hist, as float bits).
    const float z0 = key_to_float(ckey[0]);
    if (!(z0 > -1.0 / 0.0)) { // -inf or NaN: nothing to draw from
        if (tid == 0u) outv[0] = cidx[0];
        return;
    }
    for (uint i = tid; i < kp; i += WG) {
        const bool live = i < K && ckey[i] != 0u; // NaN candidates weigh nothing
        hist[i] = floatBitsToUint(live ? exp(key_to_float(ckey[i]) - z0) : 0.0);
    }
    barrier();
    for (uint off = 1u; off < kp; off <<= 1) {
        float v[4]; // WG >= KMAX / 4
        for (uint j = 0u; j < 4u; j++) {
            const uint i = tid + j * WG;
            v[j] = (i < kp && i >= off) ? uintBitsToFloat(hist[i - off]) : 0.0;
        }
        barrier();
        for (uint j = 0u; j < 4u; j++) {
            const uint i = tid + j * WG;
            if (i < kp && i >= off) hist[i] = floatBitsToUint(uintBitsToFloat(hist[i]) + v[j]);
        }
        barrier();
    }

    // 4. Top-p cut, draw, pick.
    uint m = K;
    if (pc.top_p < 1.0) {
        const float thr = pc.top_p * uintBitsToFloat(hist[K - 1u]);
        float c = 0.0;
        for (uint i = tid; i < K; i += WG) c += uintBitsToFloat(hist[i]) < thr ? 1.0 : 0.0;
        m = min(uint(wg_sum(c)) + 1u, K);
    }
    uint h = mix32(pc.step + 0x9E3779B9u);
    h = mix32(h ^ pc.seed_lo);
    h = mix32(h ^ pc.seed_hi);
    const float u = float(h >> 8) * (1.0 / 16777216.0);
    const float target = u * uintBitsToFloat(hist[m - 1u]);
    float c = 0.0;
    for (uint i = tid; i < m; i += WG) c += uintBitsToFloat(hist[i]) <= target ? 1.0 : 0.0;
    const uint pick = min(uint(wg_sum(c)), m - 1u);
    if (tid == 0u) outv[0] = cidx[pick];
}
