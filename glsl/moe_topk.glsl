// MoE top-k routing of one token by one workgroup (shared by moe_route and the fused
// moe_gate_up). Include after the `logits` buffer, the spec constant WG and common/reduce.glsl.
// moe_topk: the k (≤ MOE_MAX_K) largest of scale · logits[off .. off + n) (n ≤ MOE_MAX_E) into sel_idx /
// sel_val in descending order, ties → lower index (chosen on the logits, which order exactly like
// the softmax); returns (max, Σ exp(l − max)) for the softmax.
// The logits are staged in shared memory once; each invocation then ranks its experts by counting
// the experts ahead of them (greater, or equal with a lower index: a strict total order, so the
// ranks are a permutation) with broadcast reads, and an expert of rank j < k is slot j. Two barriers in all, instead of two per selected expert. Slots stay (expert 0, −inf) if NaNs break
// the order.
// With `weights` false (uniform per workgroup: one that only needs the ids) the softmax's max and
// sum are skipped (returns 0) and a barrier publishes the selection.
// moe_weight: slot j's softmax probability, divided by the chosen ones' sum when renormalising.
// Every invocation must call moe_topk (it has barriers); moe_weight reads shared memory only.
#define MOE_MAX_K 8u
#define MOE_MAX_E 512u
shared float sel_val[MOE_MAX_K];
shared uint sel_idx[MOE_MAX_K];
shared float moe_lg_s[MOE_MAX_E]; // the logits

float moe_lg(uint i) { return moe_lg_s[i]; }
void moe_lg_put(uint i, float v) { moe_lg_s[i] = v; }

// moe_topk_staged: the same with moe_lg[0 .. n) already written by the caller (no barrier yet).
vec2 moe_topk_staged(uint n, uint k, bool weights) {
    const uint tid = gl_LocalInvocationIndex;
    const float NEG_INF = -1.0 / 0.0;
    for (uint j = tid; j < MOE_MAX_K; j += WG) {
        sel_val[j] = NEG_INF;
        sel_idx[j] = 0u;
    }
    barrier();
    float mx = NEG_INF;
    for (uint i = tid; i < n; i += WG) {
        const float v = moe_lg(i);
        mx = max(mx, v);
        uint rank = 0u;
        for (uint e = 0; e < n; e++) {
            const float u = moe_lg_s[e];
            rank += uint(u > v || (u == v && e < i));
        }
        if (rank < k) {
            sel_val[rank] = v;
            sel_idx[rank] = i;
        }
    }
    if (!weights) {
        barrier();
        return vec2(0.0);
    }
    const float m = wg_max(mx);
    float s = 0.0;
    for (uint i = tid; i < n; i += WG) s += exp(moe_lg(i) - m);
    const float total = wg_sum(s);
    return vec2(m, total);
}

vec2 moe_topk(uint off, uint n, uint k, float scale, bool weights) {
    for (uint i = gl_LocalInvocationIndex; i < n; i += WG) moe_lg_put(i, logits[off + i] * scale);
    return moe_topk_staged(n, k, weights);
}

float moe_weight(uint j, uint k, vec2 ms, bool renorm) {
    float sum = 0.0;
    for (uint q = 0; q < k; q++) sum += exp(sel_val[q] - ms.x) / ms.y;
    const float p = exp(sel_val[j] - ms.x) / ms.y;
    return renorm ? p / sum : p;
}
