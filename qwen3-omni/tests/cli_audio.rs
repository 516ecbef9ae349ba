//! The audio commands end to end on the tiny real-vocabulary model (with the tokenizer): `transcribe`
//! and `chat -a` run; bad input fails before the model loads, naming the file; `--mic` without the
//! `mic` feature says how to build it.

mod common;

use std::path::PathBuf;

use clap::Parser;
use qwen3_omni::cli_audio::{run_transcribe, TranscribeArgs};
use qwen3_omni::cli_chat::ChatArgs;

#[derive(Parser)]
struct ChatCli {
    #[command(flatten)]
    chat: ChatArgs,
}

/// The fixture model converted with the tokenizer beside it (as the demo model is built).
fn model() -> (PathBuf, PathBuf) {
    let src = common::fixtures().join("models/tiny-real-vocab");
    let tok = common::repo_root().join(qwen3_omni::tokenizer::DEFAULT_TOKENIZER_PATH);
    assert!(tok.exists(), "{} is missing: run tools/fetch-tokenizer.sh", tok.display());
    let dir = std::env::temp_dir().join(format!("qwen3vk-cli-audio-{}", std::process::id()));
    let stage = dir.join("ckpt");
    std::fs::create_dir_all(&stage).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with(".json") && !n.starts_with("manifest") || n.starts_with("model-") {
            std::fs::copy(e.path(), stage.join(&n)).unwrap();
        }
    }
    std::fs::copy(&tok, stage.join("tokenizer.json")).unwrap();
    let out = dir.join("tiny.gguf");
    quantizer::convert::convert(&stage, &out, &Default::default()).unwrap();
    (dir, out)
}

#[test]
fn audio_commands_run_and_refuse_bad_input() {
    let (dir, gguf) = model();
    let wav = common::fixtures().join("audio/privet_mir_44k_stereo.wav");
    let args = |audio: Option<PathBuf>, mic: bool| TranscribeArgs {
        audio,
        mic,
        model: Some(gguf.clone()),
        prompt: qwen3_omni::cli_audio::TRANSCRIBE_PROMPT.into(),
        n_predict: 4,
        device: None,
    };
    run_transcribe(&args(Some(wav.clone()), false)).unwrap();
    let chat = ChatCli::parse_from([
        "chat",
        "-m",
        gguf.to_str().unwrap(),
        "-a",
        wav.to_str().unwrap(),
        "-p",
        "Что ты слышишь?",
        "-n",
        "4",
    ]);
    qwen3_omni::cli_chat::run(&chat.chat).unwrap();

    let bad = dir.join("bad.wav");
    std::fs::write(&bad, b"RIFF\x04\x00\x00\x00WAVE").unwrap();
    let e = run_transcribe(&args(Some(bad), false)).unwrap_err().to_string();
    assert!(e.contains("bad.wav"), "{e}");
    #[cfg(not(feature = "mic"))]
    {
        let e = run_transcribe(&args(None, true)).unwrap_err().to_string();
        assert!(e.contains("--features mic"), "{e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
