#version 450
// Streaming kernels that measure the memory ceiling.
//   OP_COPY: dst[i] = src[i] for i < n (vec4s).
//   OP_READ: reads src[0..n) (vec4s); each invocation writes its sum to dst only if it equals a
//            value random data never gives, so the loads cannot be removed and writes cost nothing.
// Bindings: 0 src (vec4[]), 1 dst (vec4[]). Push: n (vec4 count). Spec: 0 WG. Grid-stride.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint n; } pc;

layout(std430, binding = 0) readonly buffer S { vec4 src[]; };
layout(std430, binding = 1) writeonly buffer D { vec4 dst[]; };

void main() {
    const uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * WG;
    const uint first = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationIndex;
#if defined(OP_COPY)
    for (uint i = first; i < pc.n; i += stride) dst[i] = src[i];
#else
    vec4 acc = vec4(0.0);
    for (uint i = first; i < pc.n; i += stride) acc += src[i];
    if (acc.x + acc.y + acc.z + acc.w == -1234567.0) dst[first] = acc;
#endif
}
