//! Compiles `csrc/shim.cpp` (the C ABI over c10d) against the wheel's headers and gives every
//! binary of this crate an rpath to the wheel's `torch/lib`, as kinfonce-train's build.rs does.
use std::path::{Path, PathBuf};

/// The gloo headers ProcessGroupGloo.hpp includes; each becomes a one-line header that includes
/// our forward declarations (the wheel ships no gloo headers).
const GLOO_HEADERS: &[&str] = &[
    "gloo/algorithm.h",
    "gloo/common/error.h",
    "gloo/context.h",
    "gloo/rendezvous/store.h",
    "gloo/transport/device.h",
];

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/gloo_forward.h");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // torch-sys declares `links = "tch"` and exports its lib dir; the headers sit beside it.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect(
        "DEP_TCH_LIBTORCH_LIB unset: torch-sys did not find libtorch (source scripts/env.sh)",
    );
    let include = Path::new(&lib).join("../include");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let forward = manifest.join("csrc/gloo_forward.h");
    let gloo_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("gloo_include");
    for header in GLOO_HEADERS {
        let path = gloo_dir.join(header);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("#include \"{}\"\n", forward.display())).unwrap();
    }
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .include(&gloo_dir)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        // libtorch's headers are noisy (unused parameters, deprecated declarations).
        .warnings(false)
        .file("csrc/shim.cpp")
        .compile("kinfonce_dist_shim");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}
