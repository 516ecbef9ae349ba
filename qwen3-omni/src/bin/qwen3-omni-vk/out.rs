//! Standard output without panics: `print!` panics when stdout is a closed pipe (`| head -c 1`)
//! or a full disk (`> /dev/full`). Every command writes through [`print`] (the `out!` / `outln!`
//! macros); the first failure is remembered, later writes are skipped, streaming callbacks stop
//! generating, and `main` ends the program by it ([`exit_status`]): a broken pipe quietly with
//! status 141 (what a shell reports for a program killed by SIGPIPE), any other error (ENOSPC, EIO)
//! as an error naming standard output.

use std::io::Write;
use std::sync::Mutex;

static FAILED: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Writes `s` to stdout and flushes; false if this or an earlier write failed.
pub fn print(s: &str) -> bool {
    let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
    if failed.is_some() {
        return false;
    }
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|_| o.flush()) {
        Ok(()) => true,
        Err(e) => {
            *failed = Some(e);
            false
        }
    }
}

/// Whether a stdout write failed (the command should stop).
pub fn failed() -> bool {
    FAILED.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// The exit status owed to a failed stdout write, if one failed: 141 for a broken pipe (nothing
/// printed), 1 with the error on stderr otherwise.
pub fn exit_status() -> Option<u8> {
    let failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
    let e = failed.as_ref()?;
    Some(broken_pipe_or(e, 1))
}

/// 141 for a broken pipe; otherwise prints the error and returns `code`.
pub fn broken_pipe_or(e: &std::io::Error, code: u8) -> u8 {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return 141;
    }
    eprintln!("error: writing to standard output: {e}");
    code
}

/// `print!` through [`print`]; evaluates to false once stdout failed.
macro_rules! out {
    ($($t:tt)*) => { $crate::out::print(&format!($($t)*)) };
}

/// `println!` through [`print`]; evaluates to false once stdout failed.
macro_rules! outln {
    () => { $crate::out::print("\n") };
    ($($t:tt)*) => { $crate::out::print(&format!("{}\n", format_args!($($t)*))) };
}
