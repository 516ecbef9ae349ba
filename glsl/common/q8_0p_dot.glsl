// The dot product of one 16-byte chunk of Q8_0 planar quants (a uvec4: 16 int8 weights, four per
// uint, x in the low byte) with 16 activations, the inner step of every Q8_0 planar kernel
// (matvec_q8_0p, moe_gate_up, moe_down, moe_grouped). The caller applies the scales.
//   INTDOT: with 16 Q8_1 activation quants (a uvec4 as q81_pack packs them): 4 dotPacked4x8EXT
//           (saturating accumulation; a chunk's sum fits in int32);
//   else:   with 16 float activations (four vec4s).
#ifndef Q8_0P_DOT_GLSL
#define Q8_0P_DOT_GLSL

#ifdef INTDOT
int dot16(uvec4 w, uvec4 v) {
    int s = dotPacked4x8EXT(int(w.x), int(v.x));
    s = dotPacked4x8AccSatEXT(int(w.y), int(v.y), s);
    s = dotPacked4x8AccSatEXT(int(w.z), int(v.z), s);
    return dotPacked4x8AccSatEXT(int(w.w), int(v.w), s);
}
#else
// Four int8s as floats.
vec4 bytes4(uint w) {
    const int v = int(w);
    return vec4(bitfieldExtract(v, 0, 8), bitfieldExtract(v, 8, 8), bitfieldExtract(v, 16, 8), bitfieldExtract(v, 24, 8));
}
float dot16(uvec4 w, vec4 x0, vec4 x1, vec4 x2, vec4 x3) {
    return dot(bytes4(w.x), x0) + dot(bytes4(w.y), x1) + dot(bytes4(w.z), x2) + dot(bytes4(w.w), x3);
}
#endif

#endif
