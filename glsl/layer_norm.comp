#version 450
// LayerNorm per row: y[r, i] = (x[r, i] − mean) / sqrt(var + eps) · w[i] + b[i] (biased variance).
// Bindings: 0 x, 1 w, 2 b, 3 y. Push: n, rows, eps, grid_x. One workgroup per row. Spec: 0 WG.
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint n; uint rows; float eps; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Wt { float w[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

#include "common/reduce.glsl"

void main() {
    const uint row = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (row >= pc.rows) return;
    const uint tid = gl_LocalInvocationIndex;
    const uint off = row * pc.n;
    float s = 0.0;
    for (uint i = tid; i < pc.n; i += WG) s += x[off + i];
    const float mean = wg_sum(s) / float(pc.n);
    float ss = 0.0;
    for (uint i = tid; i < pc.n; i += WG) {
        const float dv = x[off + i] - mean;
        ss += dv * dv;
    }
    const float inv = inversesqrt(wg_sum(ss) / float(pc.n) + pc.eps);
    for (uint i = tid; i < pc.n; i += WG) y[off + i] = (x[off + i] - mean) * inv * w[i] + b[i];
}
