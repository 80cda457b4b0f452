use thiserror::Error;

/// Every message is one line and names the rank, address or variable it is about.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DistError {
    /// A launcher variable is missing, malformed or inconsistent (the message names it).
    #[error("{0}")]
    Env(String),
    #[error("backend '{name}': {why}")]
    Backend { name: String, why: String },
    #[error("rank {rank}: cannot host the rendezvous store on {addr}:{port}: address in use")]
    AddressInUse {
        rank: usize,
        addr: String,
        port: u16,
    },
    #[error("rank {rank}: cannot host the rendezvous store on {addr}:{port}: {detail}")]
    HostStore {
        rank: usize,
        addr: String,
        port: u16,
        detail: String,
    },
    #[error("rank {rank}: could not reach the rendezvous store at {addr}:{port} within {secs} s")]
    Unreachable {
        rank: usize,
        addr: String,
        port: u16,
        secs: String,
    },
    #[error(
        "rank {rank}: only {joined} of {world_size} ranks joined the rendezvous at {addr}:{port} within {secs} s"
    )]
    JoinTimeout {
        rank: usize,
        joined: usize,
        world_size: usize,
        addr: String,
        port: u16,
        secs: String,
    },
    #[error("rank {rank}: could not connect the {backend} process group: {detail}")]
    Init {
        rank: usize,
        backend: &'static str,
        detail: String,
    },
    /// A collective failed and the heartbeats say who is gone (`who` names the rank or ranks).
    #[error("rank {rank}: {op} failed: {who}")]
    PeerLost {
        rank: usize,
        op: &'static str,
        who: String,
    },
    /// A collective failed for another reason (bad input, mismatched calls, a stuck peer).
    #[error("rank {rank}: {op} failed: {detail}")]
    Collective {
        rank: usize,
        op: &'static str,
        detail: String,
    },
}

/// c10d's messages span several lines (and may hold a C++ backtrace); keep the first line.
pub(crate) fn first_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no detail")
        .to_string()
}

/// "10", "2.5": seconds as a person writes them.
pub(crate) fn secs(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}
