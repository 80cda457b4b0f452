// C ABI over PyTorch's c10d (TCPStore, PrefixStore, ProcessGroupGloo and, when built with
// KD_WITH_NCCL, ProcessGroupNCCL) for kinfonce-dist.
//
// Every function returns 0 on success and 1 on failure; on failure *err receives a malloc'ed,
// NUL-terminated message that the caller frees with kd_free. Every body runs inside KD_TRY /
// KD_CATCH, so no C++ exception crosses into Rust.
//
// Tensors are torch-sys's `tensor` (a `at::Tensor*`); tensors returned through `out`
// are heap-allocated `new at::Tensor(...)`, owned by the caller (tch's Tensor::from_ptr).
//
// Each group works on one device: the CPU for Gloo, the rank's GPU for NCCL. Tensors that live
// elsewhere are copied there for the collective and the result copied back, so the trainer's
// small CPU exchanges (the loss, the stop flag) work on either backend.

// ProcessGroupGloo.hpp is empty unless this is defined; the gloo headers it includes are the
// project's forward declarations (csrc/gloo_forward.h, see build.rs).
#define USE_C10D_GLOO 1

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef KD_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Millis = std::chrono::milliseconds;

struct KdStore {
  c10::intrusive_ptr<c10d::Store> store;
};

struct KdGroup {
  c10::intrusive_ptr<c10d::Backend> pg;
  int rank;
  int size;
  Millis timeout;
  // Where the collectives run (CPU for Gloo, the rank's GPU for NCCL).
  at::Device device;
};

int fail(char** err, const char* msg) {
  if (err != nullptr) {
    *err = strdup(msg);
  }
  return 1;
}

#define KD_TRY try {
#define KD_CATCH                                        \
  }                                                     \
  catch (const c10::Error& e) {                         \
    /* what() would append a C++ backtrace */           \
    return fail(err, e.what_without_backtrace());       \
  }                                                     \
  catch (const std::exception& e) {                     \
    return fail(err, e.what());                         \
  }                                                     \
  catch (...) {                                         \
    return fail(err, "unknown C++ exception in c10d"); \
  }                                                     \
  return 0;

void check_dense(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.defined(), op, ": undefined tensor");
  TORCH_CHECK(t.layout() == at::kStrided, op, ": dense tensors only");
}

// `t` on the group's device, contiguous (the tensor itself when it already is).
at::Tensor on_group(const KdGroup* g, const at::Tensor& t) {
  return t.to(g->device).contiguous();
}

void wait(const KdGroup* g, const c10::intrusive_ptr<c10d::Work>& work) {
  // Gloo's context carries the same timeout; this one only bounds the wait itself.
  work->wait(g->timeout);
}

void all_reduce_in_place(const KdGroup* g, at::Tensor& flat) {
  std::vector<at::Tensor> v{flat};
  wait(g, g->pg->allreduce(v));
}

// Every rank's x concatenated on dim 0, on x's device.
at::Tensor all_gather_dim0(const KdGroup* g, const at::Tensor& x) {
  at::Tensor in = on_group(g, x.dim() == 0 ? x.reshape({1}) : x);
  std::vector<int64_t> sizes = in.sizes().vec();
  sizes[0] *= g->size;
  at::Tensor out = at::empty(sizes, in.options());
  wait(g, g->pg->_allgather_base(out, in));
  return out.to(x.device());
}

// The sum over ranks of x, on x's device (a new tensor).
at::Tensor all_reduce_copy(const KdGroup* g, const at::Tensor& x) {
  at::Tensor buf = x.to(g->device, /*non_blocking=*/false, /*copy=*/true)
                       .contiguous();
  all_reduce_in_place(g, buf);
  return buf.to(x.device());
}

at::IValue group_capsule(const KdGroup* g) {
  // Keeps the process group alive for as long as the autograd graph needs it.
  return at::IValue::make_capsule(
      c10::static_intrusive_pointer_cast<torch::CustomClassHolder>(g->pg));
}

KdGroup group_from(torch::autograd::AutogradContext* ctx) {
  auto holder = ctx->saved_data.at("pg").toCapsule();
  return KdGroup{
      c10::static_intrusive_pointer_cast<c10d::Backend>(holder),
      static_cast<int>(ctx->saved_data.at("rank").toInt()),
      static_cast<int>(ctx->saved_data.at("size").toInt()),
      Millis(ctx->saved_data.at("timeout_ms").toInt()),
      ctx->saved_data.at("device").toDevice()};
}

void save_group(torch::autograd::AutogradContext* ctx, const KdGroup* g) {
  ctx->saved_data["pg"] = group_capsule(g);
  ctx->saved_data["rank"] = static_cast<int64_t>(g->rank);
  ctx->saved_data["size"] = static_cast<int64_t>(g->size);
  ctx->saved_data["timeout_ms"] = static_cast<int64_t>(g->timeout.count());
  ctx->saved_data["device"] = g->device;
}

// forward: every rank's x concatenated on dim 0 in rank order.
// backward: the loss is summed over ranks, so d(total)/d(x_r) is the sum over ranks of their
// upstream gradient for rows of r: allreduce-sum the gradient, keep this rank's slice.
struct AllGatherFn : public torch::autograd::Function<AllGatherFn> {
  static at::Tensor forward(
      torch::autograd::AutogradContext* ctx, const at::Tensor& x, const KdGroup* g) {
    save_group(ctx, g);
    ctx->saved_data["scalar"] = x.dim() == 0;
    ctx->saved_data["rows"] = x.dim() == 0 ? int64_t{1} : x.size(0);
    return all_gather_dim0(g, x);
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    KdGroup g = group_from(ctx);
    int64_t rows = ctx->saved_data.at("rows").toInt();
    // Undefined gradients arrive as zeros (materialize_grads), so every rank joins.
    at::Tensor mine = all_reduce_copy(&g, grads[0]).narrow(0, g.rank * rows, rows);
    if (ctx->saved_data.at("scalar").toBool()) {
      mine = mine.reshape({});
    }
    return {mine, at::Tensor()};
  }
};

// forward: the sum over ranks; backward: the sum over ranks of the upstream gradient.
struct AllReduceSumFn : public torch::autograd::Function<AllReduceSumFn> {
  static at::Tensor forward(
      torch::autograd::AutogradContext* ctx, const at::Tensor& x, const KdGroup* g) {
    save_group(ctx, g);
    return all_reduce_copy(g, x);
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    KdGroup g = group_from(ctx);
    return {all_reduce_copy(&g, grads[0]), at::Tensor()};
  }
};

} // namespace

extern "C" {

void kd_free(void* p) {
  std::free(p);
}

// A TCPStore (server when is_server, else a client that retries connecting until timeout_ms)
// wrapped in a PrefixStore.
int kd_store_create(
    const char* host,
    uint16_t port,
    int is_server,
    int64_t timeout_ms,
    const char* prefix,
    void** out,
    char** err) {
  KD_TRY
  c10d::TCPStoreOptions opts;
  opts.port = port;
  opts.isServer = is_server != 0;
  // We count joined ranks ourselves (with a message naming how many came), so the server
  // does not wait for workers.
  opts.numWorkers = std::nullopt;
  opts.waitWorkers = false;
  opts.timeout = Millis(timeout_ms);
  auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
  auto store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
  *out = new KdStore{store};
  KD_CATCH
}

// A second connection to the same store (for the heartbeat thread, so it never queues behind
// a blocking wait on the main connection).
int kd_store_clone(void* store, void** out, char** err) {
  KD_TRY
  auto* s = static_cast<KdStore*>(store);
  *out = new KdStore{s->store->clone()};
  KD_CATCH
}

void kd_store_free(void* store) {
  try {
    delete static_cast<KdStore*>(store);
  } catch (...) {
    // A destructor that fails on a dead connection has nothing left to release.
  }
}

int kd_store_add(void* store, const char* key, int64_t delta, int64_t* out, char** err) {
  KD_TRY
  *out = static_cast<KdStore*>(store)->store->add(std::string(key), delta);
  KD_CATCH
}

int kd_store_set(void* store, const char* key, const uint8_t* data, size_t len, char** err) {
  KD_TRY
  std::vector<uint8_t> value(data, data + len);
  static_cast<KdStore*>(store)->store->set(std::string(key), value);
  KD_CATCH
}

// Waits up to timeout_ms for the key, then returns a malloc'ed copy of its bytes.
int kd_store_get(
    void* store,
    const char* key,
    int64_t timeout_ms,
    uint8_t** data,
    size_t* len,
    char** err) {
  KD_TRY
  auto& s = static_cast<KdStore*>(store)->store;
  std::string k(key);
  s->wait({k}, Millis(timeout_ms));
  std::vector<uint8_t> value = s->get(k);
  *len = value.size();
  *data = static_cast<uint8_t*>(std::malloc(value.empty() ? 1 : value.size()));
  TORCH_CHECK(*data != nullptr, "out of memory");
  if (!value.empty()) {
    std::memcpy(*data, value.data(), value.size());
  }
  KD_CATCH
}

// device_kind: 0 = bind to the address `device_arg`, 1 = to the interface `device_arg`,
// 2 = c10d's default (this host's name, else loopback).
int kd_pg_create(
    void* store,
    int rank,
    int size,
    int device_kind,
    const char* device_arg,
    const char* prefix,
    int64_t timeout_ms,
    void** out,
    char** err) {
  KD_TRY
  using c10d::ProcessGroupGloo;
  auto opts = ProcessGroupGloo::Options::create(Millis(timeout_ms));
  switch (device_kind) {
    case 0:
      opts->devices.push_back(ProcessGroupGloo::createDeviceForHostname(device_arg));
      break;
    case 1:
      opts->devices.push_back(ProcessGroupGloo::createDeviceForInterface(device_arg));
      break;
    default:
      opts->devices.push_back(ProcessGroupGloo::createDefaultDevice());
      break;
  }
  // Gloo's own keys live under their own prefix, apart from ours (hb/, joined, bytes/).
  auto gloo_store = c10::make_intrusive<c10d::PrefixStore>(
      std::string(prefix), static_cast<KdStore*>(store)->store);
  auto pg = c10::make_intrusive<ProcessGroupGloo>(gloo_store, rank, size, opts);
  *out = new KdGroup{pg, rank, size, Millis(timeout_ms), at::Device(at::kCPU)};
  KD_CATCH
}

#ifdef KD_WITH_NCCL
// NCCL on the GPU `cuda_index`: that device becomes this thread's current one and the group's
// bound device (barriers and NCCL's communicator use it).
int kd_pg_create_nccl(
    void* store,
    int rank,
    int size,
    int cuda_index,
    const char* prefix,
    int64_t timeout_ms,
    void** out,
    char** err) {
  KD_TRY
  using c10d::ProcessGroupNCCL;
  auto opts = ProcessGroupNCCL::Options::create();
  opts->timeout = Millis(timeout_ms);
  auto nccl_store = c10::make_intrusive<c10d::PrefixStore>(
      std::string(prefix), static_cast<KdStore*>(store)->store);
  // Constructed first: without a GPU it fails with c10d's own one-line reason.
  auto pg = c10::make_intrusive<ProcessGroupNCCL>(nccl_store, rank, size, opts);
  at::Device device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda_index));
  c10::cuda::set_device(device.index());
  pg->setBoundDeviceId(device);
  *out = new KdGroup{pg, rank, size, Millis(timeout_ms), device};
  KD_CATCH
}
#endif

void kd_pg_free(void* pg) {
  try {
    delete static_cast<KdGroup*>(pg);
  } catch (...) {
  }
}

// Sum over ranks, in place. Tensors are grouped by dtype (in order of first appearance) and
// each group goes through one allreduce of one flat buffer, so the result equals per-tensor
// sums and any strides work (the result is copied back into the caller's views).
int kd_all_reduce_sum(void* pg, at::Tensor** tensors, size_t n, char** err) {
  KD_TRY
  auto* g = static_cast<KdGroup*>(pg);
  at::NoGradGuard no_grad; // gradients and parameters are updated in place
  std::vector<at::ScalarType> dtypes;
  for (size_t i = 0; i < n; ++i) {
    check_dense(*tensors[i], "all_reduce_sum");
    auto dt = tensors[i]->scalar_type();
    if (std::find(dtypes.begin(), dtypes.end(), dt) == dtypes.end()) {
      dtypes.push_back(dt);
    }
  }
  for (auto dt : dtypes) {
    std::vector<at::Tensor> group;
    std::vector<at::Tensor> flat_parts;
    for (size_t i = 0; i < n; ++i) {
      if (tensors[i]->scalar_type() == dt) {
        group.push_back(*tensors[i]);
        flat_parts.push_back(tensors[i]->reshape({-1}));
      }
    }
    at::Tensor flat = at::cat(flat_parts).to(g->device);
    all_reduce_in_place(g, flat);
    int64_t offset = 0;
    for (auto& t : group) {
      int64_t numel = t.numel();
      t.copy_(flat.narrow(0, offset, numel).view(t.sizes()));
      offset += numel;
    }
  }
  KD_CATCH
}

int kd_all_gather(void* pg, at::Tensor* t, at::Tensor** out, char** err) {
  KD_TRY
  auto* g = static_cast<KdGroup*>(pg);
  check_dense(*t, "all_gather");
  at::NoGradGuard no_grad;
  *out = new at::Tensor(all_gather_dim0(g, *t));
  KD_CATCH
}

// In place from `root`; one Gloo broadcast per tensor (broadcasts are cheap next to training
// and this keeps every dtype and stride working).
int kd_broadcast(void* pg, at::Tensor** tensors, size_t n, int root, char** err) {
  KD_TRY
  auto* g = static_cast<KdGroup*>(pg);
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < n; ++i) {
    check_dense(*tensors[i], "broadcast");
    at::Tensor buf = on_group(g, *tensors[i]);
    std::vector<at::Tensor> v{buf};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    wait(g, g->pg->broadcast(v, opts));
    if (!buf.is_same(*tensors[i])) {
      tensors[i]->copy_(buf);
    }
  }
  KD_CATCH
}

int kd_barrier(void* pg, char** err) {
  KD_TRY
  auto* g = static_cast<KdGroup*>(pg);
  wait(g, g->pg->barrier());
  KD_CATCH
}

int kd_all_gather_autograd(void* pg, at::Tensor* t, at::Tensor** out, char** err) {
  KD_TRY
  auto* g = static_cast<KdGroup*>(pg);
  check_dense(*t, "all_gather_autograd");
  *out = new at::Tensor(AllGatherFn::apply(*t, static_cast<const KdGroup*>(g)));
  KD_CATCH
}

int kd_all_reduce_sum_autograd(void* pg, at::Tensor* t, at::Tensor** out, char** err) {
  KD_TRY
  auto* g = static_cast<KdGroup*>(pg);
  check_dense(*t, "all_reduce_sum_autograd");
  *out = new at::Tensor(AllReduceSumFn::apply(*t, static_cast<const KdGroup*>(g)));
  KD_CATCH
}

} // extern "C"
