//! Fuzz the GGUF header parser: any input must give Ok or Err, never a panic, hang or huge
//! allocation; on Ok every tensor range must lie inside the input and not overlap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quantizer::gguf::{GgufHeader, Limits};

fuzz_target!(|data: &[u8]| {
    let lim = Limits { max_string_len: 1 << 20, max_array_len: 1 << 20, ..Limits::default() };
    if let Ok(h) = GgufHeader::parse_with_limits(data, &lim) {
        let mut ranges: Vec<(u64, u64)> = h.tensors.iter().map(|t| (t.abs_offset, t.abs_offset + t.n_bytes)).collect();
        ranges.sort();
        for r in &ranges {
            assert!(r.1 <= data.len() as u64);
            let _ = &data[r.0 as usize..r.1 as usize];
        }
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0);
        }
        for (k, v) in &h.metadata {
            let _ = format!("{k}={}", quantizer::gguf::Abbrev(v, 4));
        }
    }
});
