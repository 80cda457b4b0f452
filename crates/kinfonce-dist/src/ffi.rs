//! The C ABI of `csrc/shim.cpp` and thin owners of its handles.
//!
//! Every shim function returns 0 or 1; on 1 it has written a malloc'ed message to `err`, which
//! [`take_error`] copies and frees.
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;

use torch_sys::C_tensor;

extern "C" {
    fn kd_free(p: *mut c_void);
    fn kd_store_create(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        timeout_ms: i64,
        prefix: *const c_char,
        out: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    fn kd_store_clone(store: *mut c_void, out: *mut *mut c_void, err: *mut *mut c_char) -> c_int;
    fn kd_store_free(store: *mut c_void);
    fn kd_store_add(
        store: *mut c_void,
        key: *const c_char,
        delta: i64,
        out: *mut i64,
        err: *mut *mut c_char,
    ) -> c_int;
    fn kd_store_set(
        store: *mut c_void,
        key: *const c_char,
        data: *const u8,
        len: usize,
        err: *mut *mut c_char,
    ) -> c_int;
    fn kd_store_get(
        store: *mut c_void,
        key: *const c_char,
        timeout_ms: i64,
        data: *mut *mut u8,
        len: *mut usize,
        err: *mut *mut c_char,
    ) -> c_int;
    fn kd_pg_create(
        store: *mut c_void,
        rank: c_int,
        size: c_int,
        device_kind: c_int,
        device_arg: *const c_char,
        prefix: *const c_char,
        timeout_ms: i64,
        out: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    #[cfg(feature = "cuda")]
    fn kd_pg_create_nccl(
        store: *mut c_void,
        rank: c_int,
        size: c_int,
        cuda_index: c_int,
        prefix: *const c_char,
        timeout_ms: i64,
        out: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    fn kd_pg_free(pg: *mut c_void);
    fn kd_all_reduce_sum(
        pg: *mut c_void,
        tensors: *const *mut C_tensor,
        n: usize,
        err: *mut *mut c_char,
    ) -> c_int;
    fn kd_all_gather(
        pg: *mut c_void,
        t: *mut C_tensor,
        out: *mut *mut C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    fn kd_broadcast(
        pg: *mut c_void,
        tensors: *const *mut C_tensor,
        n: usize,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn kd_barrier(pg: *mut c_void, err: *mut *mut c_char) -> c_int;
    fn kd_all_gather_autograd(
        pg: *mut c_void,
        t: *mut C_tensor,
        out: *mut *mut C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    fn kd_all_reduce_sum_autograd(
        pg: *mut c_void,
        t: *mut C_tensor,
        out: *mut *mut C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
}

/// The shim's error text (c10d's messages span several lines; callers keep what they need).
pub(crate) type ShimError = String;

fn check(rc: c_int, err: *mut c_char) -> Result<(), ShimError> {
    if rc == 0 {
        return Ok(());
    }
    if err.is_null() {
        return Err("c10d failed without a message".to_string());
    }
    // SAFETY: the shim wrote a NUL-terminated malloc'ed string; we own it now.
    let msg = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { kd_free(err.cast()) };
    Err(msg)
}

fn cstring(s: &str) -> CString {
    // Keys and host names come from us or from the environment, which cannot hold NUL.
    CString::new(s).expect("no NUL in a key or host name")
}

/// A prefixed TCPStore connection (the server too, on the rank that hosts it).
pub(crate) struct Store(NonNull<c_void>);

// SAFETY: c10d's TCPStore serialises its operations with a mutex; the PrefixStore around it
// holds no mutable state.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    pub(crate) fn create(
        host: &str,
        port: u16,
        is_server: bool,
        timeout_ms: i64,
        prefix: &str,
    ) -> Result<Store, ShimError> {
        let (host, prefix) = (cstring(host), cstring(prefix));
        let mut out = std::ptr::null_mut();
        let mut err = std::ptr::null_mut();
        let rc = unsafe {
            kd_store_create(
                host.as_ptr(),
                port,
                is_server as c_int,
                timeout_ms,
                prefix.as_ptr(),
                &mut out,
                &mut err,
            )
        };
        check(rc, err)?;
        Ok(Store(NonNull::new(out).expect("store handle")))
    }

    /// A second connection to the same server, same prefix.
    pub(crate) fn connect_again(&self) -> Result<Store, ShimError> {
        let mut out = std::ptr::null_mut();
        let mut err = std::ptr::null_mut();
        check(
            unsafe { kd_store_clone(self.0.as_ptr(), &mut out, &mut err) },
            err,
        )?;
        Ok(Store(NonNull::new(out).expect("store handle")))
    }

    /// Adds `delta` to an integer key (created at 0) and returns the new value; `delta = 0` reads.
    pub(crate) fn add(&self, key: &str, delta: i64) -> Result<i64, ShimError> {
        let key = cstring(key);
        let (mut out, mut err) = (0i64, std::ptr::null_mut());
        check(
            unsafe { kd_store_add(self.0.as_ptr(), key.as_ptr(), delta, &mut out, &mut err) },
            err,
        )?;
        Ok(out)
    }

    pub(crate) fn set(&self, key: &str, value: &[u8]) -> Result<(), ShimError> {
        let key = cstring(key);
        let mut err = std::ptr::null_mut();
        check(
            unsafe {
                kd_store_set(
                    self.0.as_ptr(),
                    key.as_ptr(),
                    value.as_ptr(),
                    value.len(),
                    &mut err,
                )
            },
            err,
        )
    }

    /// Waits up to `timeout_ms` for the key to exist, then reads it.
    pub(crate) fn get(&self, key: &str, timeout_ms: i64) -> Result<Vec<u8>, ShimError> {
        let key = cstring(key);
        let (mut data, mut len, mut err) = (std::ptr::null_mut(), 0usize, std::ptr::null_mut());
        let rc = unsafe {
            kd_store_get(
                self.0.as_ptr(),
                key.as_ptr(),
                timeout_ms,
                &mut data,
                &mut len,
                &mut err,
            )
        };
        check(rc, err)?;
        // SAFETY: the shim malloc'ed `len` bytes (at least one) at `data`.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
        unsafe { kd_free(data.cast()) };
        Ok(bytes)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        unsafe { kd_store_free(self.0.as_ptr()) }
    }
}

/// How Gloo picks the address this rank listens on.
pub(crate) enum GlooDevice {
    Hostname(String),
    Interface(String),
    Default,
}

/// A `c10d::ProcessGroupGloo` or `c10d::ProcessGroupNCCL` with its rank, size, timeout and
/// device.
pub(crate) struct Group(NonNull<c_void>);

// SAFETY: the handle may move between threads; callers never share it (`ProcessGroup` is not
// Sync), since collectives must be issued in the same order on every rank.
unsafe impl Send for Group {}

fn tensor_out(rc: c_int, err: *mut c_char, out: *mut C_tensor) -> Result<tch::Tensor, ShimError> {
    check(rc, err)?;
    // SAFETY: on success the shim returned `new at::Tensor(...)`, which the Tensor now owns.
    Ok(unsafe { tch::Tensor::from_ptr(out) })
}

impl Group {
    pub(crate) fn gloo(
        store: &Store,
        rank: usize,
        size: usize,
        device: &GlooDevice,
        prefix: &str,
        timeout_ms: i64,
    ) -> Result<Group, ShimError> {
        let (kind, arg) = match device {
            GlooDevice::Hostname(h) => (0, h.as_str()),
            GlooDevice::Interface(i) => (1, i.as_str()),
            GlooDevice::Default => (2, ""),
        };
        let (arg, prefix) = (cstring(arg), cstring(prefix));
        let mut out = std::ptr::null_mut();
        let mut err = std::ptr::null_mut();
        let rc = unsafe {
            kd_pg_create(
                store.0.as_ptr(),
                rank as c_int,
                size as c_int,
                kind,
                arg.as_ptr(),
                prefix.as_ptr(),
                timeout_ms,
                &mut out,
                &mut err,
            )
        };
        check(rc, err)?;
        Ok(Group(NonNull::new(out).expect("process group handle")))
    }

    /// NCCL on `cuda:cuda_index` (the `cuda` build; [`crate::ProcessGroup::init`] refuses NCCL
    /// before reaching here otherwise).
    pub(crate) fn nccl(
        store: &Store,
        rank: usize,
        size: usize,
        cuda_index: usize,
        prefix: &str,
        timeout_ms: i64,
    ) -> Result<Group, ShimError> {
        #[cfg(feature = "cuda")]
        {
            let prefix = cstring(prefix);
            let mut out = std::ptr::null_mut();
            let mut err = std::ptr::null_mut();
            let rc = unsafe {
                kd_pg_create_nccl(
                    store.0.as_ptr(),
                    rank as c_int,
                    size as c_int,
                    cuda_index as c_int,
                    prefix.as_ptr(),
                    timeout_ms,
                    &mut out,
                    &mut err,
                )
            };
            check(rc, err)?;
            Ok(Group(NonNull::new(out).expect("process group handle")))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (store, rank, size, cuda_index, prefix, timeout_ms);
            Err("NCCL is not part of this build".into())
        }
    }

    pub(crate) fn all_reduce_sum(&self, tensors: &mut [tch::Tensor]) -> Result<(), ShimError> {
        let ptrs: Vec<*mut C_tensor> = tensors.iter_mut().map(|t| t.as_mut_ptr()).collect();
        let mut err = std::ptr::null_mut();
        check(
            unsafe { kd_all_reduce_sum(self.0.as_ptr(), ptrs.as_ptr(), ptrs.len(), &mut err) },
            err,
        )
    }

    pub(crate) fn broadcast(
        &self,
        tensors: &mut [tch::Tensor],
        root: usize,
    ) -> Result<(), ShimError> {
        let ptrs: Vec<*mut C_tensor> = tensors.iter_mut().map(|t| t.as_mut_ptr()).collect();
        let mut err = std::ptr::null_mut();
        let rc = unsafe {
            kd_broadcast(
                self.0.as_ptr(),
                ptrs.as_ptr(),
                ptrs.len(),
                root as c_int,
                &mut err,
            )
        };
        check(rc, err)
    }

    pub(crate) fn barrier(&self) -> Result<(), ShimError> {
        let mut err = std::ptr::null_mut();
        check(unsafe { kd_barrier(self.0.as_ptr(), &mut err) }, err)
    }

    pub(crate) fn all_gather(&self, t: &tch::Tensor) -> Result<tch::Tensor, ShimError> {
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        // The shim only reads `t` (a `const`-like use of torch-sys's mutable pointer type).
        let rc =
            unsafe { kd_all_gather(self.0.as_ptr(), t.as_ptr() as *mut _, &mut out, &mut err) };
        tensor_out(rc, err, out)
    }

    pub(crate) fn all_gather_autograd(&self, t: &tch::Tensor) -> Result<tch::Tensor, ShimError> {
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = unsafe {
            kd_all_gather_autograd(self.0.as_ptr(), t.as_ptr() as *mut _, &mut out, &mut err)
        };
        tensor_out(rc, err, out)
    }

    pub(crate) fn all_reduce_sum_autograd(
        &self,
        t: &tch::Tensor,
    ) -> Result<tch::Tensor, ShimError> {
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = unsafe {
            kd_all_reduce_sum_autograd(self.0.as_ptr(), t.as_ptr() as *mut _, &mut out, &mut err)
        };
        tensor_out(rc, err, out)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        unsafe { kd_pg_free(self.0.as_ptr()) }
    }
}
