#version 450
// Rotary embedding in place, rotate-half (NeoX) convention, interleaved 3-axis MRoPE
// (spec §5.2). x is [n_tokens, n_heads, head_dim]; half = head_dim / 2; for frequency j < half,
// dimension j pairs with j + half:
//   x'[j]        = x[j] cos(a) - x[j + half] sin(a)
//   x'[j + half] = x[j + half] cos(a) + x[j] sin(a)
// with a = p * inv_freq[j], inv_freq[j] = theta^(-2j / head_dim) (f32, like HF), and p the
// token's position on the axis that feeds frequency j:
//   H if j % 3 == 1 and j < 3 * section_h, W if j % 3 == 2 and j < 3 * section_w, else T.
// With t = h = w (text, audio) this is 1-D RoPE; section_h = section_w = 0 forces 1-D RoPE on T.
// The f32 angle is reduced modulo 2*pi exactly (Cody-Waite with fma) before sin/cos, so large
// positions lose nothing beyond the f32 rounding of the angle itself.
//
// Bindings: 0 x (float[n_tokens*n_heads*head_dim], read-write), 1 pos (uint[3*n_tokens], axis-major
//           as HF's position_ids: t positions, then h, then w).
// Push: n_tokens, n_heads, head_dim, theta, section_h, section_w. One invocation per rotated pair,
// grid-stride over n_tokens*n_heads*half pairs. Spec: 0 WG.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"
#include "common/rope.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push {
    uint n_tokens;
    uint n_heads;
    uint head_dim;
    float theta;
    uint section_h;
    uint section_w;
} pc;

layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Pos { uint pos[]; };

void main() {
    const uint half_dim = pc.head_dim / 2u;
    const uint pairs = pc.n_tokens * pc.n_heads * half_dim;
    const uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * WG;
    const uint first = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationIndex;
    const float l2theta = log2(pc.theta);
    for (uint i = first; i < pairs; i += stride) {
        const uint j = i % half_dim;
        const uint row = i / half_dim; // token * n_heads + head
        const uint t = row / pc.n_heads;
        const uint axis = mrope_axis(j, pc.section_h, pc.section_w);
        const vec2 cs = rope_cos_sin(rope_angle(float(pos[axis * pc.n_tokens + t]), j, pc.head_dim, l2theta));
        const float c = cs.x, s = cs.y;
        const uint o = row * pc.head_dim + j;
        const float x0 = x[o], x1 = x[o + half_dim];
        x[o] = x0 * c - x1 * s;
        x[o + half_dim] = x1 * c + x0 * s;
    }
}
