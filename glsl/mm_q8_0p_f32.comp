#version 450
// Y[n, m] = Σ_k W[m, k] · X[n, k]: planar Q8_0 weights (src/layout.rs) times N float activation
// rows, in f32 (no activation quantisation: the float counterpart of mm_q8_0p_q8_1, used where
// Q8_1's ~1% would matter or the device lacks int8 dot products). Output row-major [N, M].
// Tiling: a workgroup of 256 computes a 64 (m) × 64 (n) tile; per 32-wide k block the weights are
// dequantised (int8 · f16 scale) and both tiles staged in shared memory (row stride 33 against
// bank conflicts); every invocation accumulates a 4 × 4 sub-tile.
// Bindings: 0 qs (uint[], 8 per block), 1 d (uint16[]), 2 X (float[N*K]), 3 Y (float[N*M]).
// Push: K, M, N. Dispatch: (ceil(M/64), ceil(N/64), 1).
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

layout(local_size_x = 256) in;
layout(push_constant) uniform Push { uint K; uint M; uint N; } pc;

layout(std430, binding = 0) readonly buffer QS { uint qs[]; };
layout(std430, binding = 1) readonly buffer D { uint16_t dw[]; };
layout(std430, binding = 2) readonly buffer X { float x[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

const uint BM = 64u, BN = 64u, LD = 33u;
shared float sw[BM * LD];
shared float sx[BN * LD];

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint m0 = gl_WorkGroupID.x * BM, n0 = gl_WorkGroupID.y * BN;
    const uint tm = tid % 16u, tn = tid / 16u;
    const uint nb = pc.K / 32u;
    float acc[4][4];
    for (uint a = 0; a < 4u; a++) for (uint c = 0; c < 4u; c++) acc[a][c] = 0.0;

    for (uint b = 0; b < nb; b++) {
        // Weights: 64 rows × 8 words of 4 int8 quants, 2 words per invocation.
        for (uint i = tid; i < BM * 8u; i += 256u) {
            const uint r = i / 8u, j = i % 8u, m = m0 + r;
            vec4 v = vec4(0.0);
            if (m < pc.M) {
                const uint q = qs[(m * nb + b) * 8u + j];
                const float d = f16_bits_to_float(dw[m * nb + b]);
                v = d * vec4(float(int(q << 24) >> 24), float(int(q << 16) >> 24), float(int(q << 8) >> 24),
                             float(int(q) >> 24));
            }
            sw[r * LD + 4u * j] = v.x;
            sw[r * LD + 4u * j + 1u] = v.y;
            sw[r * LD + 4u * j + 2u] = v.z;
            sw[r * LD + 4u * j + 3u] = v.w;
        }
        // Activations: 64 rows × 32 floats, 8 per invocation.
        for (uint i = tid; i < BN * 32u; i += 256u) {
            const uint c = i / 32u, j = i % 32u, n = n0 + c;
            sx[c * LD + j] = n < pc.N ? x[n * pc.K + b * 32u + j] : 0.0;
        }
        barrier();
        for (uint j = 0; j < 32u; j++) {
            float wv[4], xv[4];
            for (uint a = 0; a < 4u; a++) wv[a] = sw[(tm + 16u * a) * LD + j];
            for (uint c = 0; c < 4u; c++) xv[c] = sx[(tn + 16u * c) * LD + j];
            for (uint a = 0; a < 4u; a++)
                for (uint c = 0; c < 4u; c++) acc[a][c] += wv[a] * xv[c];
        }
        barrier();
    }
    for (uint c = 0; c < 4u; c++) {
        const uint n = n0 + tn + 16u * c;
        if (n >= pc.N) continue;
        for (uint a = 0; a < 4u; a++) {
            const uint m = m0 + tm + 16u * a;
            if (m < pc.M) y[n * pc.M + m] = acc[a][c];
        }
    }
}
