// Q8_1 quantisation of 32-value blocks (the activation format of the int-dot kernels): per block
// d = max|v| / 127, q = clamp(roundEven(v / d), -127, 127) (q = 0 when d = 0), four int8s packed
// per uint (x in the low byte). quantize_q8_1 also stores s = d * sum(q).

#ifndef Q8_1_BLOCK_GLSL
#define Q8_1_BLOCK_GLSL

// max|v| over the four lanes.
float q81_amax4(vec4 v) {
    const vec4 a = abs(v);
    return max(max(a.x, a.y), max(a.z, a.w));
}

// The block scale from the block's max|v|.
float q81_scale(float amax) {
    return amax / 127.0;
}

// 1 / d, 0 for an all-zero block.
float q81_inv(float d) {
    return d != 0.0 ? 1.0 / d : 0.0;
}

// Four values rounded to int8 with inverse scale id.
ivec4 q81_round(vec4 v, float id) {
    return clamp(ivec4(roundEven(v * id)), ivec4(-127), ivec4(127));
}

// Four int8s in one uint, x in the low byte.
uint q81_pack(ivec4 q) {
    return (uint(q.x) & 0xffu) | ((uint(q.y) & 0xffu) << 8) | ((uint(q.z) & 0xffu) << 16) | (uint(q.w) << 24);
}
#endif
