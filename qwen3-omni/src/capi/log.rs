//! The C log callback: a `tracing` layer, installed as the process's global subscriber the first
//! time a callback is set, that forwards every event at or above the chosen level.

use std::ffi::{c_void, CString};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::RwLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::qwen3_omni_log_callback;

struct Sink {
    cb: qwen3_omni_log_callback,
    user_data: usize,
}

static SINK: RwLock<Sink> = RwLock::new(Sink { cb: None, user_data: 0 });
/// The most verbose level delivered (`QWEN3_OMNI_LOG_*`); 0 = none.
static MAX_LEVEL: AtomicI32 = AtomicI32::new(0);

fn level_code(l: &Level) -> i32 {
    match *l {
        Level::ERROR => super::QWEN3_OMNI_LOG_ERROR,
        Level::WARN => super::QWEN3_OMNI_LOG_WARN,
        Level::INFO => super::QWEN3_OMNI_LOG_INFO,
        _ => super::QWEN3_OMNI_LOG_DEBUG,
    }
}

struct CLogLayer;

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for CLogLayer {
    fn enabled(&self, m: &Metadata<'_>, _: Context<'_, S>) -> bool {
        level_code(m.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = level_code(event.metadata().level());
        if level > MAX_LEVEL.load(Ordering::Relaxed) {
            return;
        }
        let mut t = Text::default();
        event.record(&mut t);
        let sink = SINK.read().unwrap_or_else(|e| e.into_inner());
        send(&sink, level, &format!("{}: {}", event.metadata().target(), t.0));
    }
}

/// Sends one line to the callback, if one is set.
fn send(sink: &Sink, level: i32, line: &str) {
    let Some(cb) = sink.cb else { return };
    let c = CString::new(line.replace('\0', " ")).unwrap_or_default();
    // SAFETY: the caller of qwen3_omni_log_set promised a callback valid for any thread until it
    // is replaced; the text lives across the call.
    unsafe { cb(level, c.as_ptr(), sink.user_data as *mut c_void) };
}

/// A line at `QWEN3_OMNI_LOG_ERROR` straight to the callback, not through `tracing` (the panic
/// hook: a Rust host's own subscriber must not get the library's panics either). It never
/// blocks: the panic may come from inside the callback, with the lock held.
pub(super) fn error_line(line: &str) {
    if super::QWEN3_OMNI_LOG_ERROR <= MAX_LEVEL.load(Ordering::Relaxed) {
        if let Ok(sink) = SINK.try_read() {
            send(&sink, super::QWEN3_OMNI_LOG_ERROR, line);
        }
    }
}

static INSTALL: std::sync::Once = std::sync::Once::new();
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets (or with `None`, removes) the callback. Fails when the process already has another global
/// `tracing` subscriber (a Rust host with its own logging).
pub(crate) fn set(cb: qwen3_omni_log_callback, max_level: i32, user_data: *mut c_void) -> Result<(), String> {
    INSTALL.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let ok = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(CLogLayer)).is_ok();
        INSTALLED.store(ok, Ordering::SeqCst);
    });
    {
        let mut sink = SINK.write().unwrap_or_else(|e| e.into_inner());
        *sink = Sink { cb, user_data: user_data as usize };
    }
    MAX_LEVEL.store(if cb.is_some() { max_level } else { 0 }, Ordering::SeqCst);
    tracing::callsite::rebuild_interest_cache();
    if INSTALLED.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err("another tracing subscriber is already installed in this process; its output is not forwarded".into())
    }
}
