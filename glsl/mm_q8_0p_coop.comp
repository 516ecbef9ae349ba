#version 450
// Y[n, m] = Σ_k W[m, k] · X[n, k] on cooperative matrices (VK_KHR_cooperative_matrix, 16×16×16
// f16 × f16 → f32 at subgroup scope, the shape RADV offers on RDNA 3 / 3.5 and NVIDIA too): planar
// Q8_0 weights (src/layout.rs) times N float activation rows, output row-major [N, M]. The same
// interface as mm_q8_0p_f32 (its counterpart without matrix units).
// Tiling: a workgroup of 256 computes a 128 (m) × 64 (n) tile = 8 × 4 accumulator tiles of 16×16.
// Per 32-wide k block (one Q8_0 block) the weights are dequantised (int8 · f16 scale → f16) and the
// activations rounded to f16 (clamped to ±65504), both staged in shared memory; then every subgroup
// multiplies its tiles for the block's two 16-wide k steps. Subgroup s owns tiles s·T .. s·T+T−1 with
// T = 32 / gl_NumSubgroups (all in one n column, so one B fragment serves them): T = 4 at 32 lanes,
// 8 at 64, 2 at 16; sizes below 8 lanes (32 subgroups) are refused by the launcher.
// Tiles wholly inside [M, N] are stored straight to Y; edge tiles go through shared memory and are
// written element by element under the bounds.
// Bindings: 0 qs (uint[], 8 per block), 1 d (uint16[]), 2 X (float[N*K]), 3 Y (float[N*M]).
// Push: K, M, N. Dispatch: (ceil(M/128), ceil(N/64), 1).
// Subgroup: full — cooperative-matrix operations act on whole subgroups (gl_SubgroupID picks tiles)
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "common/common.glsl"

layout(local_size_x = 256) in;
layout(push_constant) uniform Push { uint K; uint M; uint N; } pc;

layout(std430, binding = 0) readonly buffer QS { uint qs[]; };
layout(std430, binding = 1) readonly buffer D { uint16_t dw[]; };
layout(std430, binding = 2) readonly buffer X { float x[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

const uint BM = 128u, BN = 64u, TM = BM / 16u, TILES = TM * (BN / 16u);
// Row strides in f16 elements: 80 bytes, a multiple of 16 as cooperative loads want.
const uint LDA = 40u, LDB = 40u;
const uint MAX_T = 8u;  // tiles per subgroup at 64 lanes (4 subgroups)
shared float16_t sa[BM * LDA];
shared float16_t sb[BN * LDB];
// Edge tiles: one 16×16 f32 tile per subgroup (at most 32 subgroups).
shared float se[32u * 256u];

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint m0 = gl_WorkGroupID.x * BM, n0 = gl_WorkGroupID.y * BN;
    const uint nb = pc.K / 32u;
    const uint sg = gl_SubgroupID, T = TILES / gl_NumSubgroups;
    const uint t0 = sg * T, tn = t0 / TM;  // the subgroup's n column of tiles

    coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> acc[MAX_T];
    for (uint i = 0; i < MAX_T; i++) acc[i] = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);

    for (uint b = 0; b < nb; b++) {
        // Weights: 128 rows × 8 words of 4 int8 quants, 4 words per invocation.
        for (uint i = tid; i < BM * 8u; i += 256u) {
            const uint r = i / 8u, j = i % 8u, m = m0 + r;
            vec4 v = vec4(0.0);
            if (m < pc.M) {
                const uint q = qs[(m * nb + b) * 8u + j];
                const float d = f16_bits_to_float(dw[m * nb + b]);
                v = d * vec4(float(int(q << 24) >> 24), float(int(q << 16) >> 24), float(int(q << 8) >> 24),
                             float(int(q) >> 24));
            }
            const uint o = r * LDA + 4u * j;
            sa[o] = float16_t(v.x);
            sa[o + 1u] = float16_t(v.y);
            sa[o + 2u] = float16_t(v.z);
            sa[o + 3u] = float16_t(v.w);
        }
        // Activations: 64 rows × 32 floats, 8 per invocation.
        for (uint i = tid; i < BN * 32u; i += 256u) {
            const uint c = i / 32u, j = i % 32u, n = n0 + c;
            const float v = n < pc.N ? x[n * pc.K + b * 32u + j] : 0.0;
            sb[c * LDB + j] = float16_t(clamp(v, -65504.0, 65504.0));
        }
        barrier();
        for (uint kk = 0; kk < 32u; kk += 16u) {
            // B (k × n) is stored n-major: column-major with stride LDB.
            coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> fb;
            coopMatLoad(fb, sb, tn * 16u * LDB + kk, LDB, gl_CooperativeMatrixLayoutColumnMajor);
            for (uint i = 0; i < MAX_T; i++) {
                if (i < T) {
                    const uint tm = (t0 + i) % TM;
                    coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> fa;
                    coopMatLoad(fa, sa, tm * 16u * LDA + kk, LDA, gl_CooperativeMatrixLayoutRowMajor);
                    acc[i] = coopMatMulAdd(fa, fb, acc[i]);
                }
            }
        }
        barrier();
    }

    // Y[n, m] at n·M + m: the (m × n) accumulator is column-major with stride M.
    const uint n = n0 + tn * 16u;
    for (uint i = 0; i < MAX_T; i++) {
        if (i < T) {
            const uint m = m0 + ((t0 + i) % TM) * 16u;
            if (m + 16u <= pc.M && n + 16u <= pc.N) {
                coopMatStore(acc[i], y, n * pc.M + m, pc.M, gl_CooperativeMatrixLayoutColumnMajor);
            } else {
                coopMatStore(acc[i], se, sg * 256u, 16u, gl_CooperativeMatrixLayoutColumnMajor);
                subgroupBarrier();
                for (uint e = gl_SubgroupInvocationID; e < 256u; e += gl_SubgroupSize) {
                    const uint em = m + e % 16u, en = n + e / 16u;
                    if (em < pc.M && en < pc.N) y[en * pc.M + em] = se[sg * 256u + e];
                }
                subgroupBarrier();
            }
        }
    }
}
