//! The device and the threads a network command runs with.

use crate::error::{Result, TrainError};
use tch::Device;

/// The libtorch device named `cpu`, `cuda` or `cuda:N`, checked to exist.
pub fn parse_device(name: &str) -> Result<Device> {
    let missing = |why: String| TrainError::Device(name.to_string(), why);
    let index = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other
            .strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) => i,
            None => return Err(missing("expected cpu, cuda or cuda:N".into())),
        },
    };
    if !tch::Cuda::is_available() {
        return Err(missing(if cfg!(feature = "cuda") {
            "no CUDA device is visible to libtorch (no GPU here, or CUDA_VISIBLE_DEVICES hides it)"
                .into()
        } else {
            "no CUDA device is visible: this kinfonce is built without CUDA (build it with \
             --features cuda)"
                .into()
        }));
    }
    let count = tch::Cuda::device_count() as usize;
    if index >= count {
        return Err(missing(format!("only {count} CUDA device(s)")));
    }
    Ok(Device::Cuda(index))
}

/// Threads for libtorch and rayon; 0 means every core.
pub fn configure_threads(threads: usize) -> usize {
    let n = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    tch::set_num_threads(n as i32);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    n
}
