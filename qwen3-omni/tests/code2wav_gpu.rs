//! Code2Wav on the GPU (lavapipe in CI, validation on) against the CPU oracle and transformers'
//! fixtures: full decode, transformers' chunked decode, and streaming in pieces equal to one full
//! decode.

mod common;

use common::c2w::{fixture_gguf, ref_codes, snr_db};
use qwen3_omni::code2wav::cpu::CpuCode2Wav;
use qwen3_omni::code2wav::gpu::GpuCode2Wav;
use qwen3_omni::model_file::ModelFile;

use common::max_abs;

fn reference(model: &str, key: &str) -> Vec<f32> {
    let path = common::fixtures().join("models").join(model).join("ref_code2wav_q8.safetensors");
    common::read_safetensors_f32(&path, key)
}

#[test]
fn gpu_full_and_chunked_match_transformers_and_cpu() {
    for model in ["tiny-real-vocab", "tiny-ragged"] {
        let (_d, path) = fixture_gguf(model);
        let m = ModelFile::open(&path).unwrap();
        let cpu = CpuCode2Wav::load(&m).unwrap();
        let (codes, t) = ref_codes(model);
        // Chunks of 5 frames: several command buffers per decode, histories carried between them.
        let mut gpu = GpuCode2Wav::load(common::kernels(), &m, 5).unwrap();
        let full = gpu.decode(&codes).unwrap();
        assert_eq!(full.len() as u64, gpu.config.output_len(t as u64));
        let want = cpu.decode(&codes).unwrap();
        let e = max_abs(&full, &want);
        let s_cpu = snr_db(&full, &want);
        let s_ref = snr_db(&full, &reference(model, "full"));
        println!("{model}: GPU full decode: max |GPU − CPU| {e:e} ({s_cpu:.1} dB), SNR vs transformers {s_ref:.1} dB");
        assert!(s_ref >= 40.0 && s_cpu >= 60.0, "{model}: SNR {s_ref:.1} dB vs transformers, {s_cpu:.1} dB vs CPU");
        let m_json = common::read_json(&format!("models/{model}/manifest.json"));
        let cd = &m_json["code2wav"]["chunked_decode"];
        let (chunk, ctx) =
            (cd["chunk_size"].as_u64().unwrap() as usize, cd["left_context_size"].as_u64().unwrap() as usize);
        let chunked = gpu.chunked_decode(&codes, chunk, ctx).unwrap();
        let s = snr_db(&chunked, &reference(model, "chunked"));
        println!("{model}: GPU chunked ({chunk}/{ctx}) decode SNR vs transformers {s:.1} dB");
        assert!(s >= 40.0, "{model}: chunked SNR {s:.1} dB");
        common::assert_clean(gpu.kernels().gpu());
    }
}

#[test]
fn gpu_streaming_equals_full_decode() {
    let model = "tiny-real-vocab";
    let (_d, path) = fixture_gguf(model);
    let m = ModelFile::open(&path).unwrap();
    let (codes, t) = ref_codes(model);
    let mut gpu = GpuCode2Wav::load(common::kernels(), &m, 16).unwrap();
    let q = gpu.config.num_quantizers as usize;
    let full = gpu.decode(&codes).unwrap();
    assert_eq!(gpu.gpu_time().1, 1, "16 frames in one command buffer");
    for pieces in [vec![1usize; t], vec![2, 1, 4, 3, 6], vec![11, 5]] {
        let mut st = gpu.stream().unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        for (i, n) in pieces.iter().enumerate() {
            let got = st.push(&codes[at * q..(at + n) * q]).unwrap();
            if i == 0 {
                // The first frame alone already yields 1920 − 555 samples.
                assert_eq!(got.len() as u64, 1920 * *n as u64 - 555);
            }
            at += n;
            out.extend(got);
        }
        out.extend(st.finish());
        assert_eq!(out.len(), full.len());
        let e = max_abs(&out, &full);
        println!("pieces {pieces:?}: max |streamed − full| = {e:e}");
        assert!(e <= 1e-4, "pieces {pieces:?}: max |streamed − full| = {e:e}");
    }
    // Bad codes are refused before anything is recorded, and the stream is unharmed.
    let mut bad = codes[..2 * q].to_vec();
    bad[q + 3] = 5000;
    let e = gpu.decode(&bad).unwrap_err();
    assert!(e.to_string().contains("frame 1, code group 3"), "{e}");
    assert_eq!(gpu.decode(&codes).unwrap(), full);
    common::assert_clean(gpu.kernels().gpu());
}
