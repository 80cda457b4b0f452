//! Keep freed activation memory in the process instead of handing it back to the kernel.
//!
//! libtorch's CPU allocator asks `malloc` for every activation and gradient afresh. glibc serves
//! any request above its mmap threshold (at most 32 MiB) with a fresh `mmap` and returns it with
//! `munmap` on free, and trims the heap top when freed space exceeds a threshold. A ResNet-18 at
//! width 64 on 256 CIFAR views holds bf16 activations of 33.5 MB: every one of them is a new
//! mapping whose 8,000 pages are faulted in and zeroed by the kernel, on every step. Serving
//! everything from the heap and never trimming it makes the step reuse the same pages: the
//! width-64 bf16 + channels-last step spends half the system time and runs 8-10% faster, the f32
//! step (67 MB activations) about 45% faster (`docs/results/throughput.md`). The price is that
//! the process keeps its peak footprint until it exits, which a training or evaluation process
//! reaches in its first step anyway.
//!
//! This is the same effect as starting a PyTorch script with `MALLOC_MMAP_MAX_=0
//! MALLOC_TRIM_THRESHOLD_=...`; doing it in-process means no user has to know.

/// Serve all allocations from the heap and never trim it (glibc only; elsewhere a no-op).
///
/// Process-wide: call it once at the start of a command that trains or evaluates. Returns
/// whether the allocator accepted the settings.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; it is safe to call at any time, and
        // the settings apply to later allocations.
        unsafe {
            let no_mmap = libc::mallopt(libc::M_MMAP_MAX, 0) == 1;
            let no_trim = libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1;
            no_mmap && no_trim
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
