#version 450
// Sampling, steps 3-4: the token from the prepared logits z[0..n) (sample_prep).
//  1. HIST (sample_hist_f32, many workgroups, pass = 0, 1, 2): radix counting on order-preserving
//     keys (key(f) = bits ^ 0x80000000 for f >= +0, ~bits for negatives, 0 for NaN; larger key =
//     larger float), digits of 11, 11 and 10 bits: each workgroup first resolves the earlier
//     passes from their global histograms (prefix of the k-th largest key), counts the digit of the
//     keys matching it over its share of z in a shared 2048-bin histogram, and adds it to
//     ghist[pass] (zeroed by sample_prep). The last pass leaves the key T of the k-th largest
//     element and how many elements equal to T to take (`need`).
// Default (sample_f32, one workgroup):
//  2. Resolve T from the histograms; gather (one pass over z) every key > T and the first `need`
//     keys == T in index order (an exclusive scan per chunk, only when some ties at T are left
//     out) into shared memory;
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
// Counting and fast gather loops keep UNROLL = 4 vec4 loads per invocation in flight; a subgroup whose
// lanes fall in one bin adds them with one atomic. The tie-ordered gather (only when ties at T are
// cut) indexes elements by gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID, so its scan
// follows index order for any subgroup size (WG is a multiple of every subgroup size, so subgroups
// are full).
// Cost (H200, vocab 152064): 3 x ~7 us of histogram passes, 30-43 us of selection (its gather
// pass over z by one workgroup dominates); see docs/kernels.md.
//
// Bindings: 0 z (float[n] padded to vec4[ceil(n/4)]; the padding is never used), 1 histograms
// (uint[3][2048]; HIST: read-write), 2 out (uint[1], not in HIST). Push: n, k (1..=KMAX, <= n),
// top_p, seed_lo, seed_hi, step, pass (HIST). Spec: 0 WG (a power of two, 256..=1024: it divides
// the 2048 bins and covers KMAX in 4 strides). Shared memory: 2048 + 2 * KMAX + 2 * WG words
// (24 KiB at WG = 1024).
// Subgroup: full — the tie-ordered gather indexes elements by gl_SubgroupID·gl_SubgroupSize + lane and scans with subgroupExclusiveAdd, which covers the workgroup only with full subgroups (WG is a power of two ≥ 256, a multiple of every size up to 256); the reductions are common/reduce.glsl's
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
    uint pass; // HIST: which radix pass
} pc;

layout(std430, binding = 0) readonly buffer Z { vec4 z4[]; }; // z padded to a multiple of 4
#ifdef HIST
layout(std430, binding = 1) buffer G { uint ghist[]; }; // [3][NB], zeroed by sample_prep
#else
layout(std430, binding = 1) readonly buffer G { uint ghist[]; };
layout(std430, binding = 2) writeonly buffer Out { uint outv[]; };
#ifdef STEP_BUFFER
// sample_step_f32: the RNG step is pc.step + stepv[0], so a recorded batch can be replayed with a
// fresh draw per replay (the host writes stepv).
layout(std430, binding = 3) readonly buffer StepV { uint stepv[]; };
#endif
#endif

#include "common/reduce.glsl"

const uint KMAX = 1024u;
const uint NB = 2048u;
const uint UNROLL = 4u;
shared uint hist[NB];   // radix histogram; later the scan c (float bits)
shared uint ckey[KMAX]; // candidates: keys, then indices
shared uint cidx[KMAX];
shared uint part[WG];   // per-invocation bin sums (suffix scan)
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

// Shift and bin count of radix pass p (digits of 11, 11 and 10 bits, high first).
uint pass_shift(uint p) { return p == 0u ? 21u : (p == 1u ? 10u : 0u); }
uint pass_bins(uint p) { return p == 2u ? 1024u : 2048u; }

// With hist[] holding pass p's counts (of the keys matching prefix under pmask), finds the bin of
// the need-th largest and narrows prefix / pmask / need; cnt_t = that bin's count. Uniform.
void resolve(uint p, inout uint prefix, inout uint pmask, inout uint need, inout uint cnt_t) {
    const uint tid = gl_LocalInvocationIndex;
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
    prefix |= sel_bin << pass_shift(p);
    pmask |= (pass_bins(p) - 1u) << pass_shift(p);
    need = sel_need;
    cnt_t = sel_cnt;
    barrier();
}

// Passes 0..p from the global histograms.
void resolve_upto(uint p, inout uint prefix, inout uint pmask, inout uint need, inout uint cnt_t) {
    for (uint q = 0u; q < p; q++) {
        for (uint b = gl_LocalInvocationIndex; b < NB; b += WG) hist[b] = ghist[q * NB + b];
        barrier();
        resolve(q, prefix, pmask, need, cnt_t);
    }
}

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint n = pc.n, n4 = (pc.n + 3u) / 4u, K = pc.k;
    uint prefix = 0u, pmask = 0u, need = K, cnt_t = 0u;

#ifdef HIST
    // 1. One radix counting pass (pc.pass) over this workgroup's share of z, into ghist[pass].
    const uint p = pc.pass;
    resolve_upto(p, prefix, pmask, need, cnt_t);
    for (uint b = tid; b < NB; b += WG) hist[b] = 0u;
    barrier();
    const uint shift = pass_shift(p), nb = pass_bins(p);
    const uint stride = gl_NumWorkGroups.x * WG;
    for (uint base = gl_WorkGroupID.x * WG + tid; base < n4; base += UNROLL * stride) {
        vec4 v[UNROLL]; // loads in flight together
        for (uint u = 0u; u < UNROLL; u++) v[u] = base + u * stride < n4 ? z4[base + u * stride] : vec4(0.0);
        for (uint e = 0u; e < 4u * UNROLL; e++) {
            const uint i = (base + (e >> 2) * stride) * 4u + (e & 3u);
            const uint kk = fkey(v[e >> 2][e & 3u]);
            if (i < n && (kk & pmask) == prefix) atomicAdd(hist[(kk >> shift) & (nb - 1u)], 1u);
        }
    }
    barrier();
    for (uint b = tid; b < nb; b += WG) {
        if (hist[b] != 0u) atomicAdd(ghist[p * NB + b], hist[b]);
    }
#else
    // 1. The K-th largest key from the three histograms.
    resolve_upto(3u, prefix, pmask, need, cnt_t);
    const uint T = prefix;

    // 2. Gather the K candidates, then sort them.
    if (tid == 0u) n_cand = 0u;
    barrier();
    const uint lane = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
    const uint stride = gl_NumSubgroups * gl_SubgroupSize;
    const bool ordered = need < cnt_t; // some ties at T stay out: take the lowest indices
    uint eq_seen = 0u;
    if (!ordered) { // every key >= T is taken: no order needed
        for (uint base = tid; base < n4; base += UNROLL * WG) {
            vec4 v[UNROLL];
            for (uint u = 0u; u < UNROLL; u++) v[u] = base + u * WG < n4 ? z4[base + u * WG] : vec4(0.0);
            for (uint e = 0u; e < 4u * UNROLL; e++) {
                const uint i = (base + (e >> 2) * WG) * 4u + (e & 3u);
                const uint kk = fkey(v[e >> 2][e & 3u]);
                if (i < n && kk >= T) {
                    const uint slot = atomicAdd(n_cand, 1u);
                    ckey[slot] = kk;
                    cidx[slot] = i;
                }
            }
        }
    }
    for (uint base = 0u; ordered && base < n; base += stride) {
        const uint i = base + lane;
        const uint kk = i < n ? fkey(z4[i >> 2][i & 3u]) : 0u;
        const bool gt = i < n && kk > T;
        const bool eq = i < n && kk == T;
        bool take;
        {
            const uint r = subgroupExclusiveAdd(eq ? 1u : 0u);
            const uint tot = subgroupAdd(eq ? 1u : 0u);
            if (subgroupElect()) part[gl_SubgroupID] = tot;
            barrier();
            uint off = eq_seen, all = 0u;
            for (uint sg = 0u; sg < gl_NumSubgroups; sg++) {
                if (sg < gl_SubgroupID) off += part[sg];
                all += part[sg];
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
#ifdef STEP_BUFFER
    uint h = mix32(pc.step + stepv[0] + 0x9E3779B9u);
#else
    uint h = mix32(pc.step + 0x9E3779B9u);
#endif
    h = mix32(h ^ pc.seed_lo);
    h = mix32(h ^ pc.seed_hi);
    const float u = float(h >> 8) * (1.0 / 16777216.0);
    const float target = u * uintBitsToFloat(hist[m - 1u]);
    float c = 0.0;
    for (uint i = tid; i < m; i += WG) c += uintBitsToFloat(hist[i]) <= target ? 1.0 : 0.0;
    const uint pick = min(uint(wg_sum(c)), m - 1u);
    if (tid == 0u) outv[0] = cidx[pick];
#endif
}
