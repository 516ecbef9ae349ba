#version 450
// Argmax of a float vector, ties to the lowest index, in two passes (no atomics):
//   pass 1 (default): workgroup g reduces x[g*span .. min((g+1)*span, n)) to a (value, index)
//                     pair part[g] (the index as uint bits);
//   pass 2 (FINAL):   one workgroup reduces the n pairs part[0..n) and writes out[0] = index.
// Order: (v, i) beats (w, j) if v > w, or v == w and i < j. NaN never wins (compares false);
// an all-NaN input yields index 0xFFFFFFFF in pass 1 and is mapped to 0 in pass 2.
// Within an invocation items are scanned in increasing index and replaced only on a strictly
// greater value; subgroups use subgroupMax then subgroupMin over the indices holding it; shared
// memory indexed by gl_SubgroupID merges the subgroups (any subgroup size).
//
// Bindings: pass 1: 0 x (float[n]), 1 part (uvec2[groups]); pass 2: 0 part (uvec2[n]), 1 out (uint[1]).
// Push: n, span (items per workgroup, pass 1). Spec: 0 WG.
// Subgroup: any — subgroupMax/subgroupMin over the active lanes, subgroupElect, then shared memory indexed by gl_SubgroupID over gl_NumSubgroups: partial subgroups are fine
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint n; uint span; } pc;

#ifdef FINAL
layout(std430, binding = 0) readonly buffer P { uvec2 part[]; };
layout(std430, binding = 1) writeonly buffer Out { uint outv[]; };
#else
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer P { uvec2 part[]; };
#endif

shared float sv[WG];
shared uint si[WG];

const uint NONE = 0xFFFFFFFFu;

void main() {
    const uint tid = gl_LocalInvocationIndex;
    float bv = -1.0 / 0.0;
    uint bi = NONE;
#ifdef FINAL
    for (uint k = tid; k < pc.n; k += WG) {
        const uvec2 p = part[k];
        const float v = uintBitsToFloat(p.x);
        const uint i = p.y;
        if (i != NONE && (bi == NONE || v > bv || (v == bv && i < bi))) {
            bv = v;
            bi = i;
        }
    }
#else
    const uint g = gl_WorkGroupID.x;
    const uint lo = g * pc.span, hi = min(lo + pc.span, pc.n);
    for (uint k = lo + tid; k < hi; k += WG) {
        const float v = x[k];
        if (v > bv || (bi == NONE && v == bv)) { // -inf counts; NaN never does
            bv = v;
            bi = k;
        }
    }
#endif
    // Per subgroup: best value, then the lowest index holding it (bi == NONE: nothing found).
    const float sm = subgroupMax(bi == NONE ? -1.0 / 0.0 : bv);
    const uint smi = subgroupMin((bi != NONE && bv == sm) ? bi : NONE);
    if (subgroupElect()) {
        sv[gl_SubgroupID] = sm;
        si[gl_SubgroupID] = smi; // NONE iff no lane found anything
    }
    barrier();
    if (tid == 0u) {
        float v = -1.0 / 0.0;
        uint i = NONE;
        for (uint s = 0; s < gl_NumSubgroups; s++) {
            const uint j = si[s];
            if (j != NONE && (i == NONE || sv[s] > v || (sv[s] == v && j < i))) {
                v = sv[s];
                i = j;
            }
        }
#ifdef FINAL
        outv[0] = i == NONE ? 0u : i;
#else
        part[g] = uvec2(floatBitsToUint(v), i);
#endif
    }
}
