//! `kinfonce info`: what this machine offers and what kinfonce will do with it.

use crate::default_data::local_data;
use kinfonce_data::fetch;
use kinfonce_train::hardware::{self, CpuFeatures, Target};
use kinfonce_train::tch;
use serde_json::{json, Value};

/// Show the CPU and its instruction sets, threads, libtorch, CUDA devices, the precision and
/// layout `--precision auto` picks on each device, and where data is looked for.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Print one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// What `auto` picks for networks of width 8 and more; narrower ones may differ (`narrow`).
fn choice_json(target: &Target) -> Value {
    let wide = hardware::ONEDNN_AVX2_MIN_SHORTCUT_CHANNELS;
    let c = hardware::choose(target, wide);
    let narrow = hardware::choose(target, 1);
    json!({
        "precision": c.precision,
        "channels_last": c.channels_last,
        "reason": c.reason,
        "narrow": (narrow != c).then(|| {
            json!({"below_width": wide, "channels_last": narrow.channels_last, "reason": narrow.reason})
        }),
    })
}

/// Everything `info` reports, as one JSON object.
fn gather() -> anyhow::Result<Value> {
    let cpu = CpuFeatures::detect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cuda: Vec<Value> = hardware::cuda_devices()
        .iter()
        .map(|d| {
            json!({
                "index": d.index,
                "name": d.name,
                "capability": d.capability.map(|(a, b)| format!("{a}.{b}")),
                "auto": choice_json(&Target::Cuda { bf16: d.bf16() }),
            })
        })
        .collect();
    let data = local_data()?;
    Ok(json!({
        "kinfonce": env!("CARGO_PKG_VERSION"),
        "cpu": {
            "model": cpu.model,
            "avx2": cpu.avx2,
            "avx512f": cpu.avx512f,
            "avx512_bf16": cpu.avx512_bf16,
            "amx_bf16": cpu.amx_bf16,
            "native_bf16": cpu.native_bf16(),
        },
        "cores": cores,
        "threads": {
            // What `--threads 0` (the default) gives libtorch and the augmentation pool.
            "libtorch": cores,
            "rayon": cores,
            "omp_wait_policy": std::env::var("OMP_WAIT_POLICY").unwrap_or_else(|_| "PASSIVE (set by the network commands)".into()),
        },
        "libtorch": {
            "version": kinfonce_train::LIBTORCH_VERSION,
            "tch": kinfonce_train::TCH_VERSION,
            "lib": kinfonce_train::LIBTORCH_LIB,
            "cudnn": tch::Cuda::cudnn_is_available(),
        },
        "cuda": cuda,
        "auto": {"cpu": choice_json(&Target::Cpu(cpu.clone())), "cuda": cuda.iter().map(|d| d["auto"].clone()).collect::<Vec<_>>()},
        "data": {
            "kinfonce_data": std::env::var("KINFONCE_DATA").ok(),
            "cache": fetch::default_cache_dir(),
            "default": data.as_ref().map(|p| p.display().to_string()),
            "offline": std::env::var_os("KINFONCE_OFFLINE").is_some(),
        },
    }))
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let v = gather()?;
    if args.json {
        println!("{v}");
        return Ok(());
    }
    let yes = |b: &Value| {
        if b.as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    };
    let c = &v["cpu"];
    println!("kinfonce {}", v["kinfonce"].as_str().unwrap_or(""));
    println!("CPU      {}", c["model"].as_str().unwrap_or("unknown"));
    println!(
        "         AVX2 {}, AVX-512 {}, avx512_bf16 {}, AMX-BF16 {}: bf16 {}",
        yes(&c["avx2"]),
        yes(&c["avx512f"]),
        yes(&c["avx512_bf16"]),
        yes(&c["amx_bf16"]),
        if c["native_bf16"].as_bool() == Some(true) {
            "native"
        } else {
            "emulated (about 12x slower than f32)"
        }
    );
    let t = &v["threads"];
    println!(
        "threads  {} cores: libtorch {}, augmentation pool {}, OMP_WAIT_POLICY {}",
        v["cores"],
        t["libtorch"],
        t["rayon"],
        t["omp_wait_policy"].as_str().unwrap_or("")
    );
    let l = &v["libtorch"];
    println!(
        "libtorch {} (tch {}) from {}",
        l["version"].as_str().unwrap_or(""),
        l["tch"].as_str().unwrap_or(""),
        l["lib"].as_str().unwrap_or("the system's library path")
    );
    let auto = |a: &Value| {
        format!(
            "{}{} ({})",
            a["precision"].as_str().unwrap_or(""),
            if a["channels_last"].as_bool() == Some(true) {
                " + channels-last"
            } else {
                ""
            },
            a["reason"].as_str().unwrap_or("")
        )
    };
    println!("auto     cpu: {}", auto(&v["auto"]["cpu"]));
    if let Some(narrow) = v["auto"]["cpu"]["narrow"].as_object() {
        println!(
            "         cpu, width below {}: {}",
            narrow["below_width"],
            auto(&v["auto"]["cpu"]["narrow"])
        );
    }
    match v["cuda"].as_array() {
        Some(devices) if !devices.is_empty() => {
            for d in devices {
                println!(
                    "CUDA     cuda:{} {} (compute capability {}): {}",
                    d["index"],
                    d["name"].as_str().unwrap_or("unknown"),
                    d["capability"].as_str().unwrap_or("unknown"),
                    auto(&d["auto"])
                );
            }
        }
        _ => println!("CUDA     no device visible to libtorch"),
    }
    let d = &v["data"];
    println!(
        "data     default {}; cache {}{}",
        d["default"].as_str().unwrap_or(
            "none on this machine (pretrain downloads CIFAR-10, or offline uses a synthetic set)"
        ),
        d["cache"].as_str().unwrap_or(""),
        d["kinfonce_data"]
            .as_str()
            .map(|e| format!("; KINFONCE_DATA={e}"))
            .unwrap_or_default()
    );
    Ok(())
}
