//! The panic hook: a panic on a thread inside a library call is caught at the boundary
//! (`error::guard`) and returned as `QWEN3_OMNI_ERR_INTERNAL`; this hook keeps Rust's default
//! hook from also printing its message and backtrace to the host's stderr, and sends the
//! message to the log callback (if one is set) instead.
//!
//! It is installed once, by the first call that goes through the boundary, and wraps the hook
//! the process had then (Rust's default, or a Rust host's own): panics outside library calls,
//! and on threads that are not inside one, still go to that hook. A host that sets its own hook
//! after that replaces this one (panics inside the library then reach the host's hook; they are
//! still caught and returned as `QWEN3_OMNI_ERR_INTERNAL`).

use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::sync::Once;

thread_local! {
    /// How many library calls this thread is inside (a callback may call into the library again).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Marks the current thread as inside a library call while it lives.
pub(super) struct InCall(());

impl InCall {
    pub(super) fn enter() -> InCall {
        install();
        DEPTH.with(|d| d.set(d.get() + 1));
        InCall(())
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

fn inside() -> bool {
    DEPTH.try_with(|d| d.get() > 0).unwrap_or(false)
}

fn install() {
    static INSTALL: Once = Once::new();
    // The hook cannot be changed from a panicking thread (a call from a destructor during an
    // unwind); a later call installs it.
    if std::thread::panicking() {
        return;
    }
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if inside() {
                super::log::error_line(&describe(info));
            } else {
                previous(info);
            }
        }));
    });
}

/// "panicked at FILE:LINE:COL: MESSAGE", as Rust's default hook words it (no backtrace).
fn describe(info: &PanicHookInfo<'_>) -> String {
    let p = info.payload();
    let msg = p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(|s| s.as_str()));
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let at = info.location().map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
    format!(
        "internal error (a bug, returned as QWEN3_OMNI_ERR_INTERNAL): thread '{name}' panicked{at}: {}",
        msg.unwrap_or("(a panic payload that is not text)")
    )
}
