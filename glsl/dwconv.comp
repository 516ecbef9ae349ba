#version 450
// Depthwise causal conv1d over time-major rows (ConvNeXt `dwconv`, groups = channels):
//   y[t·c + ch] = b[ch] + Σ_j w[ch·k + j] · x[(x_off + t − (k−1−j))·c + ch]
// with x_off ≥ k − 1 history rows before row 0. Bindings: 0 x, 1 w ([c, k]), 2 b, 3 y.
// Push: n (rows), c, k, x_off. Spec: 0 WG. Grid-stride.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint n; uint c; uint k; uint x_off; } pc;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Wt { float w[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

void main() {
    const uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * WG;
    const uint first = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationIndex;
    const uint total = pc.n * pc.c;
    for (uint i = first; i < total; i += stride) {
        const uint ch = i % pc.c;
        const uint t = i / pc.c;
        float s = b[ch];
        for (uint j = 0; j < pc.k; j++) s += w[ch * pc.k + j] * x[(pc.x_off + t + j + 1 - pc.k) * pc.c + ch];
        y[i] = s;
    }
}
