//! SIGINT and SIGTERM for every command, on one thread of their own (signal-hook's iterator, so the
//! handling is ordinary code, not a signal handler):
//! - SIGTERM (and SIGHUP): remove this process's temporary output files
//!   ([`quantizer::outfile::remove_temporaries`]) and exit with 143 (129).
//! - SIGINT while a command marked work as stoppable ([`Signals::working`]): the first press sets
//!   every registered stop flag (the reply, its speech, a load) and the work ends on its own at the
//!   next check (a token, an 80 ms frame, a layer); a second press during the same work exits.
//! - SIGINT otherwise (idle, or a command without stoppable work, such as `quantize`): remove the
//!   temporaries and exit with 130.
//!
//! Nothing is left behind at any exit: a finished file was renamed into place before, an unfinished
//! one is removed here.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

pub struct Signals {
    working: AtomicBool,
    presses: AtomicU32,
    stops: Mutex<Vec<(u64, Arc<AtomicBool>)>>,
    next_id: AtomicU32,
}

static SIGNALS: OnceLock<Signals> = OnceLock::new();

/// A registered stop flag; dropping it unregisters the flag.
pub struct StopGuard(u64);

impl Drop for StopGuard {
    fn drop(&mut self) {
        if let Some(s) = SIGNALS.get() {
            s.stops.lock().unwrap_or_else(|p| p.into_inner()).retain(|(id, _)| *id != self.0);
        }
    }
}

fn leave(code: i32) -> ! {
    let n = quantizer::outfile::remove_temporaries();
    if n > 0 {
        eprintln!("\n[interrupted: removed {n} unfinished output file{}]", if n == 1 { "" } else { "s" });
    }
    std::process::exit(code)
}

impl Signals {
    /// Starts the signal thread (once; `main` calls it before any command).
    pub fn install() -> anyhow::Result<&'static Signals> {
        if let Some(s) = SIGNALS.get() {
            return Ok(s);
        }
        let mut it = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let s = SIGNALS.get_or_init(|| Signals {
            working: AtomicBool::new(false),
            presses: AtomicU32::new(0),
            stops: Mutex::new(Vec::new()),
            next_id: AtomicU32::new(0),
        });
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for sig in it.forever() {
                let s = SIGNALS.get().expect("set before the thread starts");
                match sig {
                    SIGINT if s.working.load(Ordering::SeqCst) && s.presses.fetch_add(1, Ordering::SeqCst) == 0 => {
                        for (_, f) in s.stops.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                            f.store(true, Ordering::SeqCst);
                        }
                    }
                    SIGINT => leave(130),
                    SIGHUP => leave(129),
                    _ => leave(143),
                }
            }
        })?;
        Ok(s)
    }

    /// The signal handling of this process (installed by `main`).
    pub fn get() -> &'static Signals {
        Self::install().expect("signal thread")
    }

    /// A press from now on also sets `flag` (until the guard drops).
    pub fn stop_on_press(&self, flag: Arc<AtomicBool>) -> StopGuard {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) as u64;
        self.stops.lock().unwrap_or_else(|p| p.into_inner()).push((id, flag));
        StopGuard(id)
    }

    /// Stoppable work begins: the next press stops it instead of ending the program.
    pub fn working(&self) {
        self.presses.store(0, Ordering::SeqCst);
        self.working.store(true, Ordering::SeqCst);
    }

    /// The work ended: the next press ends the program.
    pub fn idle(&self) {
        self.working.store(false, Ordering::SeqCst);
    }

    /// Whether a press stopped the current (or last) work.
    pub fn pressed(&self) -> bool {
        self.presses.load(Ordering::SeqCst) > 0
    }
}
