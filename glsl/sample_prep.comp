#version 450
// Sampling, step 1: the logits as the selection sees them, into scratch (the logits stay untouched).
//   default (prep):  z[i] = -inf                 if sup_lo <= i < sup_hi and i != sup_allow,
//                    z[i] = logits[i] * inv_t    otherwise;
//   PENALTY:         for each previous token t = prev[j] < n that is not suppressed,
//                    z[t] = (l > 0 ? l * inv_pen : l * pen) * inv_t with l = logits[t]
//                    (llama.cpp / transformers repetition penalty: divide positive logits, multiply
//                    the others; applied once per distinct token because every writer of z[t]
//                    stores the same value, through atomicExchange so the repeats are not a race).
// inv_t = 1 / temperature (1 for greedy), inv_pen = 1 / pen, both computed on the CPU: every product
// is one correctly rounded f32 multiply (`precise`, no contraction), so a CPU reference reproduces z
// bit for bit.
//
// Prep also zeroes the three radix histograms of sample.comp (uint[3 * 2048]).
//
// Bindings: prep: 0 logits (float[n]), 1 z (float[n]), 2 histograms (uint[6144]); penalty:
// 0 logits (float[n]), 1 prev (uint[n_prev]), 2 z (uint[n], float bits). Push: n, n_prev, sup_lo,
// sup_hi, sup_allow, pen, inv_pen, inv_t. Spec: 0 WG. Prep is grid-stride over x
// (gl_NumWorkGroups.x * WG); penalty has one invocation per previous token.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push {
    uint n;
    uint n_prev;
    uint sup_lo;
    uint sup_hi;
    uint sup_allow;
    float pen;
    float inv_pen;
    float inv_t;
} pc;

const uint HIST_WORDS = 3u * 2048u;

layout(std430, binding = 0) readonly buffer L { float logits[]; };
#ifdef PENALTY
layout(std430, binding = 1) readonly buffer P { uint prev[]; };
layout(std430, binding = 2) buffer Z { uint zbits[]; };
#else
layout(std430, binding = 1) writeonly buffer Z { float z[]; };
layout(std430, binding = 2) writeonly buffer G { uint ghist[]; }; // sample.comp's histograms
#endif

bool suppressed(uint i) {
    return i >= pc.sup_lo && i < pc.sup_hi && i != pc.sup_allow;
}

void main() {
#ifdef PENALTY
    const uint j = gl_GlobalInvocationID.x;
    if (j >= pc.n_prev) return;
    const uint t = prev[j];
    if (t >= pc.n || suppressed(t)) return;
    const float l = logits[t];
    precise float p = l > 0.0 ? l * pc.inv_pen : l * pc.pen;
    precise float v = p * pc.inv_t;
    atomicExchange(zbits[t], floatBitsToUint(v));
#else
    if (gl_WorkGroupID.x == 0u) {
        for (uint j = gl_LocalInvocationIndex; j < HIST_WORDS; j += WG) ghist[j] = 0u;
    }
    const uint stride = gl_NumWorkGroups.x * WG;
    for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) {
        precise float v = logits[i] * pc.inv_t;
        z[i] = suppressed(i) ? -1.0 / 0.0 : v;
    }
#endif
}
