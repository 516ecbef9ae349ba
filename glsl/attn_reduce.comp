#version 450
// Decode attention, pass 2 of 2: merges the per-chunk partials of attn_split (log-sum-exp):
//   M = max_c m_c,  w_c = exp(m_c - M),  out[i, h, d] = sum_c w_c o_c[d] / sum_c w_c l_c
// (chunks a query does not see have m_c = -inf, so w_c = 0; chunk 0 is always seen).
// Layouts: part_o [rows, n_chunks, head_dim], part_ml [rows, n_chunks] (m, l), rows = n_q*n_heads;
//          out [rows, head_dim] = [n_q, n_heads * head_dim].
//
// Bindings: 0 part_o (float[]), 1 part_ml (vec2[]), 2 out (float[rows*head_dim]).
// Push: rows, n_chunks, head_dim, grid_x. One workgroup per row (row = y * grid_x + x),
// invocations over dimensions. Spec: 0 WG.
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(push_constant) uniform Push { uint rows; uint n_chunks; uint head_dim; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer PO { float part_o[]; };
layout(std430, binding = 1) readonly buffer PML { vec2 part_ml[]; };
layout(std430, binding = 2) writeonly buffer O { float o[]; };

void main() {
    const uint row = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (row >= pc.rows) return;
    const uint base = row * pc.n_chunks;
    float mx = -1.0 / 0.0;
    for (uint c = 0; c < pc.n_chunks; c++) mx = max(mx, part_ml[base + c].x);
    float l = 0.0;
    for (uint c = 0; c < pc.n_chunks; c++) {
        const vec2 ml = part_ml[base + c];
        l += exp(ml.x - mx) * ml.y;
    }
    const float inv = 1.0 / l;
    for (uint d = gl_LocalInvocationIndex; d < pc.head_dim; d += WG) {
        float t = 0.0;
        for (uint c = 0; c < pc.n_chunks; c++) t += exp(part_ml[base + c].x - mx) * part_o[(base + c) * pc.head_dim + d];
        o[row * pc.head_dim + d] = t * inv;
    }
}
