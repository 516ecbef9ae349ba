#version 450
// MoE routing, one workgroup per token: p = softmax(logits[t, :]) in f32 over all n_experts, the k
// largest (ties → lower expert index; chosen on the logits, which order exactly like p), then
// w_j = p_j / Σ_selected p (flags bit 0, norm_topk_prob) or w_j = p_j. Slot j holds the j-th largest.
// Bindings: 0 logits (float[n_tokens*n_experts]), 1 ids (uint[n_tokens*k]), 2 weights (float[n_tokens*k]).
// Push: n_experts, k (1..MAX_K), n_tokens, flags, grid_x. Spec: 0 WG.
// Each of the k rounds: per invocation the best of its experts not yet chosen, then subgroupMax of
// the value and subgroupMin of the index among the lanes holding it, then the subgroups' winners in
// shared memory (any subgroup size).
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(push_constant) uniform Push { uint n_experts; uint k; uint n_tokens; uint flags; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer L { float logits[]; };
layout(std430, binding = 1) writeonly buffer I { uint ids[]; };
layout(std430, binding = 2) writeonly buffer W { float weights[]; };

#include "common/reduce.glsl"

#define MAX_K 8u
#define NONE 0xffffffffu
shared float sg_val[WG];
shared uint sg_idx[WG];
shared float sel_val[MAX_K];
shared uint sel_idx[MAX_K];

void main() {
    const uint t = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (t >= pc.n_tokens) return; // uniform over the workgroup
    const uint tid = gl_LocalInvocationIndex, n = pc.n_experts, off = t * n;
    const float NEG_INF = -1.0 / 0.0;

    float m = NEG_INF;
    for (uint i = tid; i < n; i += WG) m = max(m, logits[off + i]);
    m = wg_max(m);
    float s = 0.0;
    for (uint i = tid; i < n; i += WG) s += exp(logits[off + i] - m);
    const float total = wg_sum(s);

    for (uint j = 0; j < pc.k; j++) {
        float bv = NEG_INF;
        uint bi = NONE;
        for (uint i = tid; i < n; i += WG) {
            bool taken = false;
            for (uint q = 0; q < j; q++) taken = taken || sel_idx[q] == i;
            const float v = logits[off + i];
            if (!taken && (bi == NONE || v > bv)) { bv = v; bi = i; } // ascending i: ties keep the lower
        }
        const float sv = subgroupMax(bi != NONE ? bv : NEG_INF);
        const uint si = subgroupMin(bi != NONE && bv == sv ? bi : NONE);
        if (subgroupElect()) {
            sg_val[gl_SubgroupID] = sv;
            sg_idx[gl_SubgroupID] = si;
        }
        barrier();
        if (tid == 0u) {
            float best = NEG_INF;
            uint idx = NONE;
            for (uint g = 0; g < gl_NumSubgroups; g++) {
                const uint gi = sg_idx[g];
                const float gv = sg_val[g];
                if (gi != NONE && (idx == NONE || gv > best || (gv == best && gi < idx))) { best = gv; idx = gi; }
            }
            sel_val[j] = best;
            sel_idx[j] = idx;
        }
        barrier();
    }

    if (tid == 0u) {
        float sum = 0.0;
        for (uint j = 0; j < pc.k; j++) sum += exp(sel_val[j] - m) / total;
        for (uint j = 0; j < pc.k; j++) {
            const float p = exp(sel_val[j] - m) / total;
            ids[t * pc.k + j] = sel_idx[j];
            weights[t * pc.k + j] = (pc.flags & 1u) != 0u ? p / sum : p;
        }
    }
}
