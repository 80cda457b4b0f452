//! Distributed layer on PyTorch's own c10d: the collectives a data-parallel trainer needs, on
//! Gloo over TCP or (with the `cuda` feature) NCCL, for `tch::Tensor`s.
//!
//! `csrc/shim.cpp` is a small C ABI over `c10d::TCPStore`, `c10d::PrefixStore`,
//! `c10d::ProcessGroupGloo` and `c10d::ProcessGroupNCCL` from the libtorch that tch links (the
//! torch wheel); see README.md for how it is built without gloo's headers and with the CUDA
//! headers of two pip packages.
//!
//! A group runs its collectives on one device: the CPU for Gloo, the rank's GPU for NCCL.
//! Tensors elsewhere are copied there and the result copied back, so every collective takes
//! tensors on any device (the trainer's one-number exchanges stay on the CPU either way).
//!
//! - [`Launch`] reads torchrun's or SLURM's variables.
//! - [`ProcessGroup::init`] connects to the rendezvous store (rank 0 hosts it, unless torchrun's
//!   agent already serves it), waits until every rank has joined, and connects Gloo or NCCL.
//! - Collectives: [`ProcessGroup::all_reduce_sum`] (coalesced, in place),
//!   [`ProcessGroup::all_gather`], [`ProcessGroup::broadcast`], [`ProcessGroup::barrier`],
//!   autograd-aware [`ProcessGroup::all_gather_autograd`] and
//!   [`ProcessGroup::all_reduce_sum_autograd`], and [`ProcessGroup::broadcast_bytes`].
//!
//! Faults: each rank runs a heartbeat thread that increments the store key `hb/<rank>` every
//! 0.5 s on its own store connection. When a collective fails (Gloo notices a closed connection
//! at once, a silent peer at the timeout), the counters are read twice 1.5 s apart and the
//! ranks whose counter did not move are named in the error; if the store itself cannot be
//! read, its host is named as gone.
mod error;
mod ffi;
mod launch;

use std::cell::Cell;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use error::DistError;
pub use launch::{cuda_index, Backend, Launch};

use error::{first_line, secs};
use ffi::{GlooDevice, Group, ShimError, Store};

/// Our keys in the (possibly shared, under torchrun) store live under this prefix.
const STORE_PREFIX: &str = "kinfonce/";
/// How often each rank bumps its heartbeat counter.
const HEARTBEAT_PERIOD: Duration = Duration::from_millis(500);
/// A rank whose counter does not move for this long (three periods) is taken to be gone.
const STALL_WINDOW: Duration = Duration::from_millis(1500);
/// A rank whose counter [`ProcessGroup::watch_peers`] sees still for this long is taken to be
/// gone (six periods: a busy machine may delay a beat or two).
const WATCH_WINDOW: Duration = Duration::from_secs(3);
/// How often a rank looks at the join counter while the others arrive.
const JOIN_POLL: Duration = Duration::from_millis(50);

/// A Gloo process group over all ranks of the job.
///
/// `Send` but not `Sync`: every rank must issue the same collectives in the same order, so one
/// thread drives it. Dropping it stops the heartbeat thread, then closes Gloo and the store
/// (on rank 0 that ends the store server: call [`ProcessGroup::barrier`] before dropping at the
/// end of a clean run, so no rank still needs it).
pub struct ProcessGroup {
    heartbeat: Option<Heartbeat>,
    /// The thread of [`ProcessGroup::watch_peers`], while it runs.
    watchdog: std::cell::RefCell<Option<Heartbeat>>,
    group: Option<Group>,
    /// A second connection, for the heartbeat and the post-mortem reads (never blocked behind
    /// a waiting `get` on `store`).
    probe: Arc<Store>,
    store: Option<Store>,
    /// Key namespace of this group inside the store: `g<n>/` for the n-th group of the job.
    ns: String,
    rank: usize,
    world_size: usize,
    local_rank: usize,
    addr: String,
    port: u16,
    agent_store: bool,
    timeout: Duration,
    bytes_seq: Cell<u64>,
}

struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    fn start(store: Arc<Store>, key: String) -> Heartbeat {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kinfonce-dist-heartbeat".into())
            .spawn(move || loop {
                // A failed add means the store host is gone; the post-mortem says so.
                let _ = store.add(&key, 1);
                match stopped.recv_timeout(HEARTBEAT_PERIOD) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            })
            .expect("spawn the heartbeat thread");
        Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take()); // disconnects the channel: the thread leaves its wait at once
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ProcessGroup {
    /// Connects this process to the job described by `launch`.
    ///
    /// `timeout` bounds each step: reaching (or hosting) the store, waiting for every rank to
    /// join, connecting Gloo, and each collective afterwards.
    ///
    /// Gloo listens on 127.0.0.1 when MASTER_ADDR is a loopback address, on the interface
    /// named by GLOO_SOCKET_IFNAME when that is set (as torch does), else on the address this
    /// host's name resolves to. NCCL runs on this rank's GPU ([`cuda_index`]), which becomes the
    /// calling thread's current CUDA device.
    pub fn init(launch: &Launch, backend: Backend, timeout: Duration) -> Result<Self, DistError> {
        let (rank, world_size) = (launch.rank, launch.world_size);
        backend.check_built()?;
        if world_size == 0 || rank >= world_size {
            return Err(DistError::Env(format!(
                "RANK={rank} is outside WORLD_SIZE={world_size}"
            )));
        }
        let (addr, port) = (launch.master_addr.clone(), launch.master_port);
        let timeout_ms = timeout.as_millis().clamp(1, i64::MAX as u128) as i64;
        let hosts = launch.hosts_store();
        let store = Store::create(&addr, port, hosts, timeout_ms, STORE_PREFIX).map_err(|e| {
            if !hosts {
                DistError::Unreachable {
                    rank,
                    addr: addr.clone(),
                    port,
                    secs: secs(timeout),
                }
            } else if e.contains("EADDRINUSE")
                || e.to_lowercase().contains("address already in use")
            {
                DistError::AddressInUse {
                    rank,
                    addr: addr.clone(),
                    port,
                }
            } else {
                DistError::HostStore {
                    rank,
                    addr: addr.clone(),
                    port,
                    detail: first_line(&e),
                }
            }
        })?;
        let init_err = |e: ShimError| DistError::Init {
            rank,
            backend: backend.name(),
            detail: first_line(&e),
        };
        // The n-th group a rank creates lives under `g<n>/`, so a second group on torchrun's
        // long-lived agent store does not read the first one's keys.
        let generation = store
            .add(&format!("groups_created/{rank}"), 1)
            .map_err(init_err)?;
        let ns = format!("g{generation}/");

        // Count ranks in ourselves: c10d's own wait says only "timed out".
        let joined_key = format!("{ns}joined");
        store.add(&joined_key, 1).map_err(init_err)?;
        let deadline = Instant::now() + timeout;
        loop {
            let joined = store.add(&joined_key, 0).map_err(init_err)?;
            if joined as usize >= world_size {
                break;
            }
            if Instant::now() >= deadline {
                return Err(DistError::JoinTimeout {
                    rank,
                    joined: joined as usize,
                    world_size,
                    addr,
                    port,
                    secs: secs(timeout),
                });
            }
            std::thread::sleep(JOIN_POLL);
        }

        let probe = Arc::new(store.connect_again().map_err(init_err)?);
        let heartbeat = Heartbeat::start(probe.clone(), format!("{ns}hb/{rank}"));
        let group = match backend {
            Backend::Gloo => Group::gloo(
                &store,
                rank,
                world_size,
                &gloo_device(&addr),
                &format!("{ns}gloo/"),
                timeout_ms,
            ),
            Backend::Nccl => {
                // Without a visible GPU, c10d's constructor gives the reason in its own words.
                let visible = tch::Cuda::device_count().max(0) as usize;
                let index = match visible {
                    0 => 0,
                    n => cuda_index(rank, launch.local_rank, n)?,
                };
                Group::nccl(
                    &store,
                    rank,
                    world_size,
                    index,
                    &format!("{ns}nccl/"),
                    timeout_ms,
                )
            }
        }
        .map_err(init_err)?;
        Ok(ProcessGroup {
            heartbeat: Some(heartbeat),
            watchdog: std::cell::RefCell::new(None),
            group: Some(group),
            probe,
            store: Some(store),
            ns,
            rank,
            world_size,
            local_rank: launch.local_rank,
            addr,
            port,
            agent_store: launch.agent_store,
            timeout,
            bytes_seq: Cell::new(0),
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// This process's index among the ranks of its node (LOCAL_RANK).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Sums every tensor over ranks, in place. Tensors of one dtype travel as one flat buffer
    /// (one Gloo allreduce per dtype present); every rank passes the same shapes and dtypes in
    /// the same order. Any device (see the crate docs), any strides; runs without recording
    /// autograd history.
    pub fn all_reduce_sum(&self, tensors: &mut [tch::Tensor]) -> Result<(), DistError> {
        let op = "all_reduce_sum";
        self.check_defined(op, tensors.iter())?;
        self.run(op, |g| g.all_reduce_sum(tensors))
    }

    /// Every rank's `t` concatenated on dim 0 in rank order (a 0-dim `t` gives a `[world]`
    /// tensor). Shapes and dtypes must be equal on all ranks. No autograd history.
    pub fn all_gather(&self, t: &tch::Tensor) -> Result<tch::Tensor, DistError> {
        let op = "all_gather";
        self.check_defined(op, std::iter::once(t))?;
        self.run(op, |g| g.all_gather(t))
    }

    /// Overwrites every tensor with `root`'s, in place (e.g. the parameters at start).
    pub fn broadcast(&self, tensors: &mut [tch::Tensor], root: usize) -> Result<(), DistError> {
        let op = "broadcast";
        self.check_root(op, root)?;
        self.check_defined(op, tensors.iter())?;
        self.run(op, |g| g.broadcast(tensors, root))
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<(), DistError> {
        self.run("barrier", |g| g.barrier())
    }

    /// [`ProcessGroup::all_gather`] inside the autograd graph: the backward pass sums the
    /// incoming gradient over ranks and keeps this rank's rows, which is the gradient of the
    /// sum of all ranks' losses (every rank must run backward through it, in the same order
    /// as its other collectives). The graph keeps the Gloo group alive until it is freed.
    pub fn all_gather_autograd(&self, t: &tch::Tensor) -> Result<tch::Tensor, DistError> {
        let op = "all_gather_autograd";
        self.check_defined(op, std::iter::once(t))?;
        self.run(op, |g| g.all_gather_autograd(t))
    }

    /// The sum over ranks inside the autograd graph; backward sums the gradient over ranks
    /// (synchronised batch-norm statistics).
    pub fn all_reduce_sum_autograd(&self, t: &tch::Tensor) -> Result<tch::Tensor, DistError> {
        let op = "all_reduce_sum_autograd";
        self.check_defined(op, std::iter::once(t))?;
        self.run(op, |g| g.all_reduce_sum_autograd(t))
    }

    /// `root`'s bytes on every rank (e.g. rank 0's config text to compare against). Goes
    /// through the store: `root` returns at once, the others wait up to the timeout.
    pub fn broadcast_bytes(&self, bytes: &[u8], root: usize) -> Result<Vec<u8>, DistError> {
        let op = "broadcast_bytes";
        self.check_root(op, root)?;
        let seq = self.bytes_seq.get() + 1;
        self.bytes_seq.set(seq);
        let key = format!("{}bytes/{seq}", self.ns);
        let store = self.store.as_ref().expect("store lives until drop");
        let result = if self.rank == root {
            store.set(&key, bytes).map(|()| bytes.to_vec())
        } else {
            store.get(&key, self.timeout_ms())
        };
        result.map_err(|e| self.explain(op, &e))
    }

    /// Reads the heartbeats (takes 1.5 s) and names the ranks that stopped. Useful after an
    /// error from a backward pass through the autograd collectives, which tch reports without
    /// this diagnosis.
    pub fn check_peers(&self) -> Result<(), DistError> {
        match self.who_is_gone() {
            Some(who) => Err(DistError::PeerLost {
                rank: self.rank,
                op: "check_peers",
                who,
            }),
            None => Ok(()),
        }
    }

    fn timeout_ms(&self) -> i64 {
        self.timeout.as_millis().clamp(1, i64::MAX as u128) as i64
    }

    fn group(&self) -> &Group {
        self.group.as_ref().expect("group lives until drop")
    }

    fn run<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Group) -> Result<T, ShimError>,
    ) -> Result<T, DistError> {
        f(self.group()).map_err(|e| self.explain(op, &e))
    }

    fn explain(&self, op: &'static str, e: &str) -> DistError {
        match self.who_is_gone() {
            Some(who) => DistError::PeerLost {
                rank: self.rank,
                op,
                who,
            },
            None => DistError::Collective {
                rank: self.rank,
                op,
                detail: first_line(e),
            },
        }
    }

    /// The heartbeat post-mortem: `None` when every other rank's counter moved within
    /// [`STALL_WINDOW`].
    /// Watches the other ranks' heartbeats from a thread of its own and calls `on_lost` with
    /// the reason (which rank stopped responding, or that the store's host is gone) as soon as
    /// one stalls for [`WATCH_WINDOW`], whatever this rank is doing then: a peer that dies while
    /// this rank waits in a collective Gloo does not notice until the timeout. Stop it with
    /// [`ProcessGroup::stop_watching`] before the ranks part (the store goes with rank 0).
    pub fn watch_peers(&self, on_lost: impl Fn(String) + Send + 'static) {
        let (store, ns, rank, world) = (
            Arc::clone(&self.probe),
            self.ns.clone(),
            self.rank,
            self.world_size,
        );
        let store_gone = self.store_gone_message();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kinfonce-dist-watchdog".into())
            .spawn(move || {
                let mut last = vec![i64::MIN; world];
                let mut moved = vec![Instant::now(); world];
                // The store unreadable since (its host gone, or a passing hiccup).
                let mut unreadable: Option<Instant> = None;
                loop {
                    match stopped.recv_timeout(HEARTBEAT_PERIOD) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    let counts: Result<Vec<i64>, ShimError> = (0..world)
                        .map(|r| store.add(&format!("{ns}hb/{r}"), 0))
                        .collect();
                    let Ok(counts) = counts else {
                        let since = *unreadable.get_or_insert_with(Instant::now);
                        if since.elapsed() >= WATCH_WINDOW {
                            return on_lost(store_gone);
                        }
                        continue;
                    };
                    unreadable = None;
                    for (r, &count) in counts.iter().enumerate() {
                        if count != last[r] {
                            (last[r], moved[r]) = (count, Instant::now());
                        } else if r != rank && moved[r].elapsed() >= WATCH_WINDOW {
                            return on_lost(format!(
                                "rank {r} stopped responding (no heartbeat for {} s)",
                                secs(WATCH_WINDOW)
                            ));
                        }
                    }
                }
            })
            .expect("spawn the watchdog thread");
        *self.watchdog.borrow_mut() = Some(Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        });
    }

    /// Stops the thread of [`ProcessGroup::watch_peers`].
    pub fn stop_watching(&self) {
        drop(self.watchdog.borrow_mut().take());
    }

    fn store_gone_message(&self) -> String {
        if self.agent_store {
            format!(
                "the rendezvous store at {}:{} (torchrun's agent) is gone",
                self.addr, self.port
            )
        } else {
            "rank 0 (host of the rendezvous store) is gone".to_string()
        }
    }

    fn who_is_gone(&self) -> Option<String> {
        let read = || -> Result<Vec<i64>, ShimError> {
            (0..self.world_size)
                .map(|r| self.probe.add(&format!("{}hb/{r}", self.ns), 0))
                .collect()
        };
        let store_gone = || self.store_gone_message();
        let Ok(before) = read() else {
            return Some(store_gone());
        };
        std::thread::sleep(STALL_WINDOW);
        let Ok(after) = read() else {
            return Some(store_gone());
        };
        let stalled: Vec<String> = (0..self.world_size)
            .filter(|&r| r != self.rank && before[r] == after[r])
            .map(|r| r.to_string())
            .collect();
        let window = secs(STALL_WINDOW);
        match stalled.len() {
            0 => None,
            1 => Some(format!(
                "rank {} stopped responding (no heartbeat for {window} s)",
                stalled[0]
            )),
            _ => Some(format!(
                "ranks {} stopped responding (no heartbeat for {window} s)",
                stalled.join(", ")
            )),
        }
    }

    fn check_root(&self, op: &'static str, root: usize) -> Result<(), DistError> {
        if root >= self.world_size {
            return Err(DistError::Collective {
                rank: self.rank,
                op,
                detail: format!("root {root} is outside WORLD_SIZE={}", self.world_size),
            });
        }
        Ok(())
    }

    fn check_defined<'a>(
        &self,
        op: &'static str,
        mut tensors: impl Iterator<Item = &'a tch::Tensor>,
    ) -> Result<(), DistError> {
        if tensors.any(|t| !t.defined()) {
            return Err(DistError::Collective {
                rank: self.rank,
                op,
                detail: "got an undefined tensor".into(),
            });
        }
        Ok(())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.stop_watching();
        // The heartbeat uses the store, and Gloo's group holds a reference to it: stop the
        // thread, close Gloo, then the store (on rank 0, with it the server).
        drop(self.heartbeat.take());
        drop(self.group.take());
        drop(self.store.take());
    }
}

/// Which address Gloo listens on; see [`ProcessGroup::init`].
fn gloo_device(master_addr: &str) -> GlooDevice {
    if let Some(ifname) = std::env::var("GLOO_SOCKET_IFNAME")
        .ok()
        .filter(|s| !s.is_empty())
    {
        // torch accepts a comma-separated list; one device is enough here.
        return GlooDevice::Interface(ifname.split(',').next().unwrap_or_default().to_string());
    }
    let loopback = master_addr == "localhost"
        || master_addr
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        GlooDevice::Hostname("127.0.0.1".to_string())
    } else {
        GlooDevice::Default
    }
}
