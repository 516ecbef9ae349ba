#version 450
// y[m] = sum_k W[m, k] * x[k] with W in Q8_0 and x already quantised to Q8_1 (quantize_q8_1):
// per 8-weight chunk two dotPacked4x8EXT, scaled by d_w * d_x of the 32-block.
// Bindings: 0 W (uint16 words, Q8_0 rows), 1 xq (uvec2 per 8 values), 2 xd (vec2 per block),
//           3 y (float[M]).
// Push: K, M, grid_x. Spec: 0 WG, 1 ROWS (rows per workgroup).
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#extension GL_EXT_integer_dot_product : require
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint ROWS = 2;

layout(push_constant) uniform Push { uint K; uint M; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer W { uint16_t w[]; };
layout(std430, binding = 1) readonly buffer XQ { uvec2 xq[]; };
layout(std430, binding = 2) readonly buffer XD { vec2 xd[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

#include "common/reduce.glsl"

void main() {
    const uint group = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    const uint row0 = group * ROWS;
    if (row0 >= pc.M) return; // uniform over the workgroup
    const uint tid = gl_LocalInvocationIndex;
    const uint nb = pc.K / 32u;
    float acc[ROWS];
    for (uint r = 0; r < ROWS; r++) acc[r] = 0.0;
    for (uint c = tid; c < pc.K / 8u; c += WG) {
        const uint b = c >> 2, q = c & 3u;
        const uvec2 xv = xq[c];
        const float dx = xd[b].x;
        for (uint r = 0; r < ROWS; r++) {
            const uint row = min(row0 + r, pc.M - 1u);
            const uint base = (row * nb + b) * Q8_0_WORDS + 1u + q * 4u;
            const uint w0 = uint(w[base]) | (uint(w[base + 1u]) << 16);
            const uint w1 = uint(w[base + 2u]) | (uint(w[base + 3u]) << 16);
            const int s = dotPacked4x8EXT(int(w0), int(xv.x)) + dotPacked4x8EXT(int(w1), int(xv.y));
            acc[r] += float(s) * f16_bits_to_float(w[(row * nb + b) * Q8_0_WORDS]) * dx;
        }
    }
    for (uint r = 0; r < ROWS; r++) {
        const float t = wg_sum(acc[r]);
        if (tid == 0 && row0 + r < pc.M) y[row0 + r] = t;
    }
}
