//! Code2Wav test helpers: fixture GGUFs, reference codes, SNR.

use std::path::PathBuf;

pub fn fixture_gguf(model: &str) -> (TempDir, PathBuf) {
    let src = super::fixtures().join("models").join(model);
    let dir = TempDir::new(model);
    let out = dir.0.join(format!("{model}.gguf"));
    quantizer::convert::convert(&src, &out, &Default::default())
        .unwrap_or_else(|e| panic!("converting {}: {e}", src.display()));
    (dir, out)
}

pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "qwen3vk-c2w-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// SNR of `got` against `want` in dB.
pub fn snr_db(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let sig: f64 = want.iter().map(|v| (*v as f64).powi(2)).sum();
    let err: f64 = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    10.0 * (sig / err.max(1e-300)).log10()
}

/// The reference codes as `[T, num_quantizers]` (the file holds `[num_quantizers, T]`).
pub fn ref_codes(model: &str) -> (Vec<u32>, usize) {
    let path = super::fixtures().join("models").join(model).join("ref_code2wav_q8.safetensors");
    let h = super::read_safetensors_header(&path);
    let shape = h.tensors["codes"].1.clone();
    let (q, t) = (shape[0] as usize, shape[1] as usize);
    let raw = super::read_safetensors_i32(&path, "codes");
    let mut codes = vec![0u32; q * t];
    for g in 0..q {
        for f in 0..t {
            codes[f * q + g] = raw[g * t + f];
        }
    }
    (codes, t)
}
