#version 450
// Elementwise over n floats, b broadcast with period b_len (b_len = n: no broadcast):
//   OP_ADD: y[i] = a[i] + b[i % b_len]      OP_MUL: y[i] = a[i] * b[i % b_len]
//   OP_SILU_MUL: y[i] = silu(a[i]) * b[i % b_len], silu(v) = v / (1 + exp(-v))
//   OP_ADD_GELU: y[i] = gelu(a[i] + b[i % b_len]), exact-erf GELU (a bias then the activation)
// Bindings: 0 a, 1 b, 2 y. Push: n, b_len. Spec: 0 WG. Grid-stride over a 2-D grid.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"
#include "common/gelu.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint n; uint b_len; } pc;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

void main() {
    const uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * WG;
    const uint first = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationIndex;
    for (uint i = first; i < pc.n; i += stride) {
        const float av = a[i];
        const float bv = b[i % pc.b_len];
#if defined(OP_ADD)
        y[i] = av + bv;
#elif defined(OP_MUL)
        y[i] = av * bv;
#elif defined(OP_SILU_MUL)
        y[i] = av / (1.0 + exp(-av)) * bv;
#elif defined(OP_ADD_GELU)
        y[i] = gelu_erf(av + bv);
#else
#error "no OP_ defined"
#endif
    }
}
