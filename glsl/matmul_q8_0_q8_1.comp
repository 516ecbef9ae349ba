#version 450
// Y[n, m] = sum_k W[m, k] * X[n, k]: planar Q8_0 weights (src/layout.rs; M rows of K) times N
// activation rows quantised to Q8_1 (quantize_q8_1), for prefill. Output row-major [N, M].
// Tiling: a workgroup of 256 computes a 64 (m) × 64 (n) tile; per 32-wide k block both tiles are
// staged in shared memory as packed int8x4 words (row stride 9 words against bank conflicts) and
// every invocation accumulates a 4 × 4 sub-tile with dotPacked4x8EXT.
// Bindings: 0 qs (uint[], 8 per block: quants load as aligned 32-bit words), 1 d (uint16[]),
// 2 xq (uint, 8 per block), 3 xd (vec2 per block), 4 Y (float[N*M]).
// Push: K, M, N. Dispatch: (ceil(M/64), ceil(N/64), 1).
// Subgroup: none — no subgroup operations
#extension GL_EXT_integer_dot_product : require
#include "common/common.glsl"

layout(local_size_x = 256) in;
layout(push_constant) uniform Push { uint K; uint M; uint N; } pc;

layout(std430, binding = 0) readonly buffer QS { uint qs[]; };
layout(std430, binding = 1) readonly buffer D { uint16_t dw[]; };
layout(std430, binding = 2) readonly buffer XQ { uint xq[]; };
layout(std430, binding = 3) readonly buffer XD { vec2 xd[]; };
layout(std430, binding = 4) writeonly buffer Y { float y[]; };

const uint BM = 64u, BN = 64u, LD = 9u;
shared int sw[BM * LD];
shared int sx[BN * LD];
shared float sdw[BM];
shared float sdx[BN];

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint m0 = gl_WorkGroupID.x * BM, n0 = gl_WorkGroupID.y * BN;
    const uint tm = tid % 16u, tn = tid / 16u;
    const uint nb = pc.K / 32u;
    float acc[4][4];
    for (uint a = 0; a < 4u; a++) for (uint c = 0; c < 4u; c++) acc[a][c] = 0.0;

    for (uint b = 0; b < nb; b++) {
        for (uint i = tid; i < BM * 8u; i += 256u) {
            const uint r = i / 8u, j = i % 8u, m = m0 + r;
            int v = 0;
            if (m < pc.M) {
                v = int(qs[(m * nb + b) * 8u + j]);
            }
            sw[r * LD + j] = v;
        }
        for (uint i = tid; i < BN * 8u; i += 256u) {
            const uint c = i / 8u, j = i % 8u, n = n0 + c;
            sx[c * LD + j] = n < pc.N ? int(xq[(n * nb + b) * 8u + j]) : 0;
        }
        if (tid < BM) {
            const uint m = m0 + tid;
            sdw[tid] = m < pc.M ? f16_bits_to_float(dw[m * nb + b]) : 0.0;
        } else if (tid < BM + BN) {
            const uint n = n0 + tid - BM;
            sdx[tid - BM] = n < pc.N ? xd[n * nb + b].x : 0.0;
        }
        barrier();
        for (uint a = 0; a < 4u; a++) {
            const uint r = tm + 16u * a;
            int wv[8];
            for (uint j = 0; j < 8u; j++) wv[j] = sw[r * LD + j];
            for (uint c = 0; c < 4u; c++) {
                const uint col = tn + 16u * c;
                int s = 0;
                for (uint j = 0; j < 8u; j++) s = dotPacked4x8AccSatEXT(wv[j], sx[col * LD + j], s);
                acc[a][c] += float(s) * sdw[r] * sdx[col];
            }
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
