//! The Q8_0 codec against bytes written by gguf-py (tools/q8_0_vectors.py).

use quantizer::codec::{dequantize_q8_0, quantize_q8_0, Q8_0_BLOCK_BYTES};

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/q8_0").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn q8_0_matches_gguf_py_bytes() {
    let input: Vec<f32> =
        fixture("input_f32.bin").chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let expected = fixture("expected_q8_0.bin");
    assert_eq!(input.len() / 32 * Q8_0_BLOCK_BYTES, expected.len());
    let got = quantize_q8_0(&input);
    let bad: Vec<usize> =
        (0..expected.len() / 34).filter(|&b| got[b * 34..b * 34 + 34] != expected[b * 34..b * 34 + 34]).collect();
    for &b in bad.iter().take(5) {
        eprintln!("block {b}: got {:?}\n  expected {:?}", &got[b * 34..b * 34 + 34], &expected[b * 34..b * 34 + 34]);
    }
    assert!(bad.is_empty(), "{} of {} blocks differ", bad.len(), expected.len() / 34);
}

#[test]
fn dequantize_matches_gguf_py_rule() {
    // gguf-py dequantises as f16(d) -> f32 times q; check on the golden blocks.
    let expected = fixture("expected_q8_0.bin");
    let y = dequantize_q8_0(&expected);
    for (i, blk) in expected.chunks_exact(34).enumerate() {
        let d = half::f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32();
        for j in 0..32 {
            let want = d * (blk[2 + j] as i8) as f32;
            let got = y[i * 32 + j];
            assert!(want == got || (want.is_nan() && got.is_nan()), "block {i} elem {j}: {got} vs {want}");
        }
    }
}
