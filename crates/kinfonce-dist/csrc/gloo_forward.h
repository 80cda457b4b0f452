// Project-owned stand-ins for the gloo headers that ProcessGroupGloo.hpp includes.
//
// The torch wheel has gloo compiled into libtorch_cpu but ships none of gloo's headers.
// build.rs writes one-line headers named gloo/context.h, gloo/rendezvous/store.h, ... that
// include this file, so ProcessGroupGloo.hpp parses without Debian's libgloo-dev.
//
// The shim only holds gloo objects through pointers (shared_ptr<Device>, shared_ptr<Context>),
// so only the names, and the members that inline code in ProcessGroupGloo.hpp mentions, are
// declared here. Nothing is defined: an accidental use that needs gloo code (a vtable, a
// typeinfo, a call) fails to link instead of silently using a layout that may not match.
// Checked with `nm -C` on the shim's object: no gloo vtable, typeinfo or function is emitted
// or referenced (see README.md).
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace gloo {

class Context {
 public:
  // Named by the inline ProcessGroupGloo::setTimeout; the shim never calls it.
  void setTimeout(std::chrono::milliseconds timeout);
};

namespace transport {
class Device;
class UnboundBuffer;
} // namespace transport

namespace rendezvous {
// Base of ProcessGroupGloo::GlooStore (declared inline in the header, never constructed by the
// shim); the pure virtuals are the ones GlooStore overrides without GLOO_STORE_HAS_STORE_V2.
class Store {
 public:
  virtual ~Store();
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(
      const std::vector<std::string>& keys,
      const std::chrono::milliseconds& timeout) = 0;
};
} // namespace rendezvous

} // namespace gloo
