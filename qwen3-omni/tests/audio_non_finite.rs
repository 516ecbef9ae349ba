//! NaN and infinite samples of a float WAV are refused, naming the file and the sample, by the
//! library function every front end reads WAVs with (`audio::load_wav`: the CLI's `chat -a` and
//! `transcribe`, the C API's `qwen3_omni_session_add_audio_file`) and so by the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use qwen3_omni::audio::{load_wav, AudioError};

fn workdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qwen3vk-nonfinite-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 16 kHz float WAV of `channels` channels, a quiet tone with `bad` at interleaved index `at`.
fn float_wav(path: &Path, channels: u16, at: usize, bad: f32) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..8000 * channels as usize {
        let x = if i == at { bad } else { 0.1 * (i as f32 * 0.05).sin() };
        w.write_sample(x).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn non_finite_wav_samples_are_refused() {
    let dir = workdir("wav");
    let nan = dir.join("nan.wav");
    float_wav(&nan, 1, 1000, f32::NAN);
    let inf = dir.join("inf.wav");
    float_wav(&inf, 2, 2001, f32::INFINITY);
    let ok = dir.join("ok.wav");
    float_wav(&ok, 1, usize::MAX, 0.0);
    assert!(load_wav(&ok, &Default::default()).is_ok());

    match load_wav(&nan, &Default::default()) {
        Err(e @ AudioError::NonFinite { index: 1000, frame: 1000, channel: 0, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("nan.wav") && msg.contains("sample 1000") && msg.contains("NaN"), "{msg}");
        }
        other => panic!("NaN sample: {other:?}"),
    }
    match load_wav(&inf, &Default::default()) {
        Err(e @ AudioError::NonFinite { index: 2001, frame: 1000, channel: 1, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("inf.wav") && msg.contains("sample 2001") && msg.contains("inf"), "{msg}");
        }
        other => panic!("infinite sample: {other:?}"),
    }

    // The CLI reads the recording before the model, through the same function: both audio
    // commands refuse the files (the model path need not exist).
    let model = dir.join("never-read.gguf");
    for (wav, what) in [(&nan, "sample 1000"), (&inf, "sample 2001")] {
        for cmd in [&["transcribe", "-a"][..], &["chat", "-p", "hi", "-a"][..]] {
            let mut args: Vec<&str> = cmd.to_vec();
            args.extend([wav.to_str().unwrap(), "-m", model.to_str().unwrap()]);
            let o = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk")).args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{args:?} accepted a non-finite sample");
            assert!(err.contains(wav.file_name().unwrap().to_str().unwrap()) && err.contains(what), "{args:?}: {err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
