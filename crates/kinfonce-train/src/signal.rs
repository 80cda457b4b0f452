//! SIGINT / SIGTERM: the signal's number kept in a flag that the training loop checks after each
//! step, so a run saves a checkpoint and stops cleanly, and then exits as a shell expects of an
//! interrupted command (128 + the signal: 130 for SIGINT, 143 for SIGTERM).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// 0 until a stop is asked for; then the signal's number (or [`STOP_WITHOUT_SIGNAL`]).
static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
/// Set by [`request_stop`]: a stop that no signal asked for.
const STOP_WITHOUT_SIGNAL: usize = usize::MAX;

fn received() -> &'static Arc<AtomicUsize> {
    RECEIVED.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Installs the SIGINT/SIGTERM handlers (once per process): they only store the signal's number,
/// which the loop checks after each step.
pub fn install_signal_handler() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for signal in [SIGINT, SIGTERM] {
            let flag = Arc::clone(received());
            if let Err(e) = signal_hook::flag::register_usize(signal, flag, signal as usize) {
                eprintln!("warning: Ctrl-C will not save a checkpoint: {e}");
            }
        }
    });
}

/// Requests a clean stop (as SIGINT does, but exiting 0).
pub fn request_stop() {
    received().store(STOP_WITHOUT_SIGNAL, Ordering::SeqCst);
}

/// True once SIGINT/SIGTERM (or [`request_stop`]) asked the process to stop.
pub fn stop_requested() -> bool {
    received().load(Ordering::SeqCst) != 0
}

/// The exit code of a process that stopped because of a signal (130 for SIGINT, 143 for
/// SIGTERM), `None` when no signal arrived.
pub fn interrupted_exit_code() -> Option<i32> {
    match received().load(Ordering::SeqCst) {
        0 | STOP_WITHOUT_SIGNAL => None,
        signal => Some(128 + signal as i32),
    }
}
