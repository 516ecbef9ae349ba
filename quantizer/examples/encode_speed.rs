//! Single-thread BF16 → Q8_0 encode throughput (no I/O): `cargo run --release --example encode_speed`.
use quantizer::codec::{decode_into, quantize_q8_0_from, quantize_q8_0_into, SrcType};

fn main() {
    let n = 64 << 20; // elements
    let mut rng = quantizer::synthetic::XorShift::new(1);
    let src: Vec<u8> =
        (0..n).flat_map(|_| ((rng.next_f32() * 0.05).to_bits() >> 16).to_le_bytes()[..2].to_vec()).collect();
    let mut out = Vec::with_capacity(n / 32 * 34);
    let mut scratch = Vec::new();
    let t = std::time::Instant::now();
    for c in src.chunks(2 * 32 * 256) {
        scratch.clear();
        decode_into(SrcType::BF16, c, &mut scratch);
        quantize_q8_0_into(&scratch, &mut out);
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "decode+quantize: {:.0} MB BF16 in {s:.3} s: {:.2} GB/s of BF16 input per thread",
        src.len() as f64 / 1e6,
        src.len() as f64 / 1e9 / s
    );
    let mut out2 = Vec::with_capacity(n / 32 * 34);
    let t = std::time::Instant::now();
    quantize_q8_0_from(SrcType::BF16, &src, &mut out2);
    let s = t.elapsed().as_secs_f64();
    assert_eq!(out, out2);
    println!(
        "direct:          {:.0} MB BF16 in {s:.3} s: {:.2} GB/s of BF16 input per thread",
        src.len() as f64 / 1e6,
        src.len() as f64 / 1e9 / s
    );
}
