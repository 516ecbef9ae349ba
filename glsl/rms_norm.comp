#version 450
// RMSNorm per row: y[r, i] = x[r, i] / sqrt(mean_i(x[r, i]^2) + eps) * w[i].
// Bindings: 0 x (float[rows*n]), 1 w (float[n]), 2 y (float[rows*n]).
// Push: n, rows, eps. One workgroup per row (row = y * grid_x + x). Spec: 0 WG.
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint n; uint rows; float eps; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Wt { float w[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

#include "common/reduce.glsl"

void main() {
    const uint row = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (row >= pc.rows) return;
    const uint tid = gl_LocalInvocationIndex;
    const uint off = row * pc.n;
    float ss = 0.0;
    for (uint i = tid; i < pc.n; i += WG) {
        const float v = x[off + i];
        ss += v * v;
    }
    const float scale = inversesqrt(wg_sum(ss) / float(pc.n) + pc.eps);
    for (uint i = tid; i < pc.n; i += WG) y[off + i] = x[off + i] * scale * w[i];
}
