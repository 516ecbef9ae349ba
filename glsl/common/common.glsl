// Shared declarations of every kernel: extensions, Q8_0 helpers.
// Kernels are correct for any subgroup size (8 on lavapipe, 32 on NVIDIA, 32/64 on RDNA).
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

// Timing instrumentation (`bench-thinker` with QWEN3VK_CLOCKS=1; the `_clk` kernel variants define
// CLOCKS as one binding past the kernel's own): MARK(i) stores the device's real-time clock for
// mark i (< 8) of this workgroup (first 1024 workgroups). Without CLOCKS it is nothing.
#ifdef CLOCKS
#extension GL_EXT_shader_realtime_clock : require
layout(std430, binding = CLOCKS) writeonly buffer Clk { uvec2 clk_marks[]; };
#define MARK(i) { if (gl_LocalInvocationIndex == 0u) { const uint wg_ = (gl_WorkGroupID.z * gl_NumWorkGroups.y + gl_WorkGroupID.y) * gl_NumWorkGroups.x + gl_WorkGroupID.x; if (wg_ < 1024u) clk_marks[wg_ * 8u + (i)] = clockRealtime2x32EXT(); } }
#else
#define MARK(i)
#endif

float f16_bits_to_float(uint16_t h) {
    return unpackHalf2x16(uint(h)).x;
}
