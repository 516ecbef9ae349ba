//! The C API from C: examples/c/chat.c is compiled with the system C compiler (`$CC`, else `cc`) and
//! linked against the static library libqwen3_omni.a, then run on a tiny GGUF on lavapipe with
//! the validation layer on. A second test runs it under valgrind memcheck (.ci/run installs
//! valgrind; without it the test fails).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The system libraries the static library needs on this platform, as printed by
/// `cargo rustc -p qwen3-omni --lib --crate-type staticlib -- --print native-static-libs`.
fn native_libs() -> &'static [&'static str] {
    if cfg!(target_os = "linux") {
        &["-ldl", "-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"]
    } else if cfg!(target_os = "macos") {
        &["-lSystem", "-lc", "-lm"]
    } else {
        &[]
    }
}

/// The static library built with this test: `cargo test` leaves it in target/<profile>/deps/ as
/// libqwen3_omni-<hash>.a (only `cargo build` copies it to target/<profile>/, and with other
/// feature flags, so that copy may be stale). The newest one is from the current sources.
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().expect("target/<profile>/deps").to_path_buf();
    let newest = std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("libqwen3_omni-") && n.ends_with(".a")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    match newest {
        Some(e) => e.path(),
        None => deps.parent().unwrap().join("libqwen3_omni.a"),
    }
}

/// Compiles and links examples/c/chat.c into `dir`; returns the executable.
fn build_example(dir: &Path) -> PathBuf {
    let root = common::repo_root();
    let lib = static_lib();
    eprintln!("linking {}", lib.display());
    assert!(lib.exists(), "{} is missing (the qwen3-omni lib is built as a staticlib too)", lib.display());
    let exe = dir.join("chat");
    // The cc crate would pick the same compiler; it is not used because, as a dev-dependency, it
    // changes the build-script graph and forces shaderc's long C++ rebuild (Cargo.toml).
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.arg("-std=c11")
        .arg("-g")
        .arg("-O1")
        .arg("-Wall")
        .arg("-Wextra")
        .arg("-Werror")
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("examples/c/chat.c"))
        .arg(&lib)
        .args(native_libs())
        .arg("-o")
        .arg(&exe);
    let out = cmd.output().expect("running the C compiler");
    assert!(
        out.status.success(),
        "compiling examples/c/chat.c failed:\n{:?}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Runs the example (two text turns, the first spoken into `reply_wav` with at most `max_frames`
/// frames, and one turn with a recording, `max_tokens` each), optionally under a wrapper command.
fn run_example(
    exe: &Path,
    model: &Path,
    max_tokens: u32,
    reply_wav: &Path,
    max_frames: u32,
    validation: bool,
    wrapper: &[&str],
) -> std::process::Output {
    let mut cmd = match wrapper.split_first() {
        Some((w, rest)) => {
            let mut c = Command::new(w);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.arg(model)
        .arg("What is the capital of France?")
        .arg(max_tokens.to_string())
        .arg(common::fixtures().join("audio/privet_mir_16k_mono.wav"))
        .arg(reply_wav)
        .arg(max_frames.to_string())
        .env("QWEN3VK_VALIDATION", if validation { "1" } else { "0" })
        .env("QWEN3VK_PIPELINE_CACHE", "off");
    cmd.output().expect("running the C example")
}

#[test]
fn c_example_streams_a_reply() {
    let (dir, model) = common::tiny_model_with_tokenizer("capi-c");
    let exe = build_example(&dir);
    let reply_wav = dir.join("reply.wav");
    let out = run_example(&exe, &model, 6, &reply_wav, 8, true, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(out.status.success(), "the C example exited with {:?}", out.status);
    assert!(stdout.contains("> What is the capital of France?") && stdout.contains("> And of Germany?"));
    assert!(stdout.contains("> What is said in this recording?"));
    assert_eq!(stderr.matches("reply tokens").count(), 3, "three replies");
    check_reply_wav(&reply_wav, &stderr, 8);
    let _ = std::fs::remove_dir_all(dir);
}

/// valgrind memcheck over the whole C example (Rust library, Vulkan loader, lavapipe): no invalid
/// reads or writes, no uses of uninitialised values, no definite or indirect leaks. (Only
/// "possibly lost" blocks remain: process-lifetime hash maps, ours and the tokenizer library's,
/// whose pointers point inside the allocation.) tools/valgrind.supp is for Mesa, loader or ld.so
/// versions that report their own allocations (one entry: ld.so's RPATH strncmp), never for ours.
/// Without valgrind it fails, saying so; to leave it out, pass `--skip c_example_is_clean_under_valgrind`
/// to the test binary (it takes about 3 minutes on 2 cores).
#[test]
fn c_example_is_clean_under_valgrind() {
    assert!(
        Command::new("valgrind").arg("--version").output().is_ok(),
        "valgrind is not installed, so the C example cannot be checked under memcheck \
         (apt-get install valgrind; .ci/run does; or pass --skip c_example_is_clean_under_valgrind)"
    );
    let (dir, model) = common::tiny_model_with_tokenizer("capi-valgrind");
    let exe = build_example(&dir);
    let supp = common::repo_root().join("tools/valgrind.supp");
    let supp_arg = format!("--suppressions={}", supp.display());
    let log = dir.join("memcheck.log");
    let log_arg = format!("--log-file={}", log.display());
    // Validation off under valgrind: the layer is checked by the test above, and under memcheck
    // it multiplies the run time (~10 min instead of ~1.5).
    let reply_wav = dir.join("reply.wav");
    let out = run_example(
        &exe,
        &model,
        2,
        &reply_wav,
        3,
        false,
        &[
            "valgrind",
            "--tool=memcheck",
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            &supp_arg,
            &log_arg,
        ],
    );
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: String =
        report.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    eprintln!("--- memcheck (tail)\n{tail}");
    assert!(
        out.status.success(),
        "the C example under valgrind exited with {:?}; stderr:\n{}\nmemcheck:\n{report}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    check_reply_wav(&reply_wav, &String::from_utf8_lossy(&out.stderr), 3);
    let _ = std::fs::remove_dir_all(dir);
}

/// The spoken first reply: a 16-bit mono 24 kHz WAV whose sample count is > 0, equals what the PCM
/// callback received (the example's `[speech: N samples in C chunks, T frames` line) and is a
/// whole decode of T frames, 1920·T − 555, with 1 ≤ T ≤ `max_frames`.
fn check_reply_wav(path: &Path, stderr: &str, max_frames: usize) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() >= 44 && &b[0..4] == b"RIFF" && &b[8..16] == b"WAVEfmt ", "{}: not a WAV", path.display());
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    assert_eq!((u16_at(20), u16_at(22), u32_at(24), u16_at(34)), (1, 1, 24000, 16), "PCM16 mono 24 kHz");
    assert_eq!(&b[36..40], b"data");
    let data = u32_at(40) as usize;
    assert_eq!(b.len(), 44 + data, "the data size in the header");
    assert_eq!(u32_at(4) as usize, 36 + data, "the RIFF size in the header");
    let samples = data / 2;
    assert!(samples > 0, "no samples in {}", path.display());
    let line = stderr.lines().find(|l| l.starts_with("[speech: ")).expect("the example's [speech: …] line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let delivered: usize = words[1].parse().unwrap();
    let chunks: usize = words[4].parse().unwrap();
    let frames: usize = words[6].parse().unwrap();
    assert_eq!(samples, delivered, "{line}");
    assert!((1..=max_frames).contains(&frames), "{line}");
    assert_eq!(samples, 1920 * frames - 555, "{line}");
    assert!(chunks >= 1, "{line}");
}

/// The static library carries the engine, not the command line: no clap or anyhow objects.
#[test]
fn static_library_holds_no_cli_crates() {
    let lib = static_lib();
    let out = Command::new("ar").arg("t").arg(&lib).output().expect("running ar (binutils)");
    assert!(out.status.success(), "ar t {}: {}", lib.display(), String::from_utf8_lossy(&out.stderr));
    let members = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(members.lines().any(|m| m.starts_with("qwen3_omni-")), "{}: no qwen3_omni objects?", lib.display());
    let cli: Vec<&str> =
        members.lines().filter(|m| ["clap", "anyhow", "quantizer_cli"].iter().any(|c| m.starts_with(c))).collect();
    assert!(cli.is_empty(), "{} links command-line crates: {cli:?}", lib.display());
}
