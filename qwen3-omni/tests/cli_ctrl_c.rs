//! Ctrl-C in `qwen3-omni-vk chat` (interactive): a press while the model replies stops that reply
//! and the chat goes on; a press while it waits for input ends the program with status 130.
#![cfg(unix)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::child::{reader, sigint, wait_for};

#[test]
fn ctrl_c_stops_the_reply_then_ends_the_idle_chat() {
    let (dir, model) = common::tiny_model_with_tokenizer("cli-ctrl-c");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"))
        .args(["chat", "-m"])
        .arg(&model)
        .args(["-n", "100000", "-c", "512"])
        .env("QWEN3VK_PIPELINE_CACHE", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qwen3-omni-vk");
    let pid = child.id();
    let out = reader(child.stdout.take().unwrap());
    let err = reader(child.stderr.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let (mut o, mut e) = (String::new(), String::new());
    wait_for(&err, &mut e, "the interactive prompt", |s| s.contains("interactive chat"));

    // Two replies, each stopped by a press once it has produced some text.
    for (i, line) in ["Tell me a long story.", "Another one."].iter().enumerate() {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let before = o.len();
        wait_for(&out, &mut o, "reply text", |s| s.len() > before + 8);
        sigint(pid);
        wait_for(&err, &mut e, "the stopped reply's statistics", |s| s.matches("tok/s generation]").count() == i + 1);
    }
    assert_eq!(e.matches("[stopped]").count(), 2, "{e}");

    // Idle: a press ends the program.
    sigint(pid);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status; stderr:\n{e}");
    let _ = std::fs::remove_dir_all(dir);
}
