//! Data-parallel pretraining on Gloo over 127.0.0.1: two processes compute the same run as one
//! (losses and parameters), whether started by `--nproc-per-node`, by torchrun or as two nodes;
//! `--local-negatives` does not; a killed rank stops the other with its name and the run
//! resumes on one process or two to the same trajectory; bad launches fail in one line.
//!
//! The tests run one after another (one lock): each binds its own ports, and two jobs at once
//! on a 2-core machine would only slow each other down.
#![cfg(feature = "torch")]

mod common;
use common::{cifar, wait_within, WithDeadline};
use kinfonce_train::checkpoint;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_JOB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_JOB_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A short deterministic run of ResNet-18 width 8 on 64 CIFAR-10 images with `batch` pairs per
/// process, 2 steps unless `extra` schedules it. SGD at a small learning rate: the update is
/// linear in the gradient. (This tiny network amplifies f32 rounding about 15x per step: one
/// process with 1 thread and with 2 threads part by 2e-4 in the loss at step 3, so the
/// comparisons stop at step 2.)
fn pretrain(data: &Path, out: &Path, batch: usize, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinfonce"));
    cmd.arg("pretrain").arg("--data").arg(data);
    let batch = batch.to_string();
    for a in [
        "--subset",
        "64",
        "--width",
        "8",
        "--hidden-dim",
        "32",
        "--out-dim",
        "16",
        "--batch",
        &batch,
        "--seed",
        "3",
        "--precision",
        "f32",
        "--channels-last=false",
        "--optimizer",
        "sgd",
        "--lr",
        "0.002",
        "--log-every",
        "1",
        "--knn-every",
        "0",
        "--checkpoint-minutes",
        "0",
    ] {
        cmd.arg(a);
    }
    if !extra
        .iter()
        .any(|a| a.starts_with("--max-steps") || a.starts_with("--epochs"))
    {
        cmd.args(["--max-steps", "2"]);
    }
    cmd.args(extra).arg("--out").arg(out);
    cmd.stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command) -> Output {
    let out = cmd.output_within();
    if !out.status.success() {
        panic!(
            "{:?} failed ({}):\n{}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn failure(mut cmd: Command) -> String {
    let out = cmd.output_within();
    assert!(!out.status.success(), "{cmd:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// step -> loss of metrics.jsonl's step records.
fn losses(run: &Path) -> BTreeMap<u64, f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "step")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

/// Every encoder and head tensor of the run's newest checkpoint, by name.
fn parameters(run: &Path) -> BTreeMap<String, kinfonce_train::tch::Tensor> {
    let dir = checkpoint::latest(&run.join("checkpoints"))
        .unwrap()
        .unwrap();
    let ck = checkpoint::load(&dir).unwrap();
    ck.encoder.into_iter().chain(ck.head).collect()
}

/// Per-step losses within 1e-4 relative; every weight matrix and the parameters as a whole within
/// 1e-4 of their norm; 1-D parameters (batch-norm weights and biases, linear biases) within 1e-2
/// of theirs: the batch-norm biases start at 0 and their gradients are mostly rounding (one
/// process with 1 and with 2 threads parts them by 5e-3 after two steps).
fn same_run(a: &Path, b: &Path) {
    let (la, lb) = (losses(a), losses(b));
    assert_eq!(la.len(), lb.len(), "{la:?} vs {lb:?}");
    for ((step, x), (_, y)) in la.iter().zip(&lb) {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs(),
            "step {step}: loss {x} vs {y}"
        );
    }
    let (pa, pb) = (parameters(a), parameters(b));
    assert_eq!(pa.len(), pb.len());
    let (mut total_diff, mut total_norm) = (0.0, 0.0);
    for (name, x) in pa.iter().filter(|(n, _)| !n.contains("running")) {
        let y = &pb[name];
        let norm = x.norm().double_value(&[]);
        let diff = (x - y).norm().double_value(&[]);
        total_diff += diff * diff;
        total_norm += norm * norm;
        let bound = if x.dim() >= 2 { 1e-4 } else { 1e-2 };
        assert!(
            diff <= bound * norm.max(1e-12),
            "{name}: |a - b| = {diff:e}, |a| = {norm:e}"
        );
    }
    assert!(
        total_diff.sqrt() <= 1e-4 * total_norm.sqrt(),
        "all parameters: {total_diff:e} vs {total_norm:e}"
    );
}

#[test]
fn two_processes_compute_the_one_process_run() {
    let Some(data) = cifar() else { return };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| tmp.path().join(name);
    for (preset, engine) in [
        ("laplacian", "fused"),
        ("simple-sum", "fused"),
        ("laplacian", "tensor"),
    ] {
        let tag = format!("{preset}-{engine}");
        let flags = ["--preset", preset, "--loss-engine", engine];
        let one = dir(&format!("one-{tag}"));
        let mut single = pretrain(&data, &one, 32, &flags);
        single.args(["--threads", "1"]);
        run(single);
        let two = dir(&format!("two-{tag}"));
        let mut pair = pretrain(&data, &two, 16, &flags);
        pair.args(["--nproc-per-node", "2", "--threads", "2"]);
        run(pair);
        same_run(&one, &two);
        let config = std::fs::read_to_string(two.join("config.toml")).unwrap();
        assert!(
            config.contains("batch = 32"),
            "the run keeps the global batch"
        );
    }
    // MoCo: each process forwards whole split groups of the global batch (2 of the 4), the
    // head's batch norm and the keys' shuffle span both, and every key enters one queue, which
    // the checkpoints compare (full after the 2 steps).
    let moco = [
        "--method",
        "moco",
        "--queue-size",
        "64",
        "--bn-splits",
        "4",
        "--moco-momentum",
        "0.9",
    ];
    let (one, two) = (dir("one-moco"), dir("two-moco"));
    let mut single = pretrain(&data, &one, 32, &moco);
    single.args(["--threads", "1"]);
    run(single);
    let mut pair = pretrain(&data, &two, 16, &moco);
    pair.args(["--nproc-per-node", "2", "--threads", "2"]);
    run(pair);
    same_run(&one, &two);
    assert!(parameters(&two).contains_key("moco.queue"));

    // Per-process negatives are another loss: the first step's loss already differs.
    let local = dir("local");
    let mut cmd = pretrain(&data, &local, 16, &["--local-negatives"]);
    cmd.args(["--nproc-per-node", "2", "--threads", "2"]);
    run(cmd);
    let (gathered, local) = (losses(&dir("one-laplacian-fused")), losses(&local));
    assert!(
        (gathered[&1] - local[&1]).abs() > 0.01 * gathered[&1],
        "{gathered:?} vs {local:?}"
    );
}

#[test]
fn torchrun_and_two_nodes_run_the_same_job() {
    let Some(data) = cifar() else { return };
    let torchrun = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/torchrun");
    if !torchrun.exists() {
        eprintln!("skipping: {} not found", torchrun.display());
        return;
    }
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let mut single = pretrain(&data, &one, 32, &[]);
    single.args(["--threads", "1"]);
    run(single);

    // torchrun starts the binary itself (--no-python); its agent serves the store.
    let by_torchrun = tmp.path().join("torchrun");
    let inner = pretrain(&data, &by_torchrun, 16, &["--threads", "1"]);
    let mut cmd = Command::new(&torchrun);
    cmd.args(["--no-python", "--nproc-per-node", "2", "--master-port"])
        .arg(free_port().to_string())
        .arg(inner.get_program())
        .args(inner.get_args())
        .env("OMP_NUM_THREADS", "1")
        .stdin(Stdio::null());
    run(cmd);
    same_run(&one, &by_torchrun);

    // Two launchers, one per node, both on this machine.
    let two_nodes = tmp.path().join("nodes");
    let port = free_port().to_string();
    let nodes: Vec<Child> = ["0", "1"]
        .iter()
        .map(|rank| {
            let mut cmd = pretrain(&data, &two_nodes, 16, &["--threads", "1"]);
            cmd.args([
                "--nnodes",
                "2",
                "--node-rank",
                rank,
                "--nproc-per-node",
                "1",
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                &port,
            ]);
            cmd.spawn_in_group()
        })
        .collect();
    for node in nodes {
        let out = wait_within(node, "a kinfonce process");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    same_run(&one, &two_nodes);
}

/// Rank `rank` of a 2-process job started by hand, as torchrun would.
fn rank_process(cmd: &mut Command, rank: usize, world: usize, port: u16) {
    cmd.env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("LOCAL_WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
}

#[test]
fn a_killed_rank_is_named_and_the_run_resumes_on_one_process_or_two() {
    let Some(data) = cifar() else { return };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("killed");
    let port = free_port();
    // 20 epochs of 4 steps: long enough to be killed mid-run.
    let steps = [
        "--epochs",
        "20",
        "--checkpoint-every",
        "2",
        "--threads",
        "1",
    ];
    let mut ranks: Vec<Child> = (0..2)
        .map(|rank| {
            let mut cmd = pretrain(&data, &run_dir, 8, &steps);
            rank_process(&mut cmd, rank, 2, port);
            cmd.args(["--dist-timeout", "30"]);
            cmd.spawn_in_group()
        })
        .collect();
    // Once the step-2 checkpoint is complete (polled, no fixed sleep), kill rank 1.
    let start = Instant::now();
    let checkpoints = run_dir.join("checkpoints");
    while checkpoint::latest(&checkpoints).ok().flatten().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ranks[1].kill().unwrap();
    ranks[1].wait().unwrap();
    let killed_at = Instant::now();
    let rank0 = wait_within(ranks.remove(0), "rank 0");
    let stderr = String::from_utf8_lossy(&rank0.stderr);
    assert!(!rank0.status.success(), "rank 0 must fail: {stderr}");
    assert!(
        stderr.contains("rank 1"),
        "the message names rank 1: {stderr}"
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(30),
        "rank 0 gave up after {:?}",
        killed_at.elapsed()
    );

    // Resumed on one process and (from a copy) on two, for a step (the network amplifies
    // rounding too fast to compare further): the same trajectory.
    let copy = tmp.path().join("copy");
    copy_dir(&run_dir, &copy);
    let newest = checkpoint::latest(&checkpoints).unwrap().unwrap();
    let step = checkpoint::load(&newest).unwrap().state.step;
    let stop = (step + 1).to_string();
    let mut one = Command::new(env!("CARGO_BIN_EXE_kinfonce"));
    one.args([
        "pretrain",
        "--threads",
        "1",
        "--max-steps",
        &stop,
        "--resume",
    ])
    .arg(&run_dir);
    run(one);
    let mut two = Command::new(env!("CARGO_BIN_EXE_kinfonce"));
    two.args(["pretrain", "--nproc-per-node", "2", "--threads", "2"])
        .args(["--max-steps", &stop, "--resume"])
        .arg(&copy);
    run(two);
    assert_eq!(losses(&run_dir).keys().max(), Some(&(step + 1)));
    same_run(&run_dir, &copy);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn bad_launches_fail_in_one_line() {
    let Some(data) = cifar() else { return };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bad");
    let one_line = |err: &str| {
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        errors[0].to_string()
    };

    // A rank outside the world.
    let mut cmd = pretrain(&data, &out, 8, &[]);
    rank_process(&mut cmd, 2, 2, free_port());
    let err = one_line(&failure(cmd));
    assert!(err.contains("RANK=2 is outside WORLD_SIZE=2"), "{err}");

    // Rank 0 must host the rendezvous on a port that is taken.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cmd = pretrain(&data, &out, 8, &["--dist-timeout", "5"]);
    rank_process(&mut cmd, 0, 2, port);
    let err = one_line(&failure(cmd));
    assert!(
        err.contains("address in use") && err.contains(&port.to_string()),
        "{err}"
    );
    drop(taken);

    // NCCL where it cannot run: asked for by name, or by `auto` for a CUDA device; on one
    // process under torchrun's variables and from the launcher, before any worker starts.
    if !kinfonce_train::tch::Cuda::is_available() {
        for (args, wanted) in [
            (&["--backend", "nccl"][..], "nccl"),
            (&["--device", "cuda"][..], "no CUDA device is visible"),
        ] {
            let mut cmd = pretrain(&data, &out, 8, args);
            rank_process(&mut cmd, 0, 1, free_port());
            let err = one_line(&failure(cmd));
            assert!(err.contains(wanted), "{args:?}: {err}");
            let err = one_line(&failure(pretrain(
                &data,
                &out,
                8,
                &[args, &["--nproc-per-node", "2"]].concat(),
            )));
            assert!(err.contains(wanted), "{args:?} launcher: {err}");
        }
    }

    // MoCo: a split group of batch norm cannot straddle two processes.
    let err = one_line(&failure(pretrain(
        &data,
        &out,
        8,
        &[
            "--method",
            "moco",
            "--queue-size",
            "16",
            "--bn-splits",
            "1",
            "--nproc-per-node",
            "2",
        ],
    )));
    assert!(
        err.contains("`bn_splits` (1) to be a multiple of the processes"),
        "{err}"
    );

    // Rank 1 with nobody at the master's address.
    let mut cmd = pretrain(&data, &out, 8, &["--dist-timeout", "2"]);
    rank_process(&mut cmd, 1, 2, free_port());
    let err = one_line(&failure(cmd));
    assert!(err.contains("could not reach"), "{err}");

    // Ranks started with different settings: rank 1 says what differs.
    let port = free_port();
    let jobs: Vec<Child> = [("1.0", 0), ("2.0", 1)]
        .iter()
        .map(|(mu, rank)| {
            let mut cmd = pretrain(&data, &out, 8, &["--mu", mu, "--threads", "1"]);
            rank_process(&mut cmd, *rank, 2, port);
            cmd.spawn_in_group()
        })
        .collect();
    let stderr: Vec<String> = jobs
        .into_iter()
        .map(|j| String::from_utf8_lossy(&wait_within(j, "a kinfonce process").stderr).into_owned())
        .collect();
    assert!(
        stderr[1].contains("rank 1 was started with other settings than rank 0")
            && stderr[1].contains("mu: 1.0 -> 2.0"),
        "{}",
        stderr[1]
    );

    // A global batch that does not split over the processes on resume.
    let odd = tmp.path().join("odd");
    let first = ["--epochs", "1", "--max-steps", "1", "--threads", "2"];
    let mut cmd = pretrain(&data, &odd, 15, &first);
    cmd.stdout(Stdio::null());
    run(cmd);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinfonce"));
    cmd.args([
        "pretrain",
        "--nproc-per-node",
        "2",
        "--threads",
        "2",
        "--max-steps",
        "2",
        "--resume",
    ])
    .arg(&odd);
    let err = failure(cmd);
    assert!(
        err.contains("global batch of 15 pairs does not split over 2 processes"),
        "{err}"
    );
}

/// The processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some((_, ppid)) = state_and_parent(child) {
            if ppid == pid {
                children.push(child);
            }
        }
    }
    children
}

/// A process's state letter and parent, or `None` once it is gone.
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name: state, then the parent's PID.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.next()?.parse().ok()?))
}

/// `kill -9` of the `--nproc-per-node 2` launcher ends its workers (their parent-death signal):
/// none is alive 10 s later.
#[test]
fn workers_die_with_a_killed_launcher() {
    let Some(data) = cifar() else { return };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    // Long enough that the workers are still training when the launcher is killed.
    let mut cmd = pretrain(&data, &run, 16, &["--max-steps", "100000"]);
    cmd.args(["--nproc-per-node", "2", "--threads", "2"]);
    use std::os::unix::process::CommandExt;
    let mut launcher = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let group = launcher.id() as i32;
    // Whatever happens below, nothing of this job outlives the test.
    struct KillGroup(i32);
    impl Drop for KillGroup {
        fn drop(&mut self) {
            // SAFETY: kill(2) of the test's own process group; touches no memory.
            unsafe { libc::kill(-self.0, libc::SIGKILL) };
        }
    }
    let _cleanup = KillGroup(group);
    // Both workers exist and rank 0 has written the run: they are past their start.
    let deadline = Instant::now() + Duration::from_secs(120);
    let workers = loop {
        let workers = children_of(launcher.id());
        if workers.len() == 2 && run.join("metrics.jsonl").exists() {
            break workers;
        }
        assert!(Instant::now() < deadline, "the workers did not start");
        std::thread::sleep(Duration::from_millis(100));
    };
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Orphans are reparented; one that ended may linger as a zombie, which is not alive.
    let alive = |pid: &u32| matches!(state_and_parent(*pid), Some((s, _)) if s != 'Z');
    while workers.iter().any(alive) {
        assert!(
            Instant::now() < deadline,
            "workers {:?} still alive 10 s after the launcher was killed",
            workers.iter().filter(|p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// More processes than CPU cores are refused in one line before any worker starts, unless
/// asked for with --oversubscribe.
#[test]
fn more_processes_than_cores_are_refused_on_the_cpu() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .args(["pretrain", "--device", "cpu", "--nproc-per-node"])
        .arg((cores + 1).to_string())
        .arg("--out")
        .arg(&run)
        .output_within();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("--nproc-per-node {}", cores + 1))
            && stderr.contains("--oversubscribe"),
        "{stderr}"
    );
    assert!(!run.exists(), "a refused launch wrote its run folder");
}
