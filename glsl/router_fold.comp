#version 450
// The MoE router folded into the o-projection stage of a decode step (the router's own dependent
// dispatch goes away). The router reads rmsnorm(y) with y = x + W_o · a (x the residual stream
// before the o-projection, a the attention output), so by linearity
//   W_r · (g ⊙ y) = (W_r diag g) · x + (W_r diag g W_o) · a = R · [x ; a],
// with R = [W_r diag g | W_r diag g W_o] (f32 [E, K1 + K2], built once at load from the
// dequantised W_o). This kernel computes u = R · [x ; a]; the routing kernel multiplies u by
// 1/rms(y) (moe_gate_up.comp, flags bit 1), which it computes anyway for its own RMSNorm.
// It reads only x and a, so it runs beside the o-projection with no barrier between them.
//
// QUANT_A (int-dot path): the o-projection multiplies a quantised to Q8_1, so here a is replaced
// by that Q8_1 value (per 32-block d = max|a|/127, a ≈ d·round(a/d), exactly as quantize_q8_1):
// the logits are then those of the per-stage path in exact arithmetic, and routing agrees with it
// (and with the batched prefill) up to f32 rounding.
//
// One workgroup per row: its invocations stride over the row's vec4s, then one workgroup sum.
// Bindings: 0 R (vec4[E * (K1 + K2) / 4]), 1 x (vec4[K1/4]), 2 a (vec4[K2/4]), 3 u (float[E]).
// Push: K1, K2 (multiples of 4; QUANT_A: K2 a multiple of 32), rows, grid_x. Spec: 0 WG, 1 A4 (QUANT_A: K2 / 4).
// Subgroup: any — only common/reduce.glsl's wg_sum / wg_max (subgroupAdd/Max over the active lanes, subgroupElect, shared memory by gl_SubgroupID): any size, partial subgroups included
#include "common/common.glsl"
#include "common/q8_1_block.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint K1; uint K2; uint rows; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer R { vec4 rw[]; };
layout(std430, binding = 1) readonly buffer X { vec4 x[]; };
layout(std430, binding = 2) readonly buffer A { vec4 a[]; };
layout(std430, binding = 3) writeonly buffer U { float u[]; };

#include "common/reduce.glsl"

#ifdef QUANT_A
layout(constant_id = 1) const uint A4 = 1024; // vec4s of a (K2 / 4), sizes the staging
shared vec4 s_a[A4];
#endif

void main() {
    MARK(0);
    const uint row = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (row >= pc.rows) return; // uniform over the workgroup
    const uint n1 = pc.K1 / 4u, n2 = pc.K2 / 4u;
    const uint base = row * (n1 + n2);
#ifdef QUANT_A
    for (uint blk = gl_LocalInvocationIndex; blk < pc.K2 / 32u; blk += WG) {
        vec4 v[8];
        float amax = 0.0;
        for (uint j = 0; j < 8u; j++) {
            v[j] = a[blk * 8u + j];
            amax = max(amax, q81_amax4(v[j]));
        }
        const float d = q81_scale(amax);
        const float id = q81_inv(d);
        for (uint j = 0; j < 8u; j++) s_a[blk * 8u + j] = vec4(q81_round(v[j], id)) * d;
    }
    barrier();
#endif
    float s = 0.0;
    for (uint i = gl_LocalInvocationIndex; i < n1; i += WG) s += dot(rw[base + i], x[i]);
#ifdef QUANT_A
    for (uint i = gl_LocalInvocationIndex; i < n2; i += WG) s += dot(rw[base + n1 + i], s_a[i]);
#else
    for (uint i = gl_LocalInvocationIndex; i < n2; i += WG) s += dot(rw[base + n1 + i], a[i]);
#endif
    s = wg_sum(s);
    if (gl_LocalInvocationIndex == 0u) u[row] = s;
    MARK(3);
}
