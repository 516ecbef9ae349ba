#version 450
// Embedding gather from a planar-Q8_0 table: y[t, c] = d[id, c/32] * qs[id, c] with id = ids[t].
// Table [rows, cols] in the planar layout (src/layout.rs): quants qs[rows*cols] int8 row-major,
// then scales d[rows*cols/32] f16 row-major (bound separately, at the 256-aligned plane offset).
// Out-of-range ids (id >= rows) produce a row of zeros (never an out-of-bounds read).
// cols is a multiple of 32; each invocation writes 4 outputs (one quant word) per step.
//
// Bindings: 0 ids (uint[n]), 1 qs (uint[rows*cols/4]), 2 d (uint16[rows*cols/32]),
//           3 y (vec4[n*cols/4]).
// Push: cols, n, rows, grid_x. One workgroup per token (t = y * grid_x + x). Spec: 0 WG.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint cols; uint n; uint rows; uint grid_x; } pc;

layout(std430, binding = 0) readonly buffer Ids { uint ids[]; };
layout(std430, binding = 1) readonly buffer QS { uint qs[]; };
layout(std430, binding = 2) readonly buffer D { uint16_t dw[]; };
layout(std430, binding = 3) writeonly buffer Y { vec4 y[]; };

void main() {
    const uint t = gl_WorkGroupID.y * pc.grid_x + gl_WorkGroupID.x;
    if (t >= pc.n) return;
    const uint id = ids[t];
    const uint words = pc.cols / 4u;
    const uint out0 = t * words;
    if (id >= pc.rows) {
        for (uint i = gl_LocalInvocationIndex; i < words; i += WG) y[out0 + i] = vec4(0.0);
        return;
    }
    const uint q0 = id * words;
    const uint d0 = id * (pc.cols / 32u);
    for (uint i = gl_LocalInvocationIndex; i < words; i += WG) {
        const int v = int(qs[q0 + i]);
        const float d = f16_bits_to_float(dw[d0 + i / 8u]);
        y[out0 + i] = d * vec4(bitfieldExtract(v, 0, 8), bitfieldExtract(v, 8, 8), bitfieldExtract(v, 16, 8), bitfieldExtract(v, 24, 8));
    }
}
