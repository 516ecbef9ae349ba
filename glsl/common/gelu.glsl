// GELU with the exact error function (torch's default "gelu"): 0.5·x·(1 + erf(x/√2)).
// GLSL has no erf: erf via Abramowitz & Stegun 7.1.26 in the form erf(z) = 1 − t·P(t)·exp(−z²),
// t = 1/(1 + p·z); |error| ≤ 1.5e-7 over all z (absolute), i.e. below f32 resolution of the result.
float erf_as(float z) {
    const float a = abs(z);
    const float t = 1.0 / (1.0 + 0.3275911 * a);
    const float poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    const float r = 1.0 - poly * exp(-a * a);
    return z < 0.0 ? -r : r;
}

float gelu_erf(float x) {
    return 0.5 * x * (1.0 + erf_as(x * 0.70710678118654752));
}
