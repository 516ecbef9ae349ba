#version 450
// Quantises activations to Q8_1 for the int8 dot-product kernels: per block of 32 floats,
// d = max|x| / 127, q = roundEven(x / d) (0 when d = 0), s = d * sum(q).
// Bindings: 0 x (float[n_blocks*32]), 1 xq (uint[n_blocks*8], 4 signed bytes each, little end first),
//           2 xd (vec2[n_blocks] = (d, s), kept in f32).
// Push: n_blocks. Spec: 0 WG. One invocation per block, grid-stride.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"
#include "common/q8_1_block.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(push_constant) uniform Push { uint n_blocks; } pc;

layout(std430, binding = 0) readonly buffer X { vec4 x[]; };
layout(std430, binding = 1) writeonly buffer XQ { uint xq[]; };
layout(std430, binding = 2) writeonly buffer XD { vec2 xd[]; };

void main() {
    const uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * WG;
    const uint first = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationIndex;
    for (uint blk = first; blk < pc.n_blocks; blk += stride) {
        vec4 v[8];
        float amax = 0.0;
        for (uint j = 0; j < 8u; j++) {
            v[j] = x[blk * 8u + j];
            amax = max(amax, q81_amax4(v[j]));
        }
        const float d = q81_scale(amax);
        const float id = q81_inv(d);
        int sum = 0;
        for (uint j = 0; j < 8u; j++) {
            const ivec4 q = q81_round(v[j], id);
            sum += q.x + q.y + q.z + q.w;
            xq[blk * 8u + j] = q81_pack(q);
        }
        xd[blk] = vec2(d, d * float(sum));
    }
}
