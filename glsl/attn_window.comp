#version 450
// Causal sliding-window attention over a key/value buffer with history (Code2Wav's
// pre-transformer): q `[n, heads, hd]`; k, v `[hist + n, kv_heads, hd]` where rows hist − valid ..
// hist − 1 are earlier positions still in the window and row hist + t is query t's own key. Query
// t sees key rows max(hist − valid, hist + t + 1 − window) ..= hist + t; softmax in f32, online.
// One invocation per (query, head); head_dim ≤ 128. Bindings: 0 q, 1 k, 2 v, 3 o (`[n, heads, hd]`).
// Push: n, heads, kv_heads, head_dim, hist, valid, window, scale. Spec: 0 WG.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(push_constant) uniform Push {
    uint n; uint heads; uint kv_heads; uint head_dim;
    uint hist; uint valid; uint window; float scale;
} pc;

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 3) writeonly buffer O { float o[]; };

void main() {
    const uint id = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationIndex;
    if (id >= pc.n * pc.heads) return;
    const uint t = id / pc.heads;
    const uint h = id % pc.heads;
    const uint kh = h / (pc.heads / pc.kv_heads);
    const uint hd = pc.head_dim;
    const uint qb = id * hd;
    const uint self_row = pc.hist + t;
    const uint lo = max(pc.hist - pc.valid, self_row + 1 >= pc.window ? self_row + 1 - pc.window : 0u);
    float acc[128];
    for (uint e = 0; e < hd; e++) acc[e] = 0.0;
    float mx = -1e30;
    float sum = 0.0;
    for (uint j = lo; j <= self_row; j++) {
        const uint kb = (j * pc.kv_heads + kh) * hd;
        float sc = 0.0;
        for (uint e = 0; e < hd; e++) sc += q[qb + e] * k[kb + e];
        sc *= pc.scale;
        const float nm = max(mx, sc);
        const float corr = exp(mx - nm);
        const float pw = exp(sc - nm);
        sum = sum * corr + pw;
        for (uint e = 0; e < hd; e++) acc[e] = acc[e] * corr + pw * v[kb + e];
        mx = nm;
    }
    const float inv = 1.0 / sum;
    for (uint e = 0; e < hd; e++) o[qb + e] = acc[e] * inv;
}
