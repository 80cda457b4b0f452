//! SIGINT / SIGTERM: a flag that the training loop checks after each step, so a run saves a
//! checkpoint and stops cleanly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<bool> = OnceLock::new();

/// Installs the SIGINT/SIGTERM handler (once per process): it only raises a flag that the loop
/// checks after each step, so the run saves a checkpoint and exits cleanly.
pub fn install_signal_handler() {
    HANDLER
        .get_or_init(|| ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)).is_ok());
}

/// Requests a clean stop (as SIGINT does).
pub fn request_stop() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// True once SIGINT/SIGTERM (or [`request_stop`]) asked the process to stop.
pub fn stop_requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
