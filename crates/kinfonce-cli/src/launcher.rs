//! `kinfonce pretrain --nproc-per-node N`: this node's workers started as torchrun starts them
//! (the same binary, placed by torchrun's variables) and supervised, so that one failing rank
//! or a Ctrl-C ends the whole node cleanly and leaves no process behind.

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kinfonce_train::trainer;

/// How often the supervisor looks at its workers: soon enough that a failure or a Ctrl-C is
/// acted on at once, seldom enough to cost nothing.
const POLL: Duration = Duration::from_millis(50);
/// How long the other workers get after one failed: they notice on their own (their next
/// collective fails, naming the rank) and exit; only hung ones are killed.
const GRACE: Duration = Duration::from_secs(30);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// The launcher's own flags, and `--threads`, which it replaces per worker: a worker that saw
/// `--nproc-per-node` would refuse to run (it is already a rank).
const LAUNCHER_FLAGS: [&str; 6] = [
    "--nproc-per-node",
    "--nnodes",
    "--node-rank",
    "--master-addr",
    "--master-port",
    "--threads",
];

/// Where this node's workers sit in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    /// Processes on this node (`--nproc-per-node`), at least 1.
    pub nproc_per_node: usize,
    /// Nodes of the job (`--nnodes`), at least 1; every node runs the same count of workers.
    pub nnodes: usize,
    /// This node's place, 0 .. nnodes - 1: its workers are ranks node_rank * nproc_per_node ...
    pub node_rank: usize,
    /// Where rank 0 serves the rendezvous; every node must reach it.
    pub master_addr: String,
    /// The rendezvous port on `master_addr`.
    pub master_port: u16,
    /// Threads of this node in total, split between its workers; 0 = all cores.
    pub threads: usize,
}

impl LaunchPlan {
    /// Checks the plan before anything starts, so that a wrong flag is one line naming it rather
    /// than N workers failing at the rendezvous.
    pub fn validate(&self) -> Result<()> {
        if self.nproc_per_node == 0 {
            bail!("--nproc-per-node 0: expected at least 1");
        }
        if self.nnodes == 0 {
            bail!("--nnodes 0: expected at least 1");
        }
        if self.node_rank >= self.nnodes {
            bail!(
                "--node-rank {} is outside --nnodes {} (node ranks run from 0 to {})",
                self.node_rank,
                self.nnodes,
                self.nnodes - 1
            );
        }
        if self.master_port == 0 {
            bail!("--master-port 0: expected a port from 1 to 65535");
        }
        // Several nodes need node 0's address, the same on all nodes (a loopback address is
        // fine for "nodes" that are launchers on one machine).
        if self.master_addr.trim().is_empty() {
            bail!(
                "--nnodes {} needs --master-addr (the address of node 0, reachable from every \
                 node; the same on all nodes)",
                self.nnodes
            );
        }
        Ok(())
    }

    /// Threads each worker gets: max(1, threads / nproc_per_node), threads 0 = all cores; the
    /// workers share the node's cores instead of each taking all of them.
    pub fn threads_per_worker(&self) -> usize {
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        (threads / self.nproc_per_node.max(1)).max(1)
    }
}

/// A free TCP port on 127.0.0.1 (bind port 0, read it, drop the listener), for single-node jobs
/// without --master-port: two jobs on one machine then do not meet at the same rendezvous.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .context("looking for a free port for the rendezvous (binding 127.0.0.1:0)")?;
    Ok(listener.local_addr()?.port())
}

/// `args` (the command line after the program name) without the launcher's own flags and
/// without `--threads`, in both `--flag value` and `--flag=value` forms, so that the workers run
/// the same command as one process each. Everything else is kept in order; after `--` nothing
/// is a flag.
pub fn worker_args(args: &[OsString]) -> Vec<OsString> {
    let mut kept = Vec::with_capacity(args.len());
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let bytes = arg.as_encoded_bytes();
        if bytes == b"--" {
            kept.push(arg.clone());
            kept.extend(rest.by_ref().cloned());
            break;
        }
        let (name, has_value) = match bytes.iter().position(|&b| b == b'=') {
            Some(at) => (&bytes[..at], true),
            None => (bytes, false),
        };
        if !LAUNCHER_FLAGS.iter().any(|f| f.as_bytes() == name) {
            kept.push(arg.clone());
        } else if !has_value {
            // `--flag value`: the value goes too.
            rest.next();
        }
    }
    kept
}

/// Starts the node's workers (this executable, `std::env::current_exe()`) with
/// `worker_args(args)` followed by `--threads <threads_per_worker>`, each with torchrun's
/// variables and OMP_NUM_THREADS, stdin null, stdout/stderr inherited; supervises them until
/// all have exited and returns the launcher's exit code: 0 when all succeeded, the first
/// failure's code (128 + signal for a killed worker) when one failed before any stop, 130/143
/// when SIGINT/SIGTERM asked the launcher to stop (forwarded once to the workers, which save a
/// checkpoint and exit).
pub fn run_workers(plan: &LaunchPlan, args: &[OsString]) -> Result<i32> {
    // A Ctrl-C must set the flag, not end the launcher before its workers have saved.
    trainer::install_signal_handler();
    let program =
        std::env::current_exe().context("finding this executable to start the workers")?;
    supervise(plan, &program, &worker_args(args), GRACE, &requested_signal)
}

/// The signal to forward once a stop was asked for: the one that arrived (SIGTERM for a stop
/// without a signal, which also ends the workers with a checkpoint).
fn requested_signal() -> Option<i32> {
    trainer::stop_requested()
        .then(|| trainer::interrupted_exit_code().map_or(SIGTERM, |code| code - 128))
}

/// [`run_workers`] for any `program`, `grace` and stop source, so that tests run shell workers
/// and ask for a stop without touching the process-wide flag.
fn supervise(
    plan: &LaunchPlan,
    program: &Path,
    args: &[OsString],
    grace: Duration,
    stop_signal: &dyn Fn() -> Option<i32>,
) -> Result<i32> {
    plan.validate()?;
    let threads = plan.threads_per_worker();
    let world = plan.nnodes * plan.nproc_per_node;
    let first = plan.node_rank * plan.nproc_per_node;
    let host = if plan.master_addr.contains(':') && !plan.master_addr.starts_with('[') {
        format!("[{}]", plan.master_addr)
    } else {
        plan.master_addr.clone()
    };
    eprintln!(
        "kinfonce launcher: {} workers on node {} of {} (ranks {}..{} of {world}), {host}:{}, \
         {threads} thread{} each",
        plan.nproc_per_node,
        plan.node_rank,
        plan.nnodes,
        first,
        first + plan.nproc_per_node - 1,
        plan.master_port,
        if threads == 1 { "" } else { "s" }
    );
    let mut workers = Workers {
        running: Vec::with_capacity(plan.nproc_per_node),
    };
    for local_rank in 0..plan.nproc_per_node {
        let rank = first + local_rank;
        let mut command = Command::new(program);
        dies_with_launcher(&mut command);
        let child = command
            .args(args)
            .arg("--threads")
            .arg(threads.to_string())
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("LOCAL_RANK", local_rank.to_string())
            .env("LOCAL_WORLD_SIZE", plan.nproc_per_node.to_string())
            .env("GROUP_RANK", plan.node_rank.to_string())
            .env("GROUP_WORLD_SIZE", plan.nnodes.to_string())
            .env("MASTER_ADDR", plan.master_addr.trim())
            .env("MASTER_PORT", plan.master_port.to_string())
            .env("OMP_NUM_THREADS", threads.to_string())
            // Rank 0 serves the rendezvous itself; no torchrun agent does.
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting rank {rank} ({})", program.display()))?;
        workers.running.push(Worker { rank, child });
    }
    workers.wait_all(grace, stop_signal)
}

/// The worker gets SIGTERM when the launcher dies, however it dies (`kill -9` included): it
/// saves a checkpoint and stops as on a Ctrl-C, instead of training on as an orphan.
fn dies_with_launcher(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let launcher = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // The launcher died before the prctl took effect: no signal will come.
            if libc::getppid() != launcher {
                return Err(std::io::Error::other("the launcher has exited"));
            }
            Ok(())
        });
    }
}

/// One started worker, not yet reaped.
struct Worker {
    rank: usize,
    child: Child,
}

/// The workers still running. Dropping it kills and reaps them, so that no early return (rank 3
/// failing to start, a failed wait) leaves workers behind without a supervisor.
struct Workers {
    running: Vec<Worker>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.kill_all();
    }
}

impl Workers {
    /// Waits until every worker has exited, forwarding a stop once and ending the rest `grace`
    /// after a failure; the launcher's exit code (see [`run_workers`]).
    fn wait_all(&mut self, grace: Duration, stop_signal: &dyn Fn() -> Option<i32>) -> Result<i32> {
        let mut forwarded = None;
        // The first failure before any stop: the job's exit code.
        let mut failure = None;
        // The first failure at all (rank, when), from which the others' grace runs.
        let mut failed: Option<(usize, Instant)> = None;
        while !self.running.is_empty() {
            self.forward_stop(&mut forwarded, stop_signal);
            let mut i = 0;
            while i < self.running.len() {
                let worker = &mut self.running[i];
                let status = worker
                    .child
                    .try_wait()
                    .with_context(|| format!("waiting for rank {}", worker.rank))?;
                let Some(status) = status else {
                    i += 1;
                    continue;
                };
                let rank = self.running.remove(i).rank;
                if status.success() {
                    continue;
                }
                // A terminal's Ctrl-C reaches the workers too (same process group), maybe a
                // moment before the launcher sees it: look again before calling this a failure.
                self.forward_stop(&mut forwarded, stop_signal);
                let code = exit_code(status);
                if forwarded.is_some_and(|s| is_stop_code(code, s)) {
                    continue;
                }
                eprintln!("kinfonce launcher: {}", describe(rank, status));
                failed.get_or_insert((rank, Instant::now()));
                if forwarded.is_none() {
                    failure.get_or_insert(code);
                }
            }
            if let Some((rank, since)) = failed {
                if !self.running.is_empty() && since.elapsed() >= grace {
                    let ranks: Vec<String> =
                        self.running.iter().map(|w| w.rank.to_string()).collect();
                    let (ranks, them) = match ranks.len() {
                        1 => (format!("rank {}", ranks[0]), "it"),
                        _ => (format!("ranks {}", ranks.join(", ")), "them"),
                    };
                    eprintln!(
                        "kinfonce launcher: {ranks} still running {grace:?} after rank {rank} \
                         failed; killing {them} (SIGKILL)"
                    );
                    self.kill_all();
                }
            }
            if !self.running.is_empty() {
                std::thread::sleep(POLL);
            }
        }
        Ok(failure.or(forwarded.map(|s| 128 + s)).unwrap_or(0))
    }

    /// Sends the requested stop signal to every running worker, once: each then finishes its
    /// step, rank 0 saves a checkpoint, and all exit 128 + signal. A second delivery (the
    /// terminal's Ctrl-C already reached them) only stores the same number again.
    fn forward_stop(&self, forwarded: &mut Option<i32>, stop_signal: &dyn Fn() -> Option<i32>) {
        if forwarded.is_some() {
            return;
        }
        if let Some(signal) = stop_signal() {
            for worker in &self.running {
                send_signal(&worker.child, signal);
            }
            *forwarded = Some(signal);
            let name = signal_name(signal).map_or(format!("signal {signal}"), str::to_string);
            eprintln!(
                "kinfonce launcher: {name}: passed on to the {} running workers, which save a \
                 checkpoint and stop",
                self.running.len()
            );
        }
    }

    /// SIGKILL to every running worker, then reaps them (no zombies, no orphans).
    fn kill_all(&mut self) {
        for worker in &mut self.running {
            // Fails only for a child that already exited; the wait below reaps it.
            let _ = worker.child.kill();
        }
        for mut worker in self.running.drain(..) {
            let _ = worker.child.wait();
        }
    }
}

/// `kill(2)` for a child not yet reaped (so its pid still names it); kinfonce-cli has no libc
/// dependency, and the C library is linked anyway.
fn send_signal(child: &Child, signal: i32) {
    if let Ok(pid) = i32::try_from(child.id()) {
        signal_pid(pid, signal);
    }
}

/// `kill(pid, signal)`; true when it was delivered (signal 0: when the process exists).
fn signal_pid(pid: i32, signal: i32) -> bool {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill takes two integers and touches no memory of ours.
    unsafe { kill(pid, signal) == 0 }
}

/// What a shell would report: the exit code, or 128 + the signal that killed the worker.
fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// The exits of a worker that stopped as asked: saved and exited 130/143, or killed by the
/// signal before its handler was installed.
fn is_stop_code(code: i32, forwarded: i32) -> bool {
    code == 128 + forwarded || code == 128 + SIGINT || code == 128 + SIGTERM
}

/// One line on a failed worker, naming the common signals.
fn describe(rank: usize, status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("rank {rank} exited with code {code}"),
        (None, Some(signal)) => {
            let name = signal_name(signal).map_or(String::new(), |n| format!(" ({n})"));
            let core = if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            format!("rank {rank} was killed by signal {signal}{name}{core}")
        }
        (None, None) => format!("rank {rank} ended with {status}"),
    }
}

/// Names of the signals that usually end a worker (numbers shared by Linux and macOS).
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        #[cfg(target_os = "linux")]
        7 => "SIGBUS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn plan(nproc_per_node: usize, nnodes: usize, node_rank: usize) -> LaunchPlan {
        LaunchPlan {
            nproc_per_node,
            nnodes,
            node_rank,
            master_addr: "127.0.0.1".into(),
            master_port: 1234,
            threads: 2,
        }
    }

    fn os(args: &str) -> Vec<OsString> {
        args.split_whitespace().map(OsString::from).collect()
    }

    /// Shell workers: `sh -c SCRIPT`, the appended `--threads N` landing in $0 and $1.
    fn sh(
        plan: &LaunchPlan,
        script: &str,
        grace: Duration,
        stop: &dyn Fn() -> Option<i32>,
    ) -> Result<i32> {
        let args = [OsString::from("-c"), OsString::from(script)];
        supervise(plan, Path::new("/bin/sh"), &args, grace, stop)
    }

    fn no_stop() -> Option<i32> {
        None
    }

    #[test]
    fn worker_args_drop_exactly_the_launcher_flags_and_threads() {
        assert_eq!(
            worker_args(&os(
                "--nproc-per-node 2 --data x --threads=4 --master-port 5 --batch 8"
            )),
            os("--data x --batch 8")
        );
        assert_eq!(
            worker_args(&os(
                "--nnodes=2 --epochs 3 --node-rank 1 --master-addr=10.0.0.1 --threads 8 \
                 --master-addr node0 --out runs/a"
            )),
            os("--epochs 3 --out runs/a")
        );
        // Look-alikes are other flags; after `--` nothing is a flag.
        assert_eq!(
            worker_args(&os(
                "--node-rankx 3 --threads-foo=2 --data y -- --threads 4"
            )),
            os("--node-rankx 3 --threads-foo=2 --data y -- --threads 4")
        );
        assert_eq!(worker_args(&os("--data z --threads")), os("--data z"));
    }

    #[test]
    fn validate_names_the_flag() {
        assert!(plan(2, 1, 0).validate().is_ok());
        let err = plan(2, 2, 2).validate().unwrap_err().to_string();
        assert!(
            err.starts_with("--node-rank 2 is outside --nnodes 2"),
            "{err}"
        );
        let err = plan(0, 1, 0).validate().unwrap_err().to_string();
        assert_eq!(err, "--nproc-per-node 0: expected at least 1");
        let err = plan(1, 0, 0).validate().unwrap_err().to_string();
        assert_eq!(err, "--nnodes 0: expected at least 1");
        let mut p = plan(2, 2, 1);
        p.master_addr = String::new();
        let err = p.validate().unwrap_err().to_string();
        assert!(err.starts_with("--nnodes 2 needs --master-addr"), "{err}");
        p.master_addr = "127.0.0.1".into();
        assert!(p.validate().is_ok(), "launchers on one machine");
        let mut p = plan(2, 2, 1);
        p.master_addr = "10.1.2.3".into();
        assert!(p.validate().is_ok());
        p.master_port = 0;
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("--master-port 0"));
    }

    #[test]
    fn threads_are_split_between_workers() {
        let mut p = plan(2, 1, 0);
        assert_eq!(p.threads_per_worker(), 1);
        p.threads = 3;
        assert_eq!(p.threads_per_worker(), 1);
        p.threads = 8;
        assert_eq!(p.threads_per_worker(), 4);
        p.threads = 0;
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(p.threads_per_worker(), (cores / 2).max(1));
        p.nproc_per_node = cores + 1;
        assert_eq!(p.threads_per_worker(), 1);
    }

    #[test]
    fn free_port_can_be_bound_again() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn signals_are_named() {
        // Raw wait statuses: exit code in the high byte, signal in the low bits.
        let exited = ExitStatus::from_raw(3 << 8);
        assert_eq!(describe(1, exited), "rank 1 exited with code 3");
        assert_eq!(exit_code(exited), 3);
        let killed = ExitStatus::from_raw(9);
        assert_eq!(
            describe(2, killed),
            "rank 2 was killed by signal 9 (SIGKILL)"
        );
        assert_eq!(exit_code(killed), 137);
    }

    #[test]
    fn workers_see_their_place_and_all_succeeding_is_zero() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "echo $RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $GROUP_RANK $MASTER_ADDR \
             $MASTER_PORT $OMP_NUM_THREADS $0 $1 > '{}/rank'$RANK",
            dir.path().display()
        );
        let mut p = plan(2, 2, 1);
        p.master_addr = "10.0.0.1".into();
        p.threads = 4;
        assert_eq!(sh(&p, &script, GRACE, &no_stop).unwrap(), 0);
        for (rank, local) in [(2, 0), (3, 1)] {
            let seen = std::fs::read_to_string(dir.path().join(format!("rank{rank}"))).unwrap();
            assert_eq!(
                seen.trim(),
                format!("{rank} 4 {local} 2 1 10.0.0.1 1234 2 --threads 2")
            );
        }
    }

    #[test]
    fn a_failing_worker_ends_the_node_with_its_code_and_no_orphan() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // Rank 0 fails once rank 1 has written its pid; rank 1 would sleep for a minute.
        let script = format!(
            "if [ $RANK = 0 ]; then while [ ! -s '{d}/pid' ]; do sleep 0.02; done; exit 3; fi; \
             echo $$ > '{d}/pid.tmp' && mv '{d}/pid.tmp' '{d}/pid'; exec sleep 60"
        );
        let start = Instant::now();
        let grace = Duration::from_millis(500);
        assert_eq!(sh(&plan(2, 1, 0), &script, grace, &no_stop).unwrap(), 3);
        let took = start.elapsed();
        assert!(
            took >= grace && took < grace + Duration::from_secs(5),
            "{took:?}"
        );
        let pid: i32 = std::fs::read_to_string(dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            !signal_pid(pid, 0),
            "the sleeping rank {pid} is still there"
        );
    }

    #[test]
    fn a_worker_killed_by_a_signal_is_128_plus_the_signal() {
        let script = "if [ $RANK = 1 ]; then kill -KILL $$; fi";
        assert_eq!(sh(&plan(2, 1, 0), script, GRACE, &no_stop).unwrap(), 137);
    }

    #[test]
    fn a_stop_is_forwarded_once_and_its_code_returned() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // Each worker counts the SIGTERMs it gets, then (like a saving rank) exits 143 a little
        // later, so that a second forwarding would be counted.
        let script = format!(
            "trap 'echo term >> \"{d}/term$RANK\"; stop=1' TERM; : > '{d}/ready'$RANK; \
             while [ -z \"$stop\" ]; do sleep 0.02; done; sleep 0.3; exit 143"
        );
        let ready = |r: usize| dir.path().join(format!("ready{r}")).exists();
        let asked = AtomicBool::new(false);
        let stop = || {
            if ready(0) && ready(1) {
                asked.store(true, Ordering::SeqCst);
            }
            asked.load(Ordering::SeqCst).then_some(SIGTERM)
        };
        assert_eq!(sh(&plan(2, 1, 0), &script, GRACE, &stop).unwrap(), 143);
        for rank in 0..2 {
            let got = std::fs::read_to_string(dir.path().join(format!("term{rank}"))).unwrap();
            assert_eq!(got.lines().count(), 1, "rank {rank} got {got:?}");
        }
    }

    #[test]
    fn a_worker_that_cannot_start_is_an_error() {
        let err = supervise(
            &plan(2, 1, 0),
            Path::new("/nonexistent/kinfonce"),
            &[],
            GRACE,
            &no_stop,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("starting rank 0"), "{err:#}");
    }
}
