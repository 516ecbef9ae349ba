#version 450
// Rotate-half RoPE in place on rows row_off .. row_off + n of x (`[rows, heads, head_dim]`): row
// row_off + t is at position pos0 + t; pair (j, j + head_dim/2) rotates by (pos0 + t) · theta^(−2j/head_dim).
// Bindings: 0 x. Push: n, heads, head_dim, row_off, pos0, theta. Spec: 0 WG. Grid-stride over pairs.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"
#include "common/rope.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint n; uint heads; uint head_dim; uint row_off; uint pos0; float theta; } pc;

layout(std430, binding = 0) buffer X { float x[]; };

void main() {
    const uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * WG;
    const uint first = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationIndex;
    const uint half_d = pc.head_dim / 2;
    const uint total = pc.n * pc.heads * half_d;
    for (uint i = first; i < total; i += stride) {
        const uint j = i % half_d;
        const uint hrow = i / half_d; // t * heads + h
        const uint t = hrow / pc.heads;
        const uint base = (pc.row_off * pc.heads + hrow) * pc.head_dim;
        const float inv = pow(pc.theta, -2.0 * float(j) / float(pc.head_dim));
        const float ang = float(pc.pos0 + t) * inv;
        // Reduced mod 2π exactly, so long streams (positions in the thousands) lose nothing
        // beyond the angle's own rounding.
        const vec2 cs = rope_cos_sin(ang);
        const float c = cs.x;
        const float s = cs.y;
        const float x0 = x[base + j];
        const float x1 = x[base + j + half_d];
        x[base + j] = x0 * c - x1 * s;
        x[base + j + half_d] = x1 * c + x0 * s;
    }
}
