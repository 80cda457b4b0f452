//! Shared by the CLI's integration tests: where the real data is.

use std::path::PathBuf;

/// The official CIFAR-10 archive in `../shared/data/`, or `None` (with a message saying the
/// test skips) when it is absent.
#[allow(dead_code)] // not every test binary uses it
pub fn cifar() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/cifar10/cifar-10-binary.tar.gz");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found", path.display());
        None
    }
}

/// The golden loss cases in `../shared/golden/`, or `None` (with a message saying the test
/// skips) when they are absent.
#[allow(dead_code)] // not every test binary uses it
pub fn golden_cases() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden/kernel_infonce.json");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found", path.display());
        None
    }
}

/// How long any `kinfonce` process a test starts may run: far above the slowest test's normal
/// time (about a minute on 2 cores), so only a hang (a libtorch kernel that never returns)
/// reaches it, and then it fails that one test instead of stalling the whole suite.
#[allow(dead_code)]
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// Waits for `child` at most [`DEADLINE`]; past it, kills its process group (the launcher's
/// workers and search trials too) and fails the test, naming `what`.
#[allow(dead_code)]
pub fn wait_within(child: std::process::Child, what: &str) -> std::process::Output {
    let pid = child.id() as i32;
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = done.send(());
        out
    });
    if finished.recv_timeout(DEADLINE).is_err() {
        // SAFETY: kill(2) touches no memory. The negative pid signals the process group the
        // child leads when it was spawned by `spawn_in_group`; the child itself in any case.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
        panic!("{what} ran past the {DEADLINE:?} deadline and was killed (a hang?)");
    }
    waiter.join().unwrap().unwrap()
}

/// Commands run with a deadline: the child leads its own process group, so the whole group can
/// be killed when it hangs.
#[allow(dead_code)]
pub trait WithDeadline {
    /// As `Command::output`, failing the test past [`DEADLINE`].
    fn output_within(&mut self) -> std::process::Output;
    /// As `Command::spawn` with stdout and stderr captured, for [`wait_within`].
    fn spawn_in_group(&mut self) -> std::process::Child;
}

impl WithDeadline for std::process::Command {
    fn output_within(&mut self) -> std::process::Output {
        let what = format!("{self:?}");
        self.stdin(std::process::Stdio::null());
        wait_within(self.spawn_in_group(), &what)
    }

    fn spawn_in_group(&mut self) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        self.process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}
