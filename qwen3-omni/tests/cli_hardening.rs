//! Issue 16 on the command line, each case as a hostile user would try it (child processes on the
//! tiny model; every wait is bounded): output paths that must not be destroyed, signals that must
//! leave no temporary files, Ctrl-C stopping speech, broken pipes and full disks, `-n 0`, the audio
//! path's context, flags checked before loading, clear model-path errors, plain logs.
#![cfg(unix)]

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::child::{drain, reader, sigint, signal, wait_exit, wait_for};

/// The tiny model with its tokenizer, one per test binary (a fixed directory, reused by reruns).
fn model() -> &'static Path {
    static M: OnceLock<PathBuf> = OnceLock::new();
    M.get_or_init(|| common::tiny_model_with_tokenizer_at(&std::env::temp_dir().join("qwen3vk-cli-hardening")))
}

/// A fresh directory, removed when dropped.
struct TmpDir(PathBuf);

impl TmpDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir(tag: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("qwen3vk-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

fn cli() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"));
    c.env("QWEN3VK_PIPELINE_CACHE", "off").env_remove("QWEN3VK_LOG");
    c
}

fn run(args: &[&str]) -> Output {
    cli().args(args).stdin(Stdio::null()).output().expect("running qwen3-omni-vk")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn m() -> &'static str {
    model().to_str().unwrap()
}

/// Fails with the output unless the command failed with `status` and its stderr says each of
/// `says`, without a panic and without loading the model.
fn refused_before_loading(o: &Output, says: &[&str]) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "status; stderr:\n{err}");
    for s in says {
        assert!(err.contains(s), "stderr should say {s:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("loading the Thinker") && !err.contains("device:"), "checked after loading:\n{err}");
    assert!(o.stdout.is_empty(), "stdout: {}", text(&o.stdout));
}

fn entries(d: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    v.sort();
    v
}

fn is_wav(p: &Path) -> bool {
    std::fs::read(p).map(|b| b.len() > 44 && &b[..4] == b"RIFF" && &b[8..12] == b"WAVE").unwrap_or(false)
}

fn speak_to(out: &Path, frames: &str) -> Output {
    run(&["speak", "-m", m(), "-p", "hello there", "--max-frames", frames, "-o", out.to_str().unwrap()])
}

/// Item 1: read-only files, FIFOs and directories are refused untouched (before loading);
/// symlinks are written through; a character device node stays one.
#[test]
fn output_paths_are_never_destroyed() {
    let d = tmpdir("out-paths");
    let ro = d.path().join("ro.wav");
    std::fs::write(&ro, b"keep").unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).unwrap();
    let o = speak_to(&ro, "3");
    refused_before_loading(&o, &["-o/--output", "read-only", "0444"]);
    assert_eq!(std::fs::read(&ro).unwrap(), b"keep");
    assert_eq!(std::fs::metadata(&ro).unwrap().permissions().mode() & 0o777, 0o444);
    // chat --audio-out checks the same before loading.
    let o = run(&["chat", "-m", m(), "-p", "hi", "-n", "2", "--audio-out", ro.to_str().unwrap()]);
    refused_before_loading(&o, &["--audio-out", "read-only"]);
    assert_eq!(std::fs::read(&ro).unwrap(), b"keep");

    let fifo = d.path().join("fifo.wav");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut c = cli()
        .args(["speak", "-m", m(), "-p", "hi", "--max-frames", "3", "-o"])
        .arg(&fifo)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = wait_exit(&mut c, 60, "speak -o FIFO");
    assert_eq!(st.code(), Some(1));
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");

    let o = speak_to(d.path(), "3");
    refused_before_loading(&o, &["directory"]);

    // A symlink: the target gets the WAV, the link stays a link.
    let target = d.path().join("target.wav");
    std::fs::write(&target, b"old").unwrap();
    let link = d.path().join("link.wav");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = speak_to(&link, "3");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert!(is_wav(&target), "the target holds no WAV");

    // As root: a character device node made here (1:3, like /dev/null) is written to, not replaced.
    let node = d.path().join("null");
    if Command::new("mknod").arg(&node).args(["c", "1", "3"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    {
        let o = speak_to(&node, "3");
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(std::fs::symlink_metadata(&node).unwrap().file_type().is_char_device(), "the device node was replaced");
    } else {
        eprintln!("not root: the character-device case is skipped");
    }
    let left: Vec<String> = entries(d.path()).into_iter().filter(|n| n.contains(".tmp")).collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");
}

/// Waits until a temporary output file (`.NAME.tmp-PID`) appears in `d`.
fn wait_for_temporary(d: &Path, child: &mut std::process::Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !entries(d).iter().any(|n| n.contains(".tmp-")) {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("{what}: ended ({s}) before its temporary file appeared");
        }
        assert!(Instant::now() < deadline, "{what}: no temporary file after 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Item 4: SIGTERM or SIGINT while `speak` or `quantize` writes leaves nothing behind.
#[test]
fn signals_leave_no_temporary_files() {
    for (sig, code) in [("TERM", 143), ("INT", 130)] {
        let d = tmpdir("sig-speak");
        let out = d.path().join("out.wav");
        let mut c = cli()
            .args(["speak", "-m", m(), "-p", "a long text to read", "--max-frames", "1500", "-o"])
            .arg(&out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_temporary(d.path(), &mut c, "speak");
        signal(c.id(), sig);
        let st = wait_exit(&mut c, 60, "speak after a signal");
        assert_eq!(st.code(), Some(code), "speak, SIG{sig}");
        assert!(entries(d.path()).is_empty(), "SIG{sig} during speak left {:?}", entries(d.path()));
    }
    // chat --audio-out: SIGTERM while the reply is spoken into its file.
    let d = tmpdir("sig-chat");
    let out = d.path().join("reply.wav");
    let mut c = cli()
        .args(["chat", "-m", m(), "-p", "Tell me a story", "-n", "100000", "-c", "2048", "--max-frames", "1500"])
        .arg("--audio-out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_temporary(d.path(), &mut c, "chat --audio-out");
    std::thread::sleep(Duration::from_millis(500));
    signal(c.id(), "TERM");
    let st = wait_exit(&mut c, 60, "chat --audio-out after SIGTERM");
    assert_eq!(st.code(), Some(143));
    assert!(entries(d.path()).is_empty(), "SIGTERM during chat --audio-out left {:?}", entries(d.path()));

    let d = tmpdir("sig-quantize");
    let out = d.path().join("big.gguf");
    let mut c =
        cli().args(["quantize", "--layers", "1", "--synthetic"]).arg(&out).stderr(Stdio::null()).spawn().unwrap();
    wait_for_temporary(d.path(), &mut c, "quantize");
    sigint(c.id());
    let st = wait_exit(&mut c, 60, "quantize after SIGINT");
    assert_eq!(st.code(), Some(130));
    assert!(entries(d.path()).is_empty(), "SIGINT during quantize left {:?}", entries(d.path()));
}

/// Item 5: a press while `chat --audio-out` speaks (the text is done) stops the speech at the next
/// frame; the file up to there is kept and the program ends normally.
#[test]
fn ctrl_c_stops_the_speech_of_a_reply() {
    let d = tmpdir("speech-stop");
    let out = d.path().join("reply.wav");
    let mut c = cli()
        .args(["chat", "-m", m(), "-p", "Tell me a story", "-n", "3", "--max-frames", "1500", "--seed", "5"])
        .arg("--audio-out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (so, se) = (reader(c.stdout.take().unwrap()), reader(c.stderr.take().unwrap()));
    let (mut o, mut e) = (String::new(), String::new());
    // The reply's text ends with a newline; its speech goes on (up to 1,500 frames, 2 minutes).
    wait_for(&so, &mut o, "the reply's text", |s| s.ends_with('\n'));
    std::thread::sleep(Duration::from_millis(300));
    sigint(c.id());
    let t = Instant::now();
    let st = wait_exit(&mut c, 30, "chat after Ctrl-C during speech");
    let after = t.elapsed();
    drain(&se, &mut e, 5);
    assert_eq!(st.code(), Some(0), "status; stderr:\n{e}");
    assert!(e.contains("stopped: Cancelled") && e.contains("[stopped]"), "{e}");
    assert!(after < Duration::from_secs(10), "the speech took {after:?} to stop");
    assert!(is_wav(&out), "the audio so far is kept");
}

/// Item 3: a closed stdout pipe ends quietly with 141, a full disk is an error; no panic.
#[test]
fn broken_pipe_and_full_disk_do_not_panic() {
    let mut c = cli()
        .args(["chat", "-m", m(), "-p", "hi", "-n", "64", "-c", "256"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(c.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(c.stdout.take()); // `| head -c 1`
    let se = reader(c.stderr.take().unwrap());
    let st = wait_exit(&mut c, 60, "chat into a closed pipe");
    let mut e = String::new();
    drain(&se, &mut e, 5);
    assert_eq!(st.code(), Some(141), "stderr:\n{e}");
    assert!(!e.contains("panicked") && !e.contains("error"), "{e}");

    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let o = cli().args(["chat", "-m", m(), "-p", "hi", "-n", "4", "-c", "256"]).stdout(full).output().unwrap();
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("writing to standard output") && e.contains("No space left"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

/// Item 7: `-n 0` generates nothing, in chat and in the audio path.
#[test]
fn n_zero_generates_nothing() {
    let o = run(&["chat", "-m", m(), "-p", "hi", "-n", "0", "-c", "256"]);
    let e = text(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert_eq!(text(&o.stdout).trim(), "", "stderr:\n{e}");
    assert!(e.contains("0 generated"), "{e}");

    let d = tmpdir("n0");
    let wav = write_wav(d.path(), "q.wav", 2.0);
    let o = run(&["transcribe", "-m", m(), "-a", wav.to_str().unwrap(), "-n", "0"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "");
}

/// A 16 kHz mono 16-bit WAV of the library's synthetic test signal.
fn write_wav(d: &Path, name: &str, seconds: f64) -> PathBuf {
    let p = d.join(name);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&p, spec).unwrap();
    for s in qwen3_omni::audio::synthetic_audio(seconds) {
        w.write_sample((s * 20_000.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    p
}

/// Item 6: the audio path honours `-c`, refuses a prompt that does not fit before any GPU work,
/// and stops on Ctrl-C.
#[test]
fn audio_path_honours_the_context_and_ctrl_c() {
    let d = tmpdir("audio-ctx");
    let wav = write_wav(d.path(), "ten.wav", 10.0);
    let o = run(&["chat", "-m", m(), "-a", wav.to_str().unwrap(), "-c", "64"]);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("does not fit the context of 64") && e.contains("-c"), "{e}");
    assert!(!e.contains("AudioTower") && !e.contains("device:"), "checked after GPU work:\n{e}");

    let mut c = cli()
        .args(["chat", "-m", m(), "-a", wav.to_str().unwrap(), "-n", "100000", "-c", "4096"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (so, se) = (reader(c.stdout.take().unwrap()), reader(c.stderr.take().unwrap()));
    let (mut o, mut e) = (String::new(), String::new());
    wait_for(&so, &mut o, "the answer's text", |s| s.len() > 8);
    sigint(c.id());
    let st = wait_exit(&mut c, 30, "an audio turn after Ctrl-C");
    drain(&se, &mut e, 5);
    assert_eq!(st.code(), Some(0), "{e}");
    assert!(e.contains("[stopped]"), "{e}");
}

/// Item 10: flags are checked before the model loads, each error naming its flag.
#[test]
fn flags_are_checked_before_loading() {
    let cases: &[(&[&str], &str)] = &[
        (&["--temp", "-1"], "--temp -1"),
        (&["--temp", "NaN"], "--temp NaN"),
        (&["--top-k", "5000"], "--top-k 5000"),
        (&["--top-p", "0"], "--top-p 0"),
        (&["--top-p", "1.5"], "--top-p 1.5"),
        (&["--repeat-penalty", "0"], "--repeat-penalty 0"),
        (&["-c", "0"], "--ctx-size 0"),
        (&["--audio-out", "/tmp/x.wav", "--talker-temp", "-2"], "--talker-temp -2"),
        (&["--audio-out", "/tmp/x.wav", "--cp-top-p", "2"], "--cp-top-p 2"),
        (&["--audio-out", "/tmp/x.wav", "--max-frames", "0"], "--max-frames 0"),
        (&["--audio-out", "/tmp/x.wav", "--voice", "nobody"], "--voice"),
    ];
    for (flags, says) in cases {
        let mut args = vec!["chat", "-m", m(), "-p", "hi"];
        args.extend_from_slice(flags);
        let o = run(&args);
        refused_before_loading(&o, &[says]);
    }
    let o = run(&["speak", "-m", m(), "-p", "hi", "-o", "/tmp/x.wav", "--voice", "nobody"]);
    refused_before_loading(&o, &["--voice", "unknown voice \"nobody\""]);
}

/// Item 10: model paths that are not GGUF files are named as what they are, at once; each error is
/// said once.
#[test]
fn model_path_errors_are_clear_and_said_once() {
    let d = tmpdir("model-paths");
    let o = run(&["chat", "-m", d.path().to_str().unwrap(), "-p", "hi"]);
    refused_before_loading(&o, &["is a directory, not a GGUF file"]);

    let fifo = d.path().join("model.gguf");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut c = cli().args(["chat", "-m"]).arg(&fifo).args(["-p", "hi"]).stderr(Stdio::piped()).spawn().unwrap();
    let st = wait_exit(&mut c, 30, "chat -m FIFO");
    assert_eq!(st.code(), Some(1));

    let missing = d.path().join("missing.gguf");
    let o = run(&["chat", "-m", missing.to_str().unwrap(), "-p", "hi"]);
    let e = text(&o.stderr);
    assert_eq!(e.matches("missing.gguf").count(), 1, "said more than once:\n{e}");
    assert_eq!(e.matches("No such file").count(), 1, "{e}");

    let cut = d.path().join("cut.gguf");
    std::fs::write(&cut, &std::fs::read(model()).unwrap()[..24]).unwrap();
    let o = run(&["chat", "-m", cut.to_str().unwrap(), "-p", "hi"]);
    refused_before_loading(&o, &["truncated"]);
}

/// Item 10: logs written to a file or pipe carry no colour codes.
#[test]
fn logs_are_plain_text_when_stderr_is_not_a_terminal() {
    let o =
        cli().args(["chat", "-m", m(), "-p", "hi", "-n", "1", "-c", "64"]).env("QWEN3VK_LOG", "info").output().unwrap();
    let e = text(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("INFO"), "no log line to check:\n{e}");
    assert!(!e.contains('\u{1b}'), "ANSI escape codes in a non-terminal log:\n{e:?}");
}

/// Item 2: `quantize` refuses an output that is one of its inputs (or inside the checkpoint), and
/// the input is untouched. Run on a copy of the fixture checkpoint.
/// The tiny-real-vocab checkpoint (config, side files, shards) copied to `dir/ckpt`, with or
/// without its tokenizer.json.
fn checkpoint_copy(dir: &Path, tokenizer: bool) -> PathBuf {
    let src = common::fixtures().join("models/tiny-real-vocab");
    let ck = dir.join("ckpt");
    std::fs::create_dir_all(&ck).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().into_owned();
        let json = n.ends_with(".json") && !n.starts_with("manifest") && (tokenizer || n != "tokenizer.json");
        if json || n.starts_with("model-") {
            std::fs::copy(e.path(), ck.join(&n)).unwrap();
        }
    }
    ck
}

#[test]
fn quantize_never_overwrites_its_input() {
    let d = tmpdir("quantize-input");
    let ck = checkpoint_copy(d.path(), true);
    let shard = ck.join("model-00001-of-00004.safetensors");
    let before = std::fs::read(&shard).unwrap();
    let o = run(&["quantize", ck.to_str().unwrap(), shard.to_str().unwrap()]);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("model-00001-of-00004.safetensors"), "{e}");
    assert_eq!(std::fs::read(&shard).unwrap(), before, "the input shard changed");
    let o = run(&["quantize", ck.to_str().unwrap(), ck.join("out.gguf").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(!ck.join("out.gguf").exists());
    assert!(entries(&ck).iter().all(|n| !n.contains(".tmp")), "{:?}", entries(&ck));
}

#[test]
fn quantize_refuses_a_checkpoint_without_a_tokenizer() {
    let d = tmpdir("quantize-notok");
    let ck = checkpoint_copy(d.path(), false);
    let out = d.path().join("out.gguf");
    let o = run(&["quantize", ck.to_str().unwrap(), out.to_str().unwrap()]);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains(&ck.join("tokenizer.json").display().to_string()) && e.contains("--tokenizer"), "{e}");
    assert!(!out.exists(), "an output file was left");
    assert!(entries(d.path()).iter().all(|n| !n.contains(".tmp")), "{:?}", entries(d.path()));
    // An unknown preset is refused by name before anything is read.
    let o = run(&["quantize", ck.to_str().unwrap(), out.to_str().unwrap(), "--preset", "q4_k"]);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("q4_k") && e.contains("q8_0-hq"), "{e}");
}
