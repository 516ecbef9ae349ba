#version 450
// Sums the k slots of grouped expert outputs with their routing weights (prefill):
//   y[t, m] = (flags bit 0: res[t, m] +) Σ_j w[t, j] · o[t*k + j, m].
// res may alias y (each element is read, then written, by one invocation).
// Bindings: 0 o (float[n_tokens*k*M]), 1 w (float[n_tokens*k]), 2 res, 3 y (float[n_tokens*M]).
// Push: M, k, n (= n_tokens*M), flags. Spec: 0 WG. One invocation per output, grid-stride.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint M; uint k; uint n; uint flags; } pc;

layout(std430, binding = 0) readonly buffer O { float o[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) readonly buffer RES { float res[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

void main() {
    const uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * WG;
    for (uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationIndex; i < pc.n; i += stride) {
        const uint t = i / pc.M, m = i - t * pc.M;
        float s = 0.0;
        for (uint j = 0; j < pc.k; j++) s += w[t * pc.k + j] * o[(t * pc.k + j) * pc.M + m];
        y[i] = (pc.flags & 1u) != 0u ? res[i] + s : s;
    }
}
