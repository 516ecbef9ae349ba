//! `qwen3-omni-vk speak` on the demo model (lavapipe): the WAV holds exactly 1920·T − 555 samples
//! for the T frames spoken, in the format asked for, and nothing is left behind on an error.

use std::path::{Path, PathBuf};
use std::process::Command;

use qwen3_omni::code2wav::wav::read_wav;

fn tmpdir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("qwen3vk-speak-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// models/demo.gguf, built once (by the binary, from the fixture checkpoint) before any test uses
/// the default model.
fn demo() -> PathBuf {
    static DEMO: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DEMO.get_or_init(|| {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/demo.gguf");
        if !p.exists() {
            let wav = std::env::temp_dir().join(format!("qwen3vk-demo-{}.wav", std::process::id()));
            let o = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"))
                .args(["speak", "-p", "a", "--greedy", "--max-frames", "1", "-o"])
                .arg(&wav)
                .output()
                .unwrap();
            let _ = std::fs::remove_file(&wav);
            assert!(p.exists(), "building the demo model: {}", String::from_utf8_lossy(&o.stderr));
        }
        p
    })
    .clone()
}

fn speak(args: &[&str]) -> (bool, String) {
    demo();
    let out = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk")).arg("speak").args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn frames_of(stderr: &str) -> u64 {
    let s = stderr.split("[speech: ").nth(1).unwrap_or_else(|| panic!("no summary in {stderr}"));
    s.split(' ').next().unwrap().parse().unwrap()
}

fn format_tag(p: &Path) -> u16 {
    let b = std::fs::read(p).unwrap();
    u16::from_le_bytes([b[20], b[21]])
}

#[test]
fn speak_writes_a_wav_of_the_length_its_frames_imply() {
    let dir = tmpdir("ok");
    for (name, extra) in [("f32.wav", vec!["--greedy"]), ("s16.wav", vec!["--pcm16", "--seed", "7"])] {
        let out = dir.join(name);
        let o = out.to_str().unwrap();
        let mut args = vec!["-p", "Привет мир", "-o", o, "--max-frames", "12"];
        args.extend(extra);
        let (ok, err) = speak(&args);
        assert!(ok, "{err}");
        let t = frames_of(&err);
        assert!((1..=12).contains(&t), "{t} frames: {err}");
        let (rate, samples) = read_wav(&out).unwrap();
        assert_eq!(rate, 24_000);
        assert_eq!(samples.len() as u64, 1920 * t - 555, "{name}: {t} frames");
        assert!(samples.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
        assert_eq!(format_tag(&out), if name == "f32.wav" { 3 } else { 1 });
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn speak_error_leaves_no_partial_file() {
    let dir = tmpdir("err");
    let out = dir.join("out.wav");
    std::fs::write(&out, b"old").unwrap();
    let (ok, err) = speak(&["-p", "Привет мир", "-o", out.to_str().unwrap(), "--voice", "nobody", "--greedy"]);
    assert!(!ok);
    assert!(err.contains("nobody") || err.contains("speaker"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"old", "the existing file was touched");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "left behind: {left:?}");
    let (ok, err) = speak(&["-p", "  ", "-o", out.to_str().unwrap()]);
    assert!(!ok && err.contains("empty"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn chat_audio_out_speaks_the_reply_while_it_streams() {
    demo();
    let dir = tmpdir("chat");
    let out = dir.join("reply.wav");
    let o = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"))
        .args(["chat", "-p", "Привет", "-n", "6", "--seed", "3", "--greedy", "--max-frames", "10", "--pcm16"])
        .args(["--audio-out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!o.stdout.is_empty(), "no text reply");
    let t = frames_of(&err);
    let (_, samples) = read_wav(&out).unwrap();
    assert_eq!(samples.len() as u64, 1920 * t - 555, "{t} frames");
    assert_eq!(format_tag(&out), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(not(feature = "play"))]
#[test]
fn play_without_the_feature_says_how_to_build_it() {
    let (ok, err) = speak(&["-p", "Привет мир", "--play"]);
    assert!(!ok && err.contains("--features play"), "{err}");
}

#[test]
fn bench_speech_runs_on_the_demo_model() {
    let demo = demo();
    for extra in [vec!["--greedy"], vec!["--no-thinker", "--hf-chunked"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"))
            .args(["bench-speech", "-m", demo.to_str().unwrap(), "-n", "4", "--tokens", "3", "--runs", "1"])
            .args(&extra)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
        assert!(out.contains("run 1: request → first audio") && out.contains("real-time factor"), "{out}");
    }
}

#[test]
fn interactive_chat_speaks_each_reply_into_its_own_file() {
    use std::io::Write;
    demo();
    let dir = tmpdir("chat2");
    let out = dir.join("r.wav");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"))
        .args(["chat", "-n", "4", "--seed", "1", "--greedy", "--max-frames", "6", "--audio-out", out.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all("Привет\nКак дела?\n\n".as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let counts: Vec<u64> =
        err.split("[speech: ").skip(1).map(|s| s.split(' ').next().unwrap().parse().unwrap()).collect();
    assert_eq!(counts.len(), 2, "{err}");
    for (f, t) in [("r.wav", counts[0]), ("r-2.wav", counts[1])] {
        let (_, samples) = read_wav(&dir.join(f)).unwrap();
        assert_eq!(samples.len() as u64, 1920 * t - 555, "{f}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn chat_with_audio_in_speaks_the_answer() {
    demo();
    let dir = tmpdir("chat-a");
    // One second of a 440 Hz tone, 16-bit mono at 16 kHz.
    let samples: Vec<f32> =
        (0..16_000).map(|i| 0.25 * (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin()).collect();
    let wav_in = dir.join("q.wav");
    qwen3_omni::code2wav::wav::write_wav(&wav_in, &samples, 16_000, qwen3_omni::code2wav::wav::WavFormat::Pcm16)
        .unwrap();
    let out = dir.join("a.wav");
    let o = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"))
        .args(["chat", "-a", wav_in.to_str().unwrap(), "-p", "Что это?", "-n", "6", "--greedy", "--max-frames", "8"])
        .args(["--audio-out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let t = frames_of(&err);
    let (_, samples) = read_wav(&out).unwrap();
    assert_eq!(samples.len() as u64, 1920 * t - 555, "{t} frames");
    let _ = std::fs::remove_dir_all(dir);
}
