// Rotary embedding helpers shared by every RoPE kernel (spec §5.1).

// Interleaved 3-axis MRoPE: the position axis (0 t, 1 h, 2 w) that feeds frequency j.
uint mrope_axis(uint j, uint section_h, uint section_w) {
    if (j % 3u == 1u && j < 3u * section_h) return 1u;
    if (j % 3u == 2u && j < 3u * section_w) return 2u;
    return 0u;
}

// The angle of frequency j (of head_dim / 2) at position p: p · θ^(−2j / head_dim), l2theta = log2 θ.
float rope_angle(float p, uint j, uint head_dim, float l2theta) {
    return p * exp2(-float(2u * j) / float(head_dim) * l2theta);
}

// (cos, sin) of angle a, reduced modulo 2π exactly first: 2π = C1 + C2 with C1 = 6.28125 (8
// significant bits), a − k·C1 − k·C2 with fma, so long positions lose nothing beyond a's own rounding.
vec2 rope_cos_sin(float a) {
    const float k = roundEven(a * 0.15915494309189535);
    const float r = fma(-k, 0.0019353071795864769, fma(-k, 6.28125, a));
    return vec2(cos(r), sin(r));
}
