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
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .include(&gloo_dir)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        // libtorch's headers are noisy (unused parameters, deprecated declarations).
        .warnings(false)
        .file("csrc/shim.cpp");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        with_nccl(&mut build, Path::new(&lib));
    }
    build.compile("kinfonce_dist_shim");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}

/// The CUDA headers ProcessGroupNCCL.hpp needs: the wheel's CUDA 13 packages ship most of them
/// (`nvidia/cu13/include`, `nvidia/nccl/include`); `nvidia-cuda-crt` and `nvidia-cuda-cccl`
/// add the rest. Their libraries come with torch (`torch_cuda`, `c10_cuda`, and NCCL through
/// torch's rpath).
fn with_nccl(build: &mut cc::Build, lib: &Path) {
    let nvidia = lib.join("../../nvidia");
    let cu13 = nvidia.join("cu13/include");
    let needed = [
        (
            cu13.join("cuda_runtime.h"),
            "the torch wheel's CUDA runtime",
        ),
        (cu13.join("crt/host_config.h"), "nvidia-cuda-crt==13.0.88"),
        (
            cu13.join("cccl/cuda/std/version"),
            "nvidia-cuda-cccl==13.0.85",
        ),
        (nvidia.join("nccl/include/nccl.h"), "the torch wheel's NCCL"),
    ];
    for (header, package) in &needed {
        if !header.exists() {
            panic!(
                "the cuda feature needs {} from {package} beside torch; scripts/env.sh installs it",
                header.display()
            );
        }
    }
    build
        .define("KD_WITH_NCCL", "1")
        .define("USE_C10D_NCCL", "1")
        .define("USE_CUDA", "1")
        .include(&cu13)
        .include(cu13.join("cccl"))
        .include(nvidia.join("nccl/include"));
    println!("cargo:rustc-link-lib=dylib=torch_cuda");
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
}
