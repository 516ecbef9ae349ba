#version 450
// SnakeBeta per channel over time-major rows: y[(y_off + t)·c + ch] = v + ib[ch] · sin²(a[ch] · v),
// v = x[(x_off + t)·c + ch], with a = exp(alpha) and ib = 1 / (exp(beta) + 1e-9) precomputed
// (params = [a[0..c], ib[0..c]]). Bindings: 0 x, 1 params, 2 y. Push: n (rows), c, x_off, y_off.
// Spec: 0 WG. Grid-stride over a 2-D grid.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint n; uint c; uint x_off; uint y_off; } pc;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer P { float prm[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

void main() {
    const uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * WG;
    const uint first = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationIndex;
    const uint total = pc.n * pc.c;
    for (uint i = first; i < total; i += stride) {
        const uint ch = i % pc.c;
        const float v = x[pc.x_off * pc.c + i];
        const float sn = sin(prm[ch] * v);
        y[pc.y_off * pc.c + i] = v + prm[pc.c + ch] * sn * sn;
    }
}
