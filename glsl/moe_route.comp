#version 450
// MoE routing, one workgroup per token: p = softmax(logits[t, :]) in f32 over all n_experts, the k
// largest (ties → lower expert index; chosen on the logits, which order exactly like p), then
// w_j = p_j / Σ_selected p (flags bit 0, norm_topk_prob) or w_j = p_j. Slot j holds the j-th largest.
// The selection is moe_topk.glsl (shared with the fused moe_gate_up).
// Bindings: 0 logits (float[n_tokens*n_experts]), 1 ids (uint[n_tokens*k]), 2 weights (float[n_tokens*k]).
// Push: n_experts, k (1..MOE_MAX_K), n_tokens, flags, grid_x. Spec: 0 WG.
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(push_constant) uniform Push { uint n_experts; uint k; uint n_tokens; uint flags; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer L { float logits[]; };
layout(std430, binding = 1) writeonly buffer I { uint ids[]; };
layout(std430, binding = 2) writeonly buffer W { float weights[]; };

#include "common/reduce.glsl"
#include "moe_topk.glsl"

void main() {
    const uint t = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (t >= pc.n_tokens) return; // uniform over the workgroup
    const vec2 ms = moe_topk(t * pc.n_experts, pc.n_experts, pc.k, 1.0, true);
    if (gl_LocalInvocationIndex == 0u) {
        for (uint j = 0; j < pc.k; j++) {
            ids[t * pc.k + j] = sel_idx[j];
            weights[t * pc.k + j] = moe_weight(j, pc.k, ms, (pc.flags & 1u) != 0u);
        }
    }
}
