#version 450
// y[m] = sum_k W[m, k] * x[k] for m < M, k < K, with W in F32 or F16.
//
// Bindings: 0 W (F16: uint16; F32: float), 1 x (float[K]), 2 y (float[M]).
// Push: K, M, grid_x (workgroups along x; row group = y * grid_x + x).
// Variant NORM (F32 weights; the MoE router): x is the raw residual stream and every workgroup
// applies RMSNorm first, x[k] / sqrt(mean(x^2) + eps) * nw[k] (binding 3 nw, push eps), so the
// layer's separate rms_norm dispatch and its barrier go away.
// Spec: 0 WG (invocations), 1 ROWS (rows per workgroup).
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint ROWS = 2;

#ifdef NORM
layout(push_constant) uniform Push { uint K; uint M; uint grid_x; float eps; } pc;
#else
layout(push_constant) uniform Push { uint K; uint M; uint grid_x; } pc;
#endif

#if defined(WTYPE_F16)
layout(std430, binding = 0) readonly buffer W { uint16_t w[]; };
#else
layout(std430, binding = 0) readonly buffer W { float w[]; };
#endif
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
#ifdef NORM
layout(std430, binding = 3) readonly buffer NW { float nw[]; };
#endif

#include "common/reduce.glsl"

void main() {
    const uint group = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    const uint row0 = group * ROWS;
    if (row0 >= pc.M) return; // uniform over the workgroup
    const uint tid = gl_LocalInvocationIndex;
#ifdef NORM
    float ss = 0.0;
    for (uint k = tid; k < pc.K; k += WG) ss += x[k] * x[k];
    const float scale = inversesqrt(wg_sum(ss) / float(pc.K) + pc.eps);
#endif
    float acc[ROWS];
    for (uint r = 0; r < ROWS; r++) acc[r] = 0.0;

    for (uint k = tid; k < pc.K; k += WG) {
#ifdef NORM
        const float xv = x[k] * scale * nw[k];
#else
        const float xv = x[k];
#endif
        for (uint r = 0; r < ROWS; r++) {
            const uint row = min(row0 + r, pc.M - 1u);
#if defined(WTYPE_F16)
            acc[r] += f16_bits_to_float(w[row * pc.K + k]) * xv;
#else
            acc[r] += w[row * pc.K + k] * xv;
#endif
        }
    }
    for (uint r = 0; r < ROWS; r++) {
        const float t = wg_sum(acc[r]);
        if (tid == 0 && row0 + r < pc.M) y[row0 + r] = t;
    }
}
