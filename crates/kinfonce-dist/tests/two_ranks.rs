//! Real two-process tests: a test re-runs this binary as rank 0 and rank 1 (`--exact worker`
//! with `KINFONCE_DIST_WORKER=<scenario>` and torchrun's variables), on a free local port.
//! Every test that opens ports holds `SERIAL`, so distributed tests never overlap.
use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kinfonce_dist::{Backend, DistError, Launch, ProcessGroup};
use tch::{Kind, Tensor};

const WORKER_ENV: &str = "KINFONCE_DIST_WORKER";
const WORLD: usize = 2;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

struct Finished {
    success: bool,
    status: String,
    output: String,
}

/// Runs `scenario` as ranks 0..WORLD in child processes; kills them after `limit`.
fn run_ranks(scenario: &str, limit: Duration) -> Vec<Finished> {
    let port = free_port().to_string();
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..WORLD)
        .map(|rank| {
            let mut cmd = Command::new(&exe);
            cmd.args(["--exact", "worker", "--nocapture", "--test-threads=1"])
                .env(WORKER_ENV, scenario)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", WORLD.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env_remove("LOCAL_RANK")
                .env_remove("LOCAL_WORLD_SIZE")
                .env_remove("TORCHELASTIC_USE_AGENT_STORE")
                .env_remove("GLOO_SOCKET_IFNAME")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            // Drain both pipes on threads so a chatty child never blocks on a full pipe.
            let readers: Vec<_> = [
                Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
                Box::new(child.stderr.take().unwrap()),
            ]
            .into_iter()
            .map(|mut pipe| {
                std::thread::spawn(move || {
                    let mut s = String::new();
                    let _ = pipe.read_to_string(&mut s);
                    s
                })
            })
            .collect();
            (child, readers)
        })
        .collect();
    let deadline = Instant::now() + limit;
    let mut statuses = vec![None; WORLD];
    while statuses.iter().any(Option::is_none) {
        for (rank, (child, _)) in children.iter_mut().enumerate() {
            if statuses[rank].is_none() {
                statuses[rank] = child.try_wait().unwrap();
            }
        }
        if Instant::now() > deadline {
            for (child, _) in &mut children {
                let _ = child.kill();
            }
            panic!("scenario {scenario} still running after {limit:?}: a collective hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    children
        .into_iter()
        .zip(statuses)
        .map(|((_, readers), status)| {
            let status = status.unwrap();
            let output = readers
                .into_iter()
                .map(|r| r.join().unwrap())
                .collect::<Vec<_>>()
                .join("");
            Finished {
                success: status.success(),
                status: format!("{status}"),
                output,
            }
        })
        .collect()
}

fn assert_success(scenario: &str, rank: usize, f: &Finished) {
    assert!(
        f.success,
        "{scenario}: rank {rank} ended with {}:\n{}",
        f.status, f.output
    );
}

// ---------------------------------------------------------------- parent side

#[test]
fn two_ranks_collectives() {
    let _guard = serial();
    let finished = run_ranks("collectives", Duration::from_secs(60));
    for (rank, f) in finished.iter().enumerate() {
        assert_success("collectives", rank, f);
        assert!(
            f.output.contains("collectives ok"),
            "rank {rank}:\n{}",
            f.output
        );
    }
}

#[test]
fn a_dead_peer_is_named_within_the_timeout() {
    let _guard = serial();
    let finished = run_ranks("rank1_aborts", Duration::from_secs(60));
    assert_success("rank1_aborts", 0, &finished[0]);
    assert!(
        !finished[1].success,
        "rank 1 was meant to abort:\n{}",
        finished[1].output
    );
    let line = finished[0]
        .output
        .lines()
        .find(|l| l.contains("survivor error after"))
        .unwrap();
    println!("{line}");
}

#[test]
fn the_store_host_dying_is_named() {
    let _guard = serial();
    let finished = run_ranks("rank0_aborts", Duration::from_secs(60));
    assert_success("rank0_aborts", 1, &finished[1]);
    assert!(
        !finished[0].success,
        "rank 0 was meant to abort:\n{}",
        finished[0].output
    );
    let line = finished[1]
        .output
        .lines()
        .find(|l| l.contains("survivor error after"))
        .unwrap();
    println!("{line}");
}

fn launch(rank: usize, port: u16) -> Launch {
    Launch {
        rank,
        world_size: WORLD,
        local_rank: rank,
        local_world_size: WORLD,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        agent_store: false,
    }
}

fn init_error(launch: &Launch, timeout: Duration) -> (DistError, Duration) {
    let start = Instant::now();
    let err = match ProcessGroup::init(launch, Backend::Gloo, timeout) {
        Ok(_) => panic!("init on {launch:?} was meant to fail"),
        Err(e) => e,
    };
    (err, start.elapsed())
}

#[test]
fn hosting_on_a_port_in_use_fails_plainly() {
    let _guard = serial();
    let blocker = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let (err, _) = init_error(&launch(0, port), Duration::from_secs(2));
    assert_eq!(
        err.to_string(),
        format!("rank 0: cannot host the rendezvous store on 127.0.0.1:{port}: address in use")
    );
}

#[test]
fn an_unreachable_master_fails_after_the_timeout() {
    let _guard = serial();
    let port = free_port(); // closed again: nobody listens there
    let (err, elapsed) = init_error(&launch(1, port), Duration::from_secs(2));
    assert_eq!(
        err.to_string(),
        format!("rank 1: could not reach the rendezvous store at 127.0.0.1:{port} within 2 s")
    );
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
}

#[test]
fn a_peer_that_never_joins_is_counted() {
    let _guard = serial();
    let port = free_port();
    let (err, elapsed) = init_error(&launch(0, port), Duration::from_secs(2));
    assert_eq!(
        err.to_string(),
        format!("rank 0: only 1 of 2 ranks joined the rendezvous at 127.0.0.1:{port} within 2 s")
    );
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
}

#[test]
fn a_world_of_one_works_and_checks_its_arguments() {
    fn assert_send<T: Send>() {}
    assert_send::<ProcessGroup>();
    let _guard = serial();
    let mut one = launch(0, free_port());
    one.world_size = 1;
    one.local_world_size = 1;
    let pg = ProcessGroup::init(&one, Backend::Gloo, Duration::from_secs(5)).unwrap();
    let x = data(0, 0.5, &[2, 3]).set_requires_grad(true);
    let g = pg.all_gather_autograd(&x).unwrap();
    assert_eq!(max_diff(&g, &x), 0.0);
    g.sum(Kind::Double).backward();
    assert_eq!(max_diff(&x.grad(), &Tensor::ones_like(&x)), 0.0);
    let mut ts = vec![data(0, 0.5, &[3])];
    pg.all_reduce_sum(&mut ts).unwrap();
    assert_eq!(max_diff(&ts[0], &data(0, 0.5, &[3])), 0.0);
    let start = Instant::now();
    let err = pg.broadcast(&mut ts, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rank 0: broadcast failed: root 1 is outside WORLD_SIZE=1"
    );
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "argument errors skip the post-mortem"
    );
    assert_eq!(pg.broadcast_bytes(b"cfg", 0).unwrap(), b"cfg");
    pg.check_peers().unwrap();
}

#[test]
fn backends_parse() {
    assert_eq!("gloo".parse::<Backend>(), Ok(Backend::Gloo));
    assert_eq!("NCCL".parse::<Backend>(), Ok(Backend::Nccl));
    assert_eq!(
        "mpi".parse::<Backend>().unwrap_err().to_string(),
        "backend 'mpi': unknown backend (expected gloo or nccl)"
    );
}

/// NCCL asked for where it cannot run: without the cuda build, or (cuda build) on a machine
/// without a GPU, where c10d's ProcessGroupNCCL (linked from torch_cuda) gives the reason. One
/// line, naming the rank. On a GPU machine: a world of one on NCCL, CPU and GPU tensors alike.
#[test]
fn nccl_runs_on_a_gpu_and_fails_in_one_line_without() {
    let _guard = serial();
    let mut one = launch(0, free_port());
    one.world_size = 1;
    one.local_world_size = 1;
    if tch::Cuda::device_count() > 0 {
        let pg = ProcessGroup::init(&one, Backend::Nccl, Duration::from_secs(30)).unwrap();
        let gpu = tch::Device::Cuda(0);
        let x = data(0, 0.5, &[2, 3]).to_device(gpu).set_requires_grad(true);
        let g = pg.all_gather_autograd(&x).unwrap();
        assert_eq!(g.device(), gpu);
        assert_eq!(
            max_diff(&g.to_device(tch::Device::Cpu), &data(0, 0.5, &[2, 3])),
            0.0
        );
        let mut ts = vec![data(0, 0.5, &[3]), data(1, 0.5, &[4]).to_device(gpu)];
        pg.all_reduce_sum(&mut ts).unwrap();
        assert_eq!(ts[0].device(), tch::Device::Cpu);
        assert_eq!(max_diff(&ts[0], &data(0, 0.5, &[3])), 0.0);
        pg.barrier().unwrap();
        return;
    }
    let err = match ProcessGroup::init(&one, Backend::Nccl, Duration::from_secs(5)) {
        Ok(_) => panic!("NCCL without a GPU was meant to fail"),
        Err(e) => e.to_string(),
    };
    let expected = if cfg!(feature = "cuda") {
        "rank 0: could not connect the NCCL process group: ProcessGroupNCCL is only supported \
         with GPUs, no GPUs found!"
    } else {
        "backend 'nccl': this kinfonce is built without CUDA (build it with --features cuda)"
    };
    assert_eq!(err, expected);
}

#[test]
fn each_rank_takes_the_gpu_of_its_local_rank() {
    use kinfonce_dist::cuda_index;
    assert_eq!(cuda_index(5, 1, 8), Ok(1));
    // The launcher shows each process its own GPU only.
    assert_eq!(cuda_index(5, 3, 1), Ok(0));
    assert_eq!(
        cuda_index(5, 3, 2).unwrap_err().to_string(),
        "rank 5: LOCAL_RANK=3 but this process sees only 2 CUDA devices (CUDA_VISIBLE_DEVICES); \
         start at most 2 processes on this node"
    );
    assert_eq!(
        cuda_index(0, 0, 0).unwrap_err().to_string(),
        "rank 0: no CUDA device is visible to this process (each rank needs a GPU)"
    );
}

fn from(vars: &[(&str, &str)]) -> Result<Option<Launch>, DistError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Launch::from_vars(|name| map.get(name).cloned())
}

fn env_err(vars: &[(&str, &str)]) -> String {
    from(vars).unwrap_err().to_string()
}

#[test]
fn launch_from_vars() {
    let base = [("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "29500")];
    assert_eq!(from(&[]), Ok(None));
    assert_eq!(from(&base), Ok(None), "MASTER_* alone is no launcher");

    let torchrun = [
        ("RANK", "3"),
        ("WORLD_SIZE", "8"),
        ("LOCAL_RANK", "1"),
        ("LOCAL_WORLD_SIZE", "2"),
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
    ];
    let l = from(&torchrun).unwrap().unwrap();
    assert_eq!(
        l,
        Launch {
            rank: 3,
            world_size: 8,
            local_rank: 1,
            local_world_size: 2,
            master_addr: "10.0.0.1".into(),
            master_port: 29500,
            agent_store: true,
        }
    );
    assert!(
        !l.hosts_store(),
        "under the agent store rank 0 is a client too"
    );

    // Set by hand: one node, rank 0 hosts.
    let l = from(&[("RANK", "0"), ("WORLD_SIZE", "2"), base[0], base[1]])
        .unwrap()
        .unwrap();
    assert_eq!(
        (l.local_rank, l.local_world_size, l.agent_store),
        (0, 2, false)
    );
    assert!(l.hosts_store());

    assert_eq!(
        env_err(&[("RANK", "2"), ("WORLD_SIZE", "2"), base[0], base[1]]),
        "RANK=2 is outside WORLD_SIZE=2"
    );
    assert_eq!(
        env_err(&[("RANK", "one"), ("WORLD_SIZE", "2"), base[0], base[1]]),
        "RANK='one' is not a non-negative integer"
    );
    assert_eq!(
        env_err(&[("RANK", "0"), ("WORLD_SIZE", "-1"), base[0], base[1]]),
        "WORLD_SIZE='-1' is not a non-negative integer"
    );
    assert_eq!(
        env_err(&[("RANK", "0"), ("WORLD_SIZE", "0"), base[0], base[1]]),
        "WORLD_SIZE=0: a job needs at least one rank"
    );
    assert_eq!(
        env_err(&[("RANK", "0"), base[0], base[1]]),
        "RANK is set but WORLD_SIZE is not"
    );
    assert_eq!(
        env_err(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "29500")]),
        "RANK/WORLD_SIZE are set but MASTER_ADDR is not (the rendezvous host)"
    );
    assert_eq!(
        env_err(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")]),
        "RANK/WORLD_SIZE are set but MASTER_PORT is not (the rendezvous port)"
    );
    assert_eq!(
        env_err(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            base[0],
            ("MASTER_PORT", "70000")
        ]),
        "MASTER_PORT='70000' is not a port number (1-65535)"
    );
    assert_eq!(
        env_err(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "x"),
            base[0],
            base[1]
        ]),
        "LOCAL_RANK='x' is not a non-negative integer"
    );
    assert_eq!(
        env_err(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "2"),
            ("LOCAL_WORLD_SIZE", "2"),
            base[0],
            base[1]
        ]),
        "LOCAL_RANK=2 is outside LOCAL_WORLD_SIZE=2"
    );

    // SLURM: only with MASTER_ADDR/PORT exported by the batch script.
    let slurm = [
        ("SLURM_PROCID", "5"),
        ("SLURM_NTASKS", "8"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_TASKS_PER_NODE", "4(x2)"),
    ];
    assert_eq!(from(&slurm), Ok(None));
    let mut with_master = slurm.to_vec();
    with_master.extend(base);
    let l = from(&with_master).unwrap().unwrap();
    assert_eq!(
        (l.rank, l.world_size, l.local_rank, l.local_world_size),
        (5, 8, 1, 4)
    );
    assert!(!l.agent_store && !l.hosts_store());
    assert_eq!(
        env_err(&[
            ("SLURM_PROCID", "8"),
            ("SLURM_NTASKS", "8"),
            base[0],
            base[1]
        ]),
        "SLURM_PROCID=8 is outside SLURM_NTASKS=8"
    );
    assert_eq!(
        env_err(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("MASTER_PORT", "1")
        ]),
        "SLURM_PROCID is set but MASTER_ADDR is not (the rendezvous host)"
    );
}

// ---------------------------------------------------------------- worker side

/// Runs as a child of the tests above; does nothing in an ordinary `cargo test`.
#[test]
fn worker() {
    let Ok(scenario) = std::env::var(WORKER_ENV) else {
        return;
    };
    let launch = Launch::from_env()
        .unwrap()
        .expect("the parent sets RANK/WORLD_SIZE");
    tch::set_num_threads(1);
    match scenario.as_str() {
        "collectives" => collectives(&launch),
        "rank1_aborts" => peer_aborts(&launch, 1),
        "rank0_aborts" => peer_aborts(&launch, 0),
        other => panic!("unknown scenario {other}"),
    }
}

fn f64s(values: &[f64], shape: &[i64]) -> Tensor {
    Tensor::from_slice(values).reshape(shape)
}

/// Deterministic per-rank data: `salt` keeps different uses apart.
fn data(rank: usize, salt: f64, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let values: Vec<f64> = (0..n)
        .map(|i| ((i as f64 + 1.0) * (rank as f64 + 1.3) + salt).sin())
        .collect();
    f64s(&values, shape)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn collectives(launch: &Launch) {
    let pg = ProcessGroup::init(launch, Backend::Gloo, Duration::from_secs(20)).unwrap();
    let rank = pg.rank();
    assert_eq!((rank, pg.world_size()), (launch.rank, WORLD));

    // all_reduce_sum: mixed dtypes, a transposed (non-contiguous) view, a scalar.
    let make = |r: usize| {
        vec![
            data(r, 0.0, &[2, 3]).to_kind(Kind::Float),
            data(r, 1.0, &[5]),
            data(r, 2.0, &[2, 3]).to_kind(Kind::Float).tr(),
            data(r, 3.0, &[1]).reshape(&[] as &[i64]),
        ]
    };
    let mut mine = make(rank);
    pg.all_reduce_sum(&mut mine).unwrap();
    let (r0, r1) = (make(0), make(1));
    for (i, got) in mine.iter().enumerate() {
        let want = &r0[i] + &r1[i];
        assert_eq!(got.kind(), want.kind());
        let tol = if got.kind() == Kind::Float {
            1e-6
        } else {
            1e-15
        };
        assert!(max_diff(got, &want) < tol, "all_reduce_sum tensor {i}");
    }

    // all_gather: rank order on dim 0.
    let gathered = pg.all_gather(&data(rank, 4.0, &[3, 2])).unwrap();
    let want = Tensor::cat(&[data(0, 4.0, &[3, 2]), data(1, 4.0, &[3, 2])], 0);
    assert_eq!(max_diff(&gathered, &want), 0.0, "all_gather order");

    // broadcast from rank 1.
    let mut tensors = vec![
        data(rank, 5.0, &[4]).to_kind(Kind::Float),
        data(rank, 6.0, &[2, 2]),
    ];
    pg.broadcast(&mut tensors, 1).unwrap();
    assert_eq!(
        max_diff(&tensors[0], &data(1, 5.0, &[4]).to_kind(Kind::Float)),
        0.0
    );
    assert_eq!(max_diff(&tensors[1], &data(1, 6.0, &[2, 2])), 0.0);

    pg.barrier().unwrap();

    let text = format!("config of rank {rank}");
    let got = pg.broadcast_bytes(text.as_bytes(), 0).unwrap();
    assert_eq!(got, b"config of rank 0");
    let got = pg.broadcast_bytes(text.as_bytes(), 1).unwrap();
    assert_eq!(got, b"config of rank 1");

    // all_gather_autograd: loss_r = sum(w_r * gathered) + sum(x_r^2). The gradient of the
    // summed loss for my rows is every rank's w for my rows, plus 2 x.
    let (n, d) = (3i64, 4i64);
    let x = data(rank, 7.0, &[n, d]).set_requires_grad(true);
    let w = |r: usize| data(r, 8.0, &[WORLD as i64 * n, d]);
    let g = pg.all_gather_autograd(&x).unwrap();
    let want = Tensor::cat(&[data(0, 7.0, &[n, d]), data(1, 7.0, &[n, d])], 0);
    assert_eq!(max_diff(&g, &want), 0.0, "all_gather_autograd forward");
    let loss = (&g * w(rank)).sum(Kind::Double) + (&x * &x).sum(Kind::Double);
    loss.backward();
    let mine = |t: Tensor| t.narrow(0, rank as i64 * n, n);
    let want = mine(w(0)) + mine(w(1)) + 2.0 * x.detach();
    let diff = max_diff(&x.grad(), &want);
    assert!(diff < 1e-12, "all_gather_autograd gradient off by {diff}");

    // all_reduce_sum_autograd: loss_r = sum(v_r * y), y = sum over ranks of x_r.
    let x = data(rank, 9.0, &[2, 5]).set_requires_grad(true);
    let v = |r: usize| data(r, 10.0, &[2, 5]);
    let y = pg.all_reduce_sum_autograd(&x).unwrap();
    let want = data(0, 9.0, &[2, 5]) + data(1, 9.0, &[2, 5]);
    assert!(
        max_diff(&y, &want) < 1e-15,
        "all_reduce_sum_autograd forward"
    );
    (&y * v(rank)).sum(Kind::Double).backward();
    let diff = max_diff(&x.grad(), &(v(0) + v(1)));
    assert!(
        diff < 1e-12,
        "all_reduce_sum_autograd gradient off by {diff}"
    );

    pg.barrier().unwrap();
    println!("rank {rank}: collectives ok");
}

/// Both ranks do one all_reduce; `victim` then aborts; the survivor's next collective must
/// fail within the 10 s timeout and name the victim (or, for rank 0, the store host).
fn peer_aborts(launch: &Launch, victim: usize) {
    let timeout = Duration::from_secs(10);
    let pg = ProcessGroup::init(launch, Backend::Gloo, timeout).unwrap();
    let mut t = vec![Tensor::ones([4], (Kind::Float, tch::Device::Cpu))];
    pg.all_reduce_sum(&mut t).unwrap();
    if pg.rank() == victim {
        std::process::abort();
    }
    let start = Instant::now();
    let err = pg.all_reduce_sum(&mut t).unwrap_err();
    let elapsed = start.elapsed();
    let msg = err.to_string();
    println!(
        "rank {}: survivor error after {:.2} s: {msg}",
        pg.rank(),
        elapsed.as_secs_f64()
    );
    let named = if victim == 0 {
        "rank 0 (host of the rendezvous store) is gone".to_string()
    } else {
        format!("rank {victim} stopped responding")
    };
    assert!(msg.contains(&named), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    // Drop must not hang with a dead peer and (for rank 0's death) a dead store.
    let start = Instant::now();
    drop(pg);
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "drop took {:?}",
        start.elapsed()
    );
}
