//! The audio commands end to end on the tiny real-vocabulary model (with the tokenizer), through
//! the `qwen3-omni-vk` binary: `transcribe` and `chat -a` run; bad input fails before the model
//! loads, naming the file; `--mic` without the `mic` feature says how to build it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `qwen3-omni-vk ARGS`.
fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk")).args(args).output().expect("running qwen3-omni-vk")
}

fn text(o: &Output) -> String {
    format!("--- stdout\n{}\n--- stderr\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `transcribe -m MODEL` with the default prompt, 4 new tokens, then `extra`.
fn transcribe(model: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["transcribe", "-m", model.to_str().unwrap(), "-n", "4"];
    args.extend_from_slice(extra);
    cli(&args)
}

#[test]
fn audio_commands_run_and_refuse_bad_input() {
    // The fixture model converted with the tokenizer beside it (as the demo model is built).
    let (dir, gguf) = common::tiny_model_with_tokenizer("cli-audio");
    let wav = common::fixtures().join("audio/privet_mir_44k_stereo.wav");
    let o = transcribe(&gguf, &["-a", wav.to_str().unwrap()]);
    assert!(o.status.success(), "transcribe failed:\n{}", text(&o));
    let o =
        cli(&["chat", "-m", gguf.to_str().unwrap(), "-a", wav.to_str().unwrap(), "-p", "Что ты слышишь?", "-n", "4"]);
    assert!(o.status.success(), "chat -a failed:\n{}", text(&o));

    let bad = dir.join("bad.wav");
    std::fs::write(&bad, b"RIFF\x04\x00\x00\x00WAVE").unwrap();
    let o = transcribe(&gguf, &["-a", bad.to_str().unwrap()]);
    assert!(!o.status.success(), "a malformed WAV was accepted:\n{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("bad.wav"), "{e}");
    #[cfg(not(feature = "mic"))]
    {
        let o = transcribe(&gguf, &["--mic"]);
        assert!(!o.status.success(), "--mic without the feature was accepted:\n{}", text(&o));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("--features mic"), "{e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
