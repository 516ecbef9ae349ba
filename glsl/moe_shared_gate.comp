#version 450
// Gate of a shared expert (Talker MoE, spec §6.3), as a one-expert routing for moe_down:
//   ids[t] = 0, weights[t] = sigmoid(Σ_i w[i] · x[t, i]),  w = shared_expert_gate [1, n] (f32).
// Bindings: 0 x (float[n_tokens*n]), 1 w (float[n]), 2 ids (uint[n_tokens]), 3 weights (float[n_tokens]).
// Push: n, n_tokens, grid_x. Spec: 0 WG. One workgroup per token.
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(push_constant) uniform Push { uint n; uint n_tokens; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) writeonly buffer I { uint ids[]; };
layout(std430, binding = 3) writeonly buffer WT { float weights[]; };

#include "common/reduce.glsl"

void main() {
    const uint t = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (t >= pc.n_tokens) return; // uniform over the workgroup
    const uint tid = gl_LocalInvocationIndex, off = t * pc.n;
    float s = 0.0;
    for (uint i = tid; i < pc.n; i += WG) s += w[i] * x[off + i];
    s = wg_sum(s);
    if (tid == 0u) {
        ids[t] = 0u;
        weights[t] = 1.0 / (1.0 + exp(-s));
    }
}
