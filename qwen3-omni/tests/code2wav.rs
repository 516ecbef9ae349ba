//! Code2Wav against transformers' fixtures (same Q8_0 round-tripped weights, float32): the CPU
//! oracle's full decode and transformers' chunked decode, streaming equal to one full decode, the
//! config and the error paths. GPU tests are in code2wav_gpu.rs.

mod common;

use common::c2w::{fixture_gguf, ref_codes, snr_db, TempDir};

use qwen3_omni::code2wav::cpu::CpuCode2Wav;
use qwen3_omni::code2wav::{Code2WavConfig, Code2WavError};
use qwen3_omni::model_file::ModelFile;

fn reference(model: &str, key: &str) -> Vec<f32> {
    let path = common::fixtures().join("models").join(model).join("ref_code2wav_q8.safetensors");
    common::read_safetensors_f32(&path, key)
}

fn chunk_params(model: &str) -> (usize, usize) {
    let m = common::read_json(&format!("models/{model}/manifest.json"));
    let c = &m["code2wav"]["chunked_decode"];
    (c["chunk_size"].as_u64().unwrap() as usize, c["left_context_size"].as_u64().unwrap() as usize)
}

const MODELS: [&str; 2] = ["tiny-real-vocab", "tiny-ragged"];

#[test]
fn config_and_lengths() {
    let cfg = common::read_json("models/tiny-real-vocab/config.json");
    let c = Code2WavConfig::from_json(&cfg).unwrap();
    assert_eq!((c.samples_per_frame(), c.deficit()), (1920, 555));
    assert_eq!(c.output_len(16), 1920 * 16 - 555);
    assert_eq!(c.head_dim, 16);
    let mut bad = cfg.clone();
    bad["code2wav_config"]["num_key_value_heads"] = 3.into();
    let e = Code2WavConfig::from_json(&bad).unwrap_err();
    assert!(e.0.contains("num_key_value_heads"), "{e:?}");
    let mut bad = cfg.clone();
    bad["code2wav_config"].as_object_mut().unwrap().remove("upsample_rates");
    assert!(Code2WavConfig::from_json(&bad).unwrap_err().0.contains("upsample_rates"));
    // The real model: 1920·T − 555.
    let real = quantizer::synthetic::real_config();
    let c = Code2WavConfig::from_json(&real).unwrap();
    for t in [1u64, 7, 100, 325] {
        assert_eq!(c.output_len(t), 1920 * t - 555);
    }
}

#[test]
fn cpu_full_and_chunked_match_transformers() {
    for model in MODELS {
        let (_d, path) = fixture_gguf(model);
        let m = ModelFile::open(&path).unwrap();
        let cpu = CpuCode2Wav::load(&m).unwrap();
        let (codes, t) = ref_codes(model);
        let full = cpu.decode(&codes).unwrap();
        let want = reference(model, "full");
        assert_eq!(full.len() as u64, cpu.config.output_len(t as u64), "{model}");
        let s = snr_db(&full, &want);
        println!("{model}: CPU full decode SNR {s:.1} dB over {} samples", full.len());
        assert!(s >= 40.0, "{model}: full decode SNR {s:.1} dB");
        let (chunk, ctx) = chunk_params(model);
        let chunked = cpu.chunked_decode(&codes, chunk, ctx).unwrap();
        let want = reference(model, "chunked");
        let s = snr_db(&chunked, &want);
        println!("{model}: CPU chunked ({chunk}/{ctx}) decode SNR {s:.1} dB over {} samples", chunked.len());
        assert!(s >= 40.0, "{model}: chunked decode SNR {s:.1} dB");
    }
}

#[test]
fn cpu_streaming_equals_full_decode() {
    let model = "tiny-real-vocab";
    let (_d, path) = fixture_gguf(model);
    let m = ModelFile::open(&path).unwrap();
    let cpu = CpuCode2Wav::load(&m).unwrap();
    let (codes, t) = ref_codes(model);
    let q = cpu.config.num_quantizers as usize;
    let full = cpu.decode(&codes).unwrap();
    for pieces in [vec![1usize; t], vec![3, 1, 5, 2, 5], vec![7, 9]] {
        let mut s = cpu.stream();
        let mut out = Vec::new();
        let mut at = 0;
        for (i, n) in pieces.iter().enumerate() {
            let got = s.push(&codes[at * q..(at + n) * q]).unwrap();
            at += n;
            // Every push emits exactly what its frames determine: the first frame 1920 − 555.
            if i == 0 {
                assert_eq!(got.len() as u64, cpu.config.output_len(*n as u64));
            }
            out.extend(got);
        }
        out.extend(s.finish());
        assert_eq!(out.len(), full.len());
        let e = out.iter().zip(&full).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(e <= 1e-4, "pieces {pieces:?}: max |streamed − full| = {e:e}");
    }
}

#[test]
fn bad_codes_are_refused() {
    let (_d, path) = fixture_gguf("tiny-ragged");
    let m = ModelFile::open(&path).unwrap();
    let cpu = CpuCode2Wav::load(&m).unwrap();
    let q = cpu.config.num_quantizers as usize;
    match cpu.decode(&vec![0; q + 1]) {
        Err(e @ Code2WavError::Ragged { .. }) => assert!(e.to_string().contains("whole frames"), "{e}"),
        other => panic!("expected a ragged-codes error, got {:?}", other.err()),
    }
    let mut codes = vec![0; 2 * q];
    codes[q + 1] = cpu.config.codebook_size;
    match cpu.decode(&codes) {
        Err(e @ Code2WavError::BadCode { frame: 1, group: 1, .. }) => {
            assert!(e.to_string().contains("codebook"), "{e}")
        }
        other => panic!("expected a bad-code error, got {:?}", other.err()),
    }
}

#[test]
fn wav_files_are_written_atomically_and_read_back() {
    use qwen3_omni::code2wav::wav::{read_wav, write_wav, WavFormat, WavWriter, SAMPLE_RATE};
    let dir = TempDir::new("wav");
    let samples: Vec<f32> = (0..2401).map(|i| (i as f32 * 0.01).sin() * 0.9).collect();
    let p = dir.0.join("out.wav");
    write_wav(&p, &samples, SAMPLE_RATE, WavFormat::F32).unwrap();
    let (rate, back) = read_wav(&p).unwrap();
    assert_eq!((rate, back.as_slice()), (SAMPLE_RATE, samples.as_slice()));
    let len = std::fs::metadata(&p).unwrap().len();
    assert_eq!(len, 58 + 4 * samples.len() as u64, "RIFF header with fmt (18) and fact chunks");
    write_wav(&p, &samples, SAMPLE_RATE, WavFormat::Pcm16).unwrap();
    let (_, back) = read_wav(&p).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 44 + 2 * samples.len() as u64);
    let e = back.iter().zip(&samples).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(e <= 0.5 / 32767.0 + 1e-6, "16-bit round trip error {e}");
    // Only the output file is left in the directory (no temporaries).
    let names: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out.wav")]);
    // A failed write leaves the old file intact and no temporary behind.
    let bad = dir.0.join("no-such-dir").join("x.wav");
    assert!(write_wav(&bad, &samples, SAMPLE_RATE, WavFormat::F32).is_err());
    assert_eq!(read_wav(&p).unwrap().1.len(), samples.len());

    // Streamed writing: nothing at the path until finish; an unfinished writer leaves no trace.
    let q = dir.0.join("streamed.wav");
    let mut w = WavWriter::create(&q, SAMPLE_RATE, WavFormat::F32).unwrap();
    for piece in samples.chunks(700) {
        w.write(piece).unwrap();
    }
    assert!(!q.exists(), "the file appears only when complete");
    assert_eq!(w.len(), samples.len() as u64);
    w.finish().unwrap();
    let want = qwen3_omni::code2wav::wav::wav_bytes(&samples, SAMPLE_RATE, WavFormat::F32).unwrap();
    assert!(std::fs::read(&q).unwrap() == want, "streamed file differs from the one-shot file");
    let r = dir.0.join("abandoned.wav");
    let mut w = WavWriter::create(&r, SAMPLE_RATE, WavFormat::Pcm16).unwrap();
    w.write(&samples).unwrap();
    drop(w);
    let mut names: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, vec![std::ffi::OsString::from("out.wav"), std::ffi::OsString::from("streamed.wav")]);
}

#[test]
fn codes_files_parse_with_clear_errors() {
    use qwen3_omni::code2wav::parse_codes;
    let codes = parse_codes("# comment\n1 2 3\n\n4,5, 6  # trailing\n", 3).unwrap();
    assert_eq!(codes, vec![1, 2, 3, 4, 5, 6]);
    let e = parse_codes("1 2 3\n4 5\n", 3).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("expected 3"), "{e}");
    let e = parse_codes("1 -2 3\n", 3).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("\"-2\""), "{e}");
}
