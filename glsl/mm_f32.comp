#version 450
// Y[n, m] = sum_k W[m, k] * X[n, k] in f32, for small f32 weights applied to many rows (the MoE
// routers during prefill: M = experts, K = hidden ≤ 4096). One workgroup per activation row n
// stages X[n, :] in shared memory; invocations stride over the M outputs.
// Bindings: 0 W (float[M*K]), 1 X (float[N*K]), 2 Y (float[N*M]). Push: K, M, N, grid_x.
// Spec: 0 WG. Row n = y * grid_x + x.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(push_constant) uniform Push { uint K; uint M; uint N; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer Wt { float w[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

const uint MAX_K = 4096u;
shared float xs[MAX_K];

void main() {
    const uint n = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (n >= pc.N) return; // uniform over the workgroup
    const uint tid = gl_LocalInvocationIndex;
    for (uint k = tid; k < pc.K; k += WG) xs[k] = x[n * pc.K + k];
    barrier();
    for (uint m = tid; m < pc.M; m += WG) {
        float s = 0.0;
        for (uint k = 0; k < pc.K; k++) s += w[m * pc.K + k] * xs[k];
        y[n * pc.M + m] = s;
    }
}
