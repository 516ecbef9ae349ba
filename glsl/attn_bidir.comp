#version 450
// Bidirectional attention inside fixed windows (the AudioTower, spec §4.2 step 6): tokens are cut
// into consecutive windows of `window` tokens (the last one shorter); each query attends to every
// key of its own window, no mask inside, nothing across windows.
//   o[t, h, :] = Σ_j softmax_j(scale · q[t, h, :]·k[j, h, :]) · v[j, h, :], j in t's window
// q, k, v, o: float[n_tok, heads, head_dim] (head_dim ≤ 128, window ≤ MAX_WIN).
// One workgroup per (token, head): scores in shared memory, max/sum by workgroup reductions, then
// one invocation per output dimension. Push: see Push. Spec: 0 WG.
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#include "common/common.glsl"

#define MAX_WIN 1024
#define MAX_HD 128

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(push_constant) uniform Push { uint n_tok; uint heads; uint head_dim; uint window; float scale; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 3) writeonly buffer O { float o[]; };

shared float s_q[MAX_HD];
shared float s_p[MAX_WIN];

#include "common/reduce.glsl"

void main() {
    const uint id = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (id >= pc.n_tok * pc.heads) return;
    const uint t = id / pc.heads;
    const uint h = id % pc.heads;
    const uint tid = gl_LocalInvocationIndex;
    const uint hd = pc.head_dim;
    const uint row = pc.heads * hd;
    const uint w0 = (t / pc.window) * pc.window;
    const uint len = min(pc.window, pc.n_tok - w0);
    for (uint d = tid; d < hd; d += WG) s_q[d] = q[t * row + h * hd + d];
    barrier();
    float m = -3.4e38;
    for (uint j = tid; j < len; j += WG) {
        const uint kb = (w0 + j) * row + h * hd;
        float s = 0.0;
        for (uint d = 0; d < hd; d++) s += s_q[d] * k[kb + d];
        s *= pc.scale;
        s_p[j] = s;
        m = max(m, s);
    }
    m = wg_max(m);
    float l = 0.0;
    for (uint j = tid; j < len; j += WG) {
        const float p = exp(s_p[j] - m);
        s_p[j] = p;
        l += p;
    }
    l = wg_sum(l);
    const float inv = 1.0 / l;
    for (uint d = tid; d < hd; d += WG) {
        float acc = 0.0;
        for (uint j = 0; j < len; j++) acc += s_p[j] * v[(w0 + j) * row + h * hd + d];
        o[t * row + h * hd + d] = acc * inv;
    }
}
