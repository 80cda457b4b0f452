use std::str::FromStr;

use crate::DistError;

/// The collective backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo over TCP; collectives run on the CPU.
    Gloo,
    /// NCCL; collectives run on this rank's GPU ([`cuda_index`]). Needs the `cuda` feature.
    Nccl,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "Gloo",
            Backend::Nccl => "NCCL",
        }
    }

    /// Whether this build has the backend (NCCL comes with the `cuda` feature).
    pub fn check_built(self) -> Result<(), DistError> {
        if self == Backend::Nccl && !cfg!(feature = "cuda") {
            return Err(DistError::Backend {
                name: "nccl".into(),
                why: "this kinfonce is built without CUDA (build it with --features cuda)".into(),
            });
        }
        Ok(())
    }
}

impl FromStr for Backend {
    type Err = DistError;

    fn from_str(s: &str) -> Result<Self, DistError> {
        match s.to_ascii_lowercase().as_str() {
            "gloo" => Ok(Backend::Gloo),
            "nccl" => Ok(Backend::Nccl),
            _ => Err(DistError::Backend {
                name: s.to_string(),
                why: "unknown backend (expected gloo or nccl)".to_string(),
            }),
        }
    }
}

/// The GPU a rank uses, as torchrun's convention has it: `cuda:LOCAL_RANK` when every GPU of the
/// node is visible, `cuda:0` when the launcher shows each process only its own
/// (`CUDA_VISIBLE_DEVICES` per task, as SLURM's `--gpus-per-task` does).
pub fn cuda_index(rank: usize, local_rank: usize, visible: usize) -> Result<usize, DistError> {
    match visible {
        0 => Err(DistError::Env(format!(
            "rank {rank}: no CUDA device is visible to this process (each rank needs a GPU)"
        ))),
        1 => Ok(0),
        n if local_rank < n => Ok(local_rank),
        n => Err(DistError::Env(format!(
            "rank {rank}: LOCAL_RANK={local_rank} but this process sees only {n} CUDA devices \
             (CUDA_VISIBLE_DEVICES); start at most {n} processes on this node"
        ))),
    }
}

/// Where this process sits in the job, as the launcher (torchrun or SLURM) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    pub local_world_size: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent already serves the store at `master_addr:master_port`: every rank,
    /// rank 0 included, connects as a client. Otherwise rank 0 hosts it.
    pub agent_store: bool,
}

impl Launch {
    /// torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
    /// MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE), else SLURM's (SLURM_PROCID, SLURM_NTASKS,
    /// SLURM_LOCALID, SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE) when MASTER_ADDR and
    /// MASTER_PORT are set; `Ok(None)` when no launcher variables are present (single process).
    pub fn from_env() -> Result<Option<Launch>, DistError> {
        Launch::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Launch::from_env`] over any variable source (tests pass a map).
    ///
    /// Without LOCAL_RANK / LOCAL_WORLD_SIZE (RANK set by hand) the job is taken to be one
    /// node: local rank = rank, local world size = world size.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, DistError> {
        // An empty variable counts as unset, as shells and launchers mostly mean it.
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let torchrun = get("RANK").is_some() || get("WORLD_SIZE").is_some();
        let slurm = !torchrun
            && get("SLURM_PROCID").is_some()
            && (get("MASTER_ADDR").is_some() || get("MASTER_PORT").is_some());
        if !torchrun && !slurm {
            return Ok(None);
        }
        let names = if torchrun {
            ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"]
        } else {
            [
                "SLURM_PROCID",
                "SLURM_NTASKS",
                "SLURM_LOCALID",
                "SLURM_NTASKS_PER_NODE",
            ]
        };
        let [rank_var, world_var, local_var, local_world_var] = names;
        let rank = required(&get, rank_var, world_var)?;
        let world_size = required(&get, world_var, rank_var)?;
        if world_size == 0 {
            return Err(DistError::Env(format!(
                "{world_var}=0: a job needs at least one rank"
            )));
        }
        if rank >= world_size {
            return Err(DistError::Env(format!(
                "{rank_var}={rank} is outside {world_var}={world_size}"
            )));
        }
        let local_rank = optional(&get, local_var)?.unwrap_or(if torchrun { rank } else { 0 });
        let local_world_size = match optional(&get, local_world_var)? {
            Some(n) => n,
            // SLURM_TASKS_PER_NODE reads like "4(x2),3"; the first node's count is ours on
            // homogeneous jobs, the only kind this layer is meant for.
            None if slurm => match get("SLURM_TASKS_PER_NODE") {
                Some(v) => leading_count(&v).ok_or_else(|| {
                    DistError::Env(format!(
                        "SLURM_TASKS_PER_NODE='{v}' does not start with a count"
                    ))
                })?,
                None => 1,
            },
            None => world_size,
        };
        if local_world_size == 0 || local_rank >= local_world_size {
            return Err(DistError::Env(format!(
                "{local_var}={local_rank} is outside {local_world_var}={local_world_size}"
            )));
        }
        let launcher = if torchrun {
            "RANK/WORLD_SIZE are set"
        } else {
            "SLURM_PROCID is set"
        };
        let master_addr = get("MASTER_ADDR").ok_or_else(|| {
            DistError::Env(format!(
                "{launcher} but MASTER_ADDR is not (the rendezvous host)"
            ))
        })?;
        let port_text = get("MASTER_PORT").ok_or_else(|| {
            DistError::Env(format!(
                "{launcher} but MASTER_PORT is not (the rendezvous port)"
            ))
        })?;
        let master_port = match port_text.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(DistError::Env(format!(
                    "MASTER_PORT='{port_text}' is not a port number (1-65535)"
                )))
            }
        };
        // Exactly torch's test (rendezvous.py: `== str(True)`).
        let agent_store = get("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True");
        Ok(Some(Launch {
            rank,
            world_size,
            local_rank,
            local_world_size,
            master_addr: master_addr.trim().to_string(),
            master_port,
            agent_store,
        }))
    }

    /// Whether this process serves the rendezvous store itself.
    pub fn hosts_store(&self) -> bool {
        !self.agent_store && self.rank == 0
    }
}

fn parse_count(name: &str, value: &str) -> Result<usize, DistError> {
    value
        .trim()
        .parse()
        .map_err(|_| DistError::Env(format!("{name}='{value}' is not a non-negative integer")))
}

fn required(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    partner: &str,
) -> Result<usize, DistError> {
    let value =
        get(name).ok_or_else(|| DistError::Env(format!("{partner} is set but {name} is not")))?;
    parse_count(name, &value)
}

fn optional(get: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<usize>, DistError> {
    get(name).map(|v| parse_count(name, &v)).transpose()
}

fn leading_count(v: &str) -> Option<usize> {
    let digits: String = v.trim().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
