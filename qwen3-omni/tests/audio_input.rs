//! Audio in: WAV loading (formats, mixing, resampling, bad input) and Whisper log-mel against
//! transformers' `WhisperFeatureExtractor` (tests/fixtures/audio, made by tools/fixtures_audio.py).

mod common;

use std::path::PathBuf;

use qwen3_omni::audio::{load_wav, AudioError, LoadOptions, MelExtractor, Resampler};

use common::max_abs;

fn audio_dir() -> PathBuf {
    common::fixtures().join("audio")
}

fn clips() -> Vec<(String, String)> {
    let meta = common::read_json("audio/mel.json");
    meta["clips"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["file"].as_str().unwrap().to_string()))
        .collect()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qwen3vk-audio-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Every fixture clip, loaded with the fixture script's resampler: the mel is within 1e-4 of
/// transformers' (and the 44.1 kHz clips' 16 kHz waveform within float rounding of the script's).
#[test]
fn log_mel_matches_whisper_feature_extractor() {
    let refs = audio_dir().join("mel.safetensors");
    let mel = MelExtractor::new(128);
    let opts = LoadOptions { resampler: Resampler::Reference, ..Default::default() };
    for (name, file) in clips() {
        let a = load_wav(audio_dir().join(&file), &opts).unwrap();
        let want = common::read_safetensors_f32(&refs, &format!("{name}.mel"));
        if a.source_rate != 16_000 {
            let w = common::read_safetensors_f32(&refs, &format!("{name}.wav16k"));
            let e = max_abs(&a.samples, &w);
            eprintln!("{name}: resampled waveform max |diff| {e:.2e}");
            assert!(e < 1e-5, "{name}: waveform {e}");
        }
        let m = mel.compute(&a.samples);
        assert_eq!(m.frames * 128, want.len(), "{name}: frames");
        let e = max_abs(&m.data, &want);
        eprintln!("{name}: {} frames, log-mel max |diff| {e:.2e}", m.frames);
        assert!(e <= 1e-4, "{name}: log-mel max abs diff {e}");
    }
}

/// rubato (the default resampler) is a different filter from the fixture script's: the 44.1 kHz
/// clips' mel then differs where the two filters' transition bands differ (the top mel bands,
/// 7.5–8 kHz, where the speech has almost no energy). Measured and bounded here.
#[test]
fn rubato_resampler_is_close_to_the_reference() {
    let refs = audio_dir().join("mel.safetensors");
    let mel = MelExtractor::new(128);
    for (name, file) in clips().into_iter().filter(|(n, _)| n.contains("44k")) {
        let a = load_wav(audio_dir().join(&file), &LoadOptions::default()).unwrap();
        let w = common::read_safetensors_f32(&refs, &format!("{name}.wav16k"));
        assert_eq!(a.samples.len(), w.len(), "{name}: length");
        let num: f64 = a.samples.iter().zip(&w).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let den: f64 = w.iter().map(|y| (*y as f64).powi(2)).sum();
        let snr = 10.0 * (den / num).log10();
        let m = mel.compute(&a.samples);
        let want = common::read_safetensors_f32(&refs, &format!("{name}.mel"));
        let e = max_abs(&m.data, &want);
        // Below 7 kHz (mel bands whose upper edge is under 7 kHz) the two agree far more closely.
        let low_bands = (0..128).filter(|&b| b < 120).collect::<Vec<_>>();
        let el = low_bands
            .iter()
            .flat_map(|&b| (0..m.frames).map(move |t| b * m.frames + t))
            .map(|i| (m.data[i] - want[i]).abs())
            .fold(0.0f32, f32::max);
        let mean = m.data.iter().zip(&want).map(|(x, y)| (x - y).abs() as f64).sum::<f64>() / want.len() as f64;
        eprintln!(
            "{name}: rubato vs reference waveform SNR {snr:.1} dB; log-mel max |diff| {e:.3e} (bands < 120: \
             {el:.3e}), mean {mean:.2e}"
        );
        assert!(snr > 40.0, "{name}: SNR {snr}");
        assert!(el < 5e-3, "{name}: log-mel below 7 kHz differs by {el}");
        assert!(mean < 1e-2, "{name}: mean log-mel diff {mean}");
    }
}

#[test]
fn mel_timing_30s() {
    let a = load_wav(audio_dir().join("synthetic_40s_16k_mono.wav"), &LoadOptions::default()).unwrap();
    let x = &a.samples[..30 * 16_000];
    let mel = MelExtractor::new(128);
    let _ = mel.compute(&x[..16_000]);
    let t = std::time::Instant::now();
    let m = mel.compute(x);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    eprintln!("log-mel of 30 s ({} frames) on the CPU: {ms:.1} ms", m.frames);
    assert_eq!(m.frames, 3000);
}

fn write_wav(path: &PathBuf, spec: hound::WavSpec, frames: usize, f: impl Fn(usize, usize) -> i32) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames {
        for c in 0..spec.channels as usize {
            w.write_sample(f(i, c)).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// A 24-bit, 8-channel, 48 kHz file is read, mixed (mean of channels) and resampled.
#[test]
fn reads_24_bit_8_channel_48k() {
    let p = tmp("c8_24bit.wav");
    let spec = hound::WavSpec {
        channels: 8,
        sample_rate: 48_000,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    // Channel c carries a 1 kHz tone at amplitude (c + 1) / 16: the mono mix has amplitude 9/32.
    let amp = |c: usize| (c as f64 + 1.0) / 16.0 * (1 << 23) as f64;
    write_wav(&p, spec, 48_000, |i, c| {
        (amp(c) * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 48_000.0).sin()).round() as i32
    });
    for r in [Resampler::Rubato, Resampler::Reference] {
        let a = load_wav(&p, &LoadOptions { resampler: r, ..Default::default() }).unwrap();
        assert_eq!((a.source_rate, a.source_channels, a.samples.len()), (48_000, 8, 16_000));
        let peak = a.samples[1000..15000].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((peak - 9.0 / 32.0).abs() < 2e-3, "{r:?}: peak {peak}");
    }
    // 8-bit and float files too.
    let p8 = tmp("u8.wav");
    let spec8 =
        hound::WavSpec { channels: 1, sample_rate: 8_000, bits_per_sample: 8, sample_format: hound::SampleFormat::Int };
    write_wav(&p8, spec8, 8_000, |i, _| ((i % 16) as i32 - 8) * 8);
    assert_eq!(load_wav(&p8, &LoadOptions::default()).unwrap().samples.len(), 16_000);
    let pf = tmp("f32.wav");
    let specf = hound::WavSpec {
        channels: 2,
        sample_rate: 22_050,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&pf, specf).unwrap();
    for i in 0..22_050 {
        w.write_sample((i as f32 * 0.01).sin() * 0.5).unwrap();
        w.write_sample(0.0f32).unwrap();
    }
    w.finalize().unwrap();
    assert_eq!(load_wav(&pf, &LoadOptions::default()).unwrap().samples.len(), 16_000);
}

fn err_text(r: Result<qwen3_omni::audio::Audio16k, AudioError>) -> (AudioError, String) {
    let e = r.expect_err("bad input must be refused");
    let s = e.to_string();
    (e, s)
}

#[test]
fn bad_input_is_refused_with_the_file_named() {
    // Zero-length file.
    let p = tmp("empty.wav");
    std::fs::write(&p, b"").unwrap();
    let (e, s) = err_text(load_wav(&p, &LoadOptions::default()));
    assert!(matches!(e, AudioError::EmptyFile { .. }) && s.contains("empty.wav"), "{s}");
    // Missing file.
    let (e, s) = err_text(load_wav(tmp("nope.wav"), &LoadOptions::default()));
    assert!(matches!(e, AudioError::Open { .. }) && s.contains("nope.wav"), "{s}");
    // Garbage.
    let p = tmp("garbage.wav");
    std::fs::write(&p, (0..1000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
    let (e, s) = err_text(load_wav(&p, &LoadOptions::default()));
    assert!(matches!(e, AudioError::Corrupt { .. }) && s.contains("garbage.wav"), "{s}");
    // A real WAV cut inside its header.
    let good = std::fs::read(audio_dir().join("privet_mir_16k_mono.wav")).unwrap();
    let p = tmp("cut.wav");
    std::fs::write(&p, &good[..30]).unwrap();
    let (e, s) = err_text(load_wav(&p, &LoadOptions::default()));
    assert!(matches!(e, AudioError::Corrupt { .. }) && s.contains("cut.wav"), "{s}");
    // A header with no samples.
    let p = tmp("nosamples.wav");
    write_wav(
        &p,
        hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
        0,
        |_, _| 0,
    );
    let (e, s) = err_text(load_wav(&p, &LoadOptions::default()));
    assert!(matches!(e, AudioError::NoSamples { .. }) && s.contains("nosamples.wav"), "{s}");
    // Shorter than one mel frame.
    let p = tmp("short.wav");
    write_wav(
        &p,
        hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
        100,
        |i, _| i as i32,
    );
    let (e, s) = err_text(load_wav(&p, &LoadOptions::default()));
    assert!(matches!(e, AudioError::TooShort { .. }) && s.contains("short.wav"), "{s}");
    // A non-PCM format tag (2 = Microsoft ADPCM).
    let mut adpcm = good.clone();
    adpcm[20] = 2;
    let p = tmp("adpcm.wav");
    std::fs::write(&p, &adpcm).unwrap();
    let (e, s) = err_text(load_wav(&p, &LoadOptions::default()));
    assert!(matches!(e, AudioError::Unsupported { .. } | AudioError::Corrupt { .. }) && s.contains("adpcm.wav"), "{s}");
    eprintln!("ADPCM: {s}");
}

/// A 2-hour file is refused from its header (its samples are never read): a WAV whose data chunk
/// claims 2 h of 16 kHz 16-bit mono.
#[test]
fn two_hour_file_is_refused() {
    let good = std::fs::read(audio_dir().join("privet_mir_16k_mono.wav")).unwrap();
    // Find the "data" chunk and patch its length; patch the RIFF length to match.
    let pos = good.windows(4).position(|w| w == b"data").unwrap();
    let claim: u32 = 2 * 3600 * 16_000 * 2;
    let mut f = good.clone();
    f[pos + 4..pos + 8].copy_from_slice(&claim.to_le_bytes());
    let riff = (pos as u32 + 8 + claim) - 8;
    f[4..8].copy_from_slice(&riff.to_le_bytes());
    let p = tmp("two_hours.wav");
    std::fs::write(&p, &f).unwrap();
    let (e, s) = err_text(load_wav(&p, &LoadOptions::default()));
    assert!(matches!(e, AudioError::TooLong { .. }) && s.contains("two_hours.wav") && s.contains("7200"), "{s}");
    eprintln!("{s}");
    // A raised limit reads on and reports the truncation instead.
    let (e, s) = err_text(load_wav(&p, &LoadOptions { max_seconds: 1e9, ..Default::default() }));
    assert!(matches!(e, AudioError::Corrupt { .. }), "{s}");
    eprintln!("{s}");
}
