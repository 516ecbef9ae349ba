#version 450
// Softmax per row of n: y[r, i] = exp(s*x[r,i] - max) / sum_j exp(s*x[r,j] - max), s = scale.
// Bindings: 0 x (float[rows*n]), 1 y (float[rows*n]). Push: n, rows, scale, grid_x.
// One workgroup per row. Spec: 0 WG.
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint n; uint rows; float scale; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };

#include "common/reduce.glsl"

void main() {
    const uint row = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (row >= pc.rows) return;
    const uint tid = gl_LocalInvocationIndex;
    const uint off = row * pc.n;
    float m = -1.0 / 0.0;
    for (uint i = tid; i < pc.n; i += WG) m = max(m, pc.scale * x[off + i]);
    m = wg_max(m);
    float s = 0.0;
    for (uint i = tid; i < pc.n; i += WG) s += exp(pc.scale * x[off + i] - m);
    const float inv = 1.0 / wg_sum(s);
    for (uint i = tid; i < pc.n; i += WG) y[off + i] = exp(pc.scale * x[off + i] - m) * inv;
}
