// MoE top-k routing of one token by one workgroup (shared by moe_route and the fused
// moe_gate_up). Include after the `logits` buffer, the spec constant WG and common/reduce.glsl.
// moe_topk: the k (≤ MOE_MAX_K) largest of logits[off .. off + n) into sel_idx / sel_val in
// descending order, ties → lower index (chosen on the logits, which order exactly like the
// softmax); returns (max, Σ exp(l − max)) for the softmax. Each round: per invocation the best of
// its experts not yet chosen, subgroupMax of the value and subgroupMin of the index among the
// lanes holding it, then the subgroups' winners in shared memory (any subgroup size).
// moe_weight: slot j's softmax probability, divided by the chosen ones' sum when renormalising.
// Every invocation must call moe_topk (it has barriers); moe_weight reads shared memory only.
// (A barrier-free variant where every subgroup routes on its own was slower on an H200.)
#define MOE_MAX_K 8u
#define MOE_NONE 0xffffffffu
shared float sg_val[WG];
shared uint sg_idx[WG];
shared float sel_val[MOE_MAX_K];
shared uint sel_idx[MOE_MAX_K];

vec2 moe_topk(uint off, uint n, uint k) {
    const uint tid = gl_LocalInvocationIndex;
    const float NEG_INF = -1.0 / 0.0;
    float m = NEG_INF;
    for (uint i = tid; i < n; i += WG) m = max(m, logits[off + i]);
    m = wg_max(m);
    float s = 0.0;
    for (uint i = tid; i < n; i += WG) s += exp(logits[off + i] - m);
    const float total = wg_sum(s);
    for (uint j = 0; j < k; j++) {
        float bv = NEG_INF;
        uint bi = MOE_NONE;
        for (uint i = tid; i < n; i += WG) {
            bool taken = false;
            for (uint q = 0; q < j; q++) taken = taken || sel_idx[q] == i;
            const float v = logits[off + i];
            if (!taken && (bi == MOE_NONE || v > bv)) { bv = v; bi = i; } // ascending i: ties keep the lower
        }
        const float sv = subgroupMax(bi != MOE_NONE ? bv : NEG_INF);
        const uint si = subgroupMin(bi != MOE_NONE && bv == sv ? bi : MOE_NONE);
        if (subgroupElect()) {
            sg_val[gl_SubgroupID] = sv;
            sg_idx[gl_SubgroupID] = si;
        }
        barrier();
        if (tid == 0u) {
            float best = NEG_INF;
            uint idx = MOE_NONE;
            for (uint g = 0; g < gl_NumSubgroups; g++) {
                const uint gi = sg_idx[g];
                const float gv = sg_val[g];
                if (gi != MOE_NONE && (idx == MOE_NONE || gv > best || (gv == best && gi < idx))) { best = gv; idx = gi; }
            }
            sel_val[j] = best;
            sel_idx[j] = idx;
        }
        barrier();
    }
    return vec2(m, total);
}

float moe_weight(uint j, uint k, vec2 ms, bool renorm) {
    float sum = 0.0;
    for (uint q = 0; q < k; q++) sum += exp(sel_val[q] - ms.x) / ms.y;
    const float p = exp(sel_val[j] - ms.x) / ms.y;
    return renorm ? p / sum : p;
}
