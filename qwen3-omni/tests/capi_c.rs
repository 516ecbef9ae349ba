//! The C API from C: examples/c/chat.c is compiled with the system C compiler (`$CC`, else `cc`) and
//! linked against the static library libqwen3_omni.a, then run on a tiny GGUF on lavapipe with
//! the validation layer on. A second test runs it under valgrind memcheck when valgrind is
//! installed (.ci/run installs it).

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

/// Runs the example (two text turns and one with a recording, `max_tokens` each), optionally under
/// a wrapper command.
fn run_example(exe: &Path, model: &Path, max_tokens: u32, validation: bool, wrapper: &[&str]) -> std::process::Output {
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
        .env("QWEN3VK_VALIDATION", if validation { "1" } else { "0" })
        .env("QWEN3VK_PIPELINE_CACHE", "off");
    cmd.output().expect("running the C example")
}

#[test]
fn c_example_streams_a_reply() {
    let (dir, model) = common::tiny_model_with_tokenizer("capi-c");
    let exe = build_example(&dir);
    let out = run_example(&exe, &model, 6, true, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(out.status.success(), "the C example exited with {:?}", out.status);
    assert!(stdout.contains("> What is the capital of France?") && stdout.contains("> And of Germany?"));
    assert!(stdout.contains("> What is said in this recording?"));
    assert_eq!(stderr.matches("reply tokens").count(), 3, "three replies");
    assert!(stderr.contains("QWEN3_OMNI_ERR_NOT_AVAILABLE"), "speech output should say it is not available");
    let _ = std::fs::remove_dir_all(dir);
}

/// valgrind memcheck over the whole C example (Rust library, Vulkan loader, lavapipe): no invalid
/// reads or writes, no uses of uninitialised values, no definite or indirect leaks. (Only
/// "possibly lost" blocks remain: process-lifetime hash maps, ours and the tokenizer library's,
/// whose pointers point inside the allocation.) tools/valgrind.supp is for Mesa or loader
/// versions that report their own allocations; it suppresses nothing today.
/// QWEN3VK_SKIP_VALGRIND=1 skips it (about 1.5 minutes on 2 cores).
#[test]
fn c_example_is_clean_under_valgrind() {
    if std::env::var_os("QWEN3VK_SKIP_VALGRIND").is_some_and(|v| v == "1") {
        eprintln!("QWEN3VK_SKIP_VALGRIND=1: skipped");
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind is not installed: skipped (apt-get install valgrind; .ci/run does)");
        return;
    }
    let (dir, model) = common::tiny_model_with_tokenizer("capi-valgrind");
    let exe = build_example(&dir);
    let supp = common::repo_root().join("tools/valgrind.supp");
    let supp_arg = format!("--suppressions={}", supp.display());
    let log = dir.join("memcheck.log");
    let log_arg = format!("--log-file={}", log.display());
    // Validation off under valgrind: the layer is checked by the test above, and under memcheck
    // it multiplies the run time (~10 min instead of ~1.5).
    let out = run_example(
        &exe,
        &model,
        2,
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
    let _ = std::fs::remove_dir_all(dir);
}
