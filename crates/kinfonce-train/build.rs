//! Every binary of this crate (tests, benches, examples) gets an rpath to the
//! wheel's `torch/lib`, so nothing needs LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=KINFONCE_LIBTORCH_LIB={lib}");
        if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
            // rustc links --as-needed, which would drop torch_cuda: nothing references it directly.
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
