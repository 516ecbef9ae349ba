//! Driving the CLI as a child process: signals, stdout/stderr read on threads, waiting for text
//! with a deadline (tests never hang).
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Sends `kill -SIG pid` (`sig`: "INT", "TERM", ...).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("kill").success();
    assert!(ok, "kill -{sig} {pid}");
}

pub fn sigint(pid: u32) {
    signal(pid, "INT");
}

/// Waits until `pred` holds for the text read so far from `rx` (appended to `buf`); at most 120 s.
pub fn wait_for(rx: &mpsc::Receiver<Vec<u8>>, buf: &mut String, what: &str, pred: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pred(buf) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => buf.push_str(&String::from_utf8_lossy(&b)),
            Err(_) => panic!("timed out waiting for {what}; so far:\n{buf}"),
        }
    }
}

/// Everything left in `rx` until the writer closes (at most `secs`).
pub fn drain(rx: &mpsc::Receiver<Vec<u8>>, buf: &mut String, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => buf.push_str(&String::from_utf8_lossy(&b)),
            Err(_) => break,
        }
    }
}

/// A thread that forwards what `r` yields, chunk by chunk.
pub fn reader(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = r.read(&mut b) {
            if n == 0 || tx.send(b[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the child to exit, at most `secs` (then kills it and fails).
pub fn wait_exit(child: &mut Child, secs: u64, what: &str) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
