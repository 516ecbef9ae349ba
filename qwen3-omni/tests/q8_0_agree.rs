//! The compute library's small Q8_0 encoder (used by its kernel tests and selftest, which must not
//! depend on the quantizer) and the quantizer's bit-exact codec write the same bytes.

use qwen3_omni_vk::reference::{quantize_matrix_q8_0, Rng};

#[test]
fn reference_encoder_matches_the_quantizer_codec() {
    let mut rng = Rng::new(2026);
    for (rows, cols, scale) in [(1usize, 32usize, 1.0f32), (7, 96, 3.0), (64, 2048, 0.02), (3, 32, 1e-6)] {
        let mut w = rng.vec(rows * cols, scale);
        w[0] = 0.0; // a zero and an exact tie-to-even candidate in the first block
        if cols > 1 {
            w[1] = scale;
        }
        let (ours, _) = quantize_matrix_q8_0(&w, cols);
        let theirs = quantizer::codec::quantize_q8_0(&w);
        assert!(ours == theirs, "{rows}×{cols}: the two Q8_0 encoders differ");
    }
}
