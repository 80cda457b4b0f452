//! What the machine can do, and the precision and memory layout `auto` picks from it.
//!
//! The rule, written once (the benchmark `bench/pretrain_throughput.sh` prints it beside the
//! measured speed of every choice):
//!
//! | device | precision | layout |
//! |---|---|---|
//! | CPU with native bf16 (`avx512_bf16` or AMX-BF16) | bf16 | channels-last |
//! | CPU without it (AVX2 only, AVX-512 without bf16) | f32 | channels-last |
//! | CUDA, compute capability 8.0 or newer | bf16 | channels-last |
//! | CUDA, older | f32 | contiguous (NCHW) |
//!
//! Without native bf16 libtorch emulates it, and a ResNet step is about 12x slower than in f32;
//! with it, bf16 + channels-last is 1.6-1.8x f32. Channels-last measured faster than NCHW in both
//! precisions on both kinds of CPU (oneDNN's convolutions are NHWC-native), and on GPUs it is
//! the layout tensor cores read, so it follows the precision there. The rule is fixed, never a
//! timing at start-up: the same machine always makes the same choice.
//!
//! One exception overrides the table: where oneDNN runs its AVX2 code (a CPU without AVX-512, or
//! libtorch held to AVX2 by `ONEDNN_MAX_CPU_ISA`), the backward of a 1x1 stride-2 convolution
//! with fewer than 8 input channels on a channels-last input corrupts the heap or hangs
//! (oneDNN 3.10.2 in libtorch 2.11.0; `docs/onednn-avx2.md` has the reproducer). A network with
//! such a convolution (a ResNet narrower than 8 channels) runs contiguous there: `auto` picks
//! it, an explicit channels-last is refused, and a resumed channels-last run switches.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Compute precision of the network (master weights, loss and optimiser stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Chosen from the hardware by [`choose`].
    #[default]
    Auto,
    F32,
    Bf16,
}

impl Precision {
    pub const NAMES: [&'static str; 3] = ["auto", "f32", "bf16"];

    pub fn parse(name: &str) -> Option<Precision> {
        match name {
            "auto" => Some(Precision::Auto),
            "f32" => Some(Precision::F32),
            "bf16" => Some(Precision::Bf16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Precision::parse(s).ok_or_else(|| {
            format!(
                "unknown precision `{s}`: expected one of {}",
                Precision::NAMES.join(", ")
            )
        })
    }
}

/// The x86 instruction sets that decide libtorch's speed, as the kernel reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuFeatures {
    /// Model name (`/proc/cpuinfo`), or the architecture when unknown.
    pub model: String,
    pub avx2: bool,
    pub avx512f: bool,
    /// `avx512_bf16`: native bf16 dot products (Cooper Lake, Sapphire Rapids, Zen 4 and later).
    pub avx512_bf16: bool,
    /// `amx_bf16`: bf16 tile matrix multiply (Sapphire Rapids and later).
    pub amx_bf16: bool,
}

impl CpuFeatures {
    /// The CPU this process runs on. Flags come from `/proc/cpuinfo`, which lists only what
    /// the kernel enabled (AMX needs its support), with `is_x86_feature_detected!` as fallback.
    /// `ONEDNN_MAX_CPU_ISA`, when set, caps what libtorch's convolutions use, so it caps the
    /// native bf16 seen here too.
    pub fn detect() -> CpuFeatures {
        let mut cpu = match std::fs::read_to_string("/proc/cpuinfo") {
            Ok(text) => Self::from_cpuinfo(&text),
            Err(_) => Self::from_cpuid(),
        };
        if let Ok(isa) = std::env::var("ONEDNN_MAX_CPU_ISA") {
            cpu.cap_to_onednn_isa(&isa);
        }
        cpu
    }

    /// Clears what oneDNN's ISA cap (`AVX2`, `AVX512_CORE`, `AVX512_CORE_BF16`,
    /// `AVX512_CORE_AMX`, `ALL`, ...) forbids.
    pub fn cap_to_onednn_isa(&mut self, isa: &str) {
        let isa = isa.to_ascii_uppercase();
        if isa.is_empty() || isa == "ALL" || isa == "DEFAULT" {
            return;
        }
        let avx512 = isa.contains("AVX512") || isa.contains("AVX10") || isa.contains("AMX");
        self.amx_bf16 &= isa.contains("AMX");
        self.avx512_bf16 &= isa.contains("BF16") || isa.contains("AMX");
        self.avx512f &= avx512;
        self.avx2 &= avx512 || isa.contains("AVX2");
    }

    /// oneDNN takes its AVX2 kernels: AVX2 without AVX-512 (or held there).
    pub fn onednn_runs_avx2(&self) -> bool {
        self.avx2 && !self.avx512f
    }

    /// Parses the first processor of a `/proc/cpuinfo` text.
    pub fn from_cpuinfo(text: &str) -> CpuFeatures {
        let field = |name: &str| {
            text.lines()
                .find(|l| l.split(':').next().map(str::trim) == Some(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let flags = field("flags").unwrap_or_default();
        let has = |f: &str| flags.split_whitespace().any(|x| x == f);
        CpuFeatures {
            model: field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            avx2: has("avx2"),
            avx512f: has("avx512f"),
            avx512_bf16: has("avx512_bf16"),
            amx_bf16: has("amx_bf16"),
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn from_cpuid() -> CpuFeatures {
        CpuFeatures {
            model: std::env::consts::ARCH.to_string(),
            avx2: std::arch::is_x86_feature_detected!("avx2"),
            avx512f: std::arch::is_x86_feature_detected!("avx512f"),
            avx512_bf16: std::arch::is_x86_feature_detected!("avx512bf16"),
            amx_bf16: false,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn from_cpuid() -> CpuFeatures {
        CpuFeatures {
            model: std::env::consts::ARCH.to_string(),
            ..Default::default()
        }
    }

    /// bf16 arithmetic in hardware; without it libtorch emulates bf16 in f32 code.
    pub fn native_bf16(&self) -> bool {
        self.avx512_bf16 || self.amx_bf16
    }

    /// The instruction sets present, for messages (`AVX2, AVX-512, avx512_bf16`).
    pub fn summary(&self) -> String {
        let sets: Vec<&str> = [
            (self.avx2, "AVX2"),
            (self.avx512f, "AVX-512"),
            (self.avx512_bf16, "avx512_bf16"),
            (self.amx_bf16, "AMX-BF16"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        if sets.is_empty() {
            "no AVX2".into()
        } else {
            sets.join(", ")
        }
    }
}

/// What the network will run on, as far as the choice is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Cpu(CpuFeatures),
    /// A CUDA device: does it compute bf16 natively (compute capability 8.0 or newer)?
    Cuda {
        bf16: bool,
    },
}

/// A resolved precision and layout, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeChoice {
    pub precision: Precision,
    pub channels_last: bool,
    pub reason: String,
}

/// Below this many input channels, a 1x1 stride-2 convolution's backward on a channels-last
/// input breaks in oneDNN's AVX2 code (the module docs).
pub const ONEDNN_AVX2_MIN_SHORTCUT_CHANNELS: i64 = 8;

/// Why channels-last cannot run on `target` for a network whose narrowest 1x1 stride-2
/// convolution has `shortcut_channels` inputs, or `None` where it can.
pub fn channels_last_defect(target: &Target, shortcut_channels: i64) -> Option<String> {
    match target {
        Target::Cpu(cpu)
            if cpu.onednn_runs_avx2() && shortcut_channels < ONEDNN_AVX2_MIN_SHORTCUT_CHANNELS =>
        {
            Some(format!(
                "oneDNN 3.10.2's AVX2 code ({}) corrupts the heap in the backward of a 1x1 \
                 stride-2 convolution with fewer than {ONEDNN_AVX2_MIN_SHORTCUT_CHANNELS} input \
                 channels in channels-last, and this network's first stage-2 shortcut has \
                 {shortcut_channels}",
                cpu.summary()
            ))
        }
        _ => None,
    }
}

/// Where the layout setting comes from, which decides what happens where channels-last cannot
/// run ([`channels_last_defect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutAsk {
    /// Unset: chosen with the precision, contiguous where channels-last cannot run.
    Auto,
    /// Asked for this run: channels-last where it cannot run is refused.
    Explicit(bool),
    /// Recorded by a run being resumed: the layout does not change what the run computes, so
    /// channels-last where it cannot run switches to contiguous, with a note.
    Stored(bool),
}

impl LayoutAsk {
    /// A configuration's `channels_last`, resumed or not.
    pub fn of(channels_last: Option<bool>, resumed: bool) -> LayoutAsk {
        match channels_last {
            None => LayoutAsk::Auto,
            Some(on) if resumed => LayoutAsk::Stored(on),
            Some(on) => LayoutAsk::Explicit(on),
        }
    }
}

/// The precision and layout `auto` picks for `target` (the table in the module docs), for a
/// network whose narrowest 1x1 stride-2 convolution has `shortcut_channels` inputs.
pub fn choose(target: &Target, shortcut_channels: i64) -> ComputeChoice {
    let mut choice = choose_by_table(target);
    if let (true, Some(defect)) = (
        choice.channels_last,
        channels_last_defect(target, shortcut_channels),
    ) {
        choice.channels_last = false;
        choice.reason = format!("{}; contiguous layout, since {defect}", choice.reason);
    }
    choice
}

fn choose_by_table(target: &Target) -> ComputeChoice {
    match target {
        Target::Cpu(cpu) if cpu.native_bf16() => ComputeChoice {
            precision: Precision::Bf16,
            channels_last: true,
            reason: format!("this CPU computes bf16 natively ({})", cpu.summary()),
        },
        Target::Cpu(cpu) => ComputeChoice {
            precision: Precision::F32,
            channels_last: true,
            reason: format!(
                "this CPU has no native bf16 ({}), so libtorch would emulate it about 12x slower",
                cpu.summary()
            ),
        },
        Target::Cuda { bf16: true } => ComputeChoice {
            precision: Precision::Bf16,
            channels_last: true,
            reason: "this GPU computes bf16 natively (compute capability 8.0 or newer)".into(),
        },
        Target::Cuda { bf16: false } => ComputeChoice {
            precision: Precision::F32,
            channels_last: false,
            reason: "this GPU has no native bf16 (compute capability below 8.0)".into(),
        },
    }
}

/// `precision` and the layout as asked, with `auto` (and an unset layout) resolved for
/// `target` and a network whose narrowest 1x1 stride-2 convolution has `shortcut_channels`
/// inputs. Explicit settings win, except a channels-last that cannot run there: asked for, it is
/// an error (the message names the defect); stored by a resumed run, it switches to contiguous.
/// The reason says what was chosen and why.
pub fn resolve(
    precision: Precision,
    layout: LayoutAsk,
    target: &Target,
    shortcut_channels: i64,
) -> Result<ComputeChoice, String> {
    let auto = choose(target, shortcut_channels);
    let defect = channels_last_defect(target, shortcut_channels);
    let (channels_last, switched) = match (layout, defect) {
        (LayoutAsk::Auto, _) => (auto.channels_last, None),
        (LayoutAsk::Explicit(true), Some(defect)) => {
            return Err(format!(
                "--channels-last refused: {defect}; drop it (the contiguous layout is chosen \
                 here) or widen the network (--width 8, or 2 for resnet50)"
            ))
        }
        (LayoutAsk::Stored(true), Some(defect)) => (
            false,
            Some(format!(
                "the run was stored in channels-last; switched to the contiguous layout (same \
                 trajectory), since {defect}"
            )),
        ),
        (LayoutAsk::Explicit(on) | LayoutAsk::Stored(on), _) => (on, None),
    };
    let chosen: Vec<&str> = [
        (precision == Precision::Auto, "precision"),
        (layout == LayoutAsk::Auto, "layout"),
    ]
    .iter()
    .filter(|(a, _)| *a)
    .map(|(_, n)| *n)
    .collect();
    let reason = if chosen.is_empty() {
        "set explicitly".into()
    } else {
        format!("auto chose the {}: {}", chosen.join(" and "), auto.reason)
    };
    Ok(ComputeChoice {
        precision: if precision == Precision::Auto {
            auto.precision
        } else {
            precision
        },
        channels_last,
        reason: match switched {
            Some(note) => format!("{reason}; {note}"),
            None => reason,
        },
    })
}

/// A CUDA device as libtorch sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CudaDevice {
    pub index: usize,
    /// The device's name, when the CUDA driver reports it.
    pub name: Option<String>,
    /// Compute capability (major, minor), when the CUDA runtime reports it.
    pub capability: Option<(i32, i32)>,
}

impl CudaDevice {
    /// Native bf16: compute capability 8.0 (Ampere) or newer.
    pub fn bf16(&self) -> bool {
        self.capability.is_some_and(|(major, _)| major >= 8)
    }
}

/// The CUDA devices libtorch can use (none in a CPU-only process).
pub fn cuda_devices() -> Vec<CudaDevice> {
    if !tch::Cuda::is_available() {
        return Vec::new();
    }
    (0..tch::Cuda::device_count().max(0) as usize)
        .map(|index| CudaDevice {
            index,
            name: cuda_ffi::name(index),
            capability: cuda_ffi::capability(index),
        })
        .collect()
}

/// The target of a libtorch device.
pub fn target_of(device: tch::Device) -> Target {
    match device {
        tch::Device::Cuda(index) => Target::Cuda {
            bf16: cuda_devices().get(index).is_some_and(CudaDevice::bf16),
        },
        _ => Target::Cpu(CpuFeatures::detect()),
    }
}

/// The CUDA runtime and driver are loaded with libtorch's CUDA library when a GPU is in use;
/// their stable C entry points are looked up in the process rather than linked, so CPU-only
/// builds and machines need nothing.
mod cuda_ffi {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn symbol(name: &std::ffi::CStr) -> Option<*mut std::ffi::c_void> {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the loaded
        // objects' symbol tables.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn symbol(_: &std::ffi::CStr) -> Option<*mut std::ffi::c_void> {
        None
    }

    /// `cudaDeviceGetAttribute` with cudaDevAttrComputeCapabilityMajor (75) and Minor (76).
    pub fn capability(index: usize) -> Option<(i32, i32)> {
        type GetAttribute = unsafe extern "C" fn(*mut i32, i32, i32) -> i32;
        let f = symbol(c"cudaDeviceGetAttribute")?;
        // SAFETY: the symbol is the CUDA runtime's `cudaError_t cudaDeviceGetAttribute(int*,
        // cudaDeviceAttr, int)`, whose signature is stable across CUDA versions.
        let f: GetAttribute = unsafe { std::mem::transmute(f) };
        let (mut major, mut minor) = (0i32, 0i32);
        // SAFETY: both out-pointers are valid for one i32 write.
        let ok =
            unsafe { f(&mut major, 75, index as i32) == 0 && f(&mut minor, 76, index as i32) == 0 };
        ok.then_some((major, minor))
    }

    /// `cuDeviceGetName` of the driver API (device ordinal = index under the default mask).
    pub fn name(index: usize) -> Option<String> {
        type GetName = unsafe extern "C" fn(*mut std::ffi::c_char, i32, i32) -> i32;
        let f = symbol(c"cuDeviceGetName")?;
        // SAFETY: the symbol is the driver's `CUresult cuDeviceGetName(char*, int, CUdevice)`.
        let f: GetName = unsafe { std::mem::transmute(f) };
        let mut buf = [0 as std::ffi::c_char; 256];
        // SAFETY: the buffer holds 256 bytes and the driver writes at most `len` with the NUL.
        let ok = unsafe { f(buf.as_mut_ptr(), buf.len() as i32, index as i32) } == 0;
        // SAFETY: on success the driver wrote a NUL-terminated string into `buf`.
        ok.then(|| {
            unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(avx2: bool, avx512f: bool, avx512_bf16: bool, amx_bf16: bool) -> Target {
        Target::Cpu(CpuFeatures {
            model: "test".into(),
            avx2,
            avx512f,
            avx512_bf16,
            amx_bf16,
        })
    }

    #[test]
    fn auto_picks_bf16_only_where_the_hardware_computes_it_and_channels_last_on_every_cpu() {
        let cases = [
            (cpu(true, false, false, false), Precision::F32, true), // AVX2 only (EPYC Zen 2/3)
            (cpu(true, true, false, false), Precision::F32, true), // AVX-512 without bf16 (Skylake)
            (cpu(true, true, true, false), Precision::Bf16, true), // avx512_bf16 (Zen 4, Cooper Lake)
            (cpu(true, true, true, true), Precision::Bf16, true),  // AMX (Sapphire Rapids)
            (cpu(false, false, false, true), Precision::Bf16, true), // AMX alone still counts
            (Target::Cuda { bf16: true }, Precision::Bf16, true),
            (Target::Cuda { bf16: false }, Precision::F32, false),
        ];
        for (target, precision, channels_last) in cases {
            let c = choose(&target, 16);
            assert_eq!(
                (c.precision, c.channels_last),
                (precision, channels_last),
                "{target:?}: {}",
                c.reason
            );
        }
    }

    #[test]
    fn explicit_settings_win_and_the_reason_names_what_auto_chose() {
        let avx2 = cpu(true, false, false, false);
        let c = resolve(Precision::Bf16, LayoutAsk::Explicit(false), &avx2, 16).unwrap();
        assert_eq!((c.precision, c.channels_last), (Precision::Bf16, false));
        assert_eq!(c.reason, "set explicitly");
        let c = resolve(Precision::Auto, LayoutAsk::Explicit(false), &avx2, 16).unwrap();
        assert_eq!((c.precision, c.channels_last), (Precision::F32, false));
        assert!(
            c.reason.starts_with("auto chose the precision:"),
            "{}",
            c.reason
        );
        let c = resolve(Precision::F32, LayoutAsk::Auto, &avx2, 16).unwrap();
        assert_eq!((c.precision, c.channels_last), (Precision::F32, true));
        assert!(c.reason.contains("the layout"), "{}", c.reason);
    }

    /// The oneDNN AVX2 rule over the capability table and the widths around its edge: where
    /// oneDNN runs AVX2 code and the narrowest shortcut has fewer than 8 inputs, `auto` is
    /// contiguous, an explicit channels-last is refused naming the defect, and a resumed one
    /// switches; everywhere else nothing changes.
    #[test]
    fn channels_last_is_never_chosen_where_onednn_avx2_breaks_the_narrow_shortcut() {
        let Target::Cpu(avx512) = cpu(true, true, false, false) else {
            unreachable!()
        };
        let mut held = avx512.clone();
        held.cap_to_onednn_isa("AVX2");
        let kinds = [
            ("AVX2 only", cpu(true, false, false, false), true),
            ("AVX-512 held to AVX2", Target::Cpu(held), true),
            ("AVX-512", Target::Cpu(avx512), false),
            ("avx512_bf16", cpu(true, true, true, false), false),
            ("AMX", cpu(true, true, true, true), false),
            ("CUDA", Target::Cuda { bf16: true }, false),
        ];
        for (name, target, avx2_code) in &kinds {
            for width in [2, 4, 6, 8, 16] {
                let broken = *avx2_code && width < 8;
                let by_table = choose_by_table(target).channels_last;
                let auto = choose(target, width);
                assert_eq!(
                    auto.channels_last,
                    by_table && !broken,
                    "{name}, width {width}"
                );
                assert_eq!(
                    auto.reason.contains("oneDNN"),
                    broken,
                    "{name}, width {width}: {}",
                    auto.reason
                );
                let explicit = resolve(Precision::F32, LayoutAsk::Explicit(true), target, width);
                match (broken, explicit) {
                    (true, Err(e)) => assert!(
                        e.starts_with("--channels-last refused")
                            && e.contains("oneDNN 3.10.2")
                            && e.contains(&format!("has {width}")),
                        "{e}"
                    ),
                    (false, Ok(c)) => assert!(c.channels_last, "{name}, width {width}"),
                    (_, other) => panic!("{name}, width {width}: {other:?}"),
                }
                let stored =
                    resolve(Precision::F32, LayoutAsk::Stored(true), target, width).unwrap();
                assert_eq!(stored.channels_last, !broken, "{name}, width {width}");
                assert_eq!(
                    stored.reason.contains("switched to the contiguous layout"),
                    broken,
                    "{}",
                    stored.reason
                );
                for ask in [LayoutAsk::Explicit(false), LayoutAsk::Stored(false)] {
                    let c = resolve(Precision::F32, ask, target, width).unwrap();
                    assert!(!c.channels_last, "{name}, width {width}, {ask:?}");
                }
            }
        }
    }

    #[test]
    fn a_resumed_layout_is_stored_and_a_configured_one_explicit() {
        assert_eq!(LayoutAsk::of(None, true), LayoutAsk::Auto);
        assert_eq!(LayoutAsk::of(Some(true), true), LayoutAsk::Stored(true));
        assert_eq!(LayoutAsk::of(Some(true), false), LayoutAsk::Explicit(true));
    }

    #[test]
    fn cpuinfo_flags_are_read_from_the_first_processor() {
        let text =
            "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx avx2 fma\n\n\
                    processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx512f\n";
        let f = CpuFeatures::from_cpuinfo(text);
        assert_eq!(f.model, "AMD EPYC 7B13");
        assert!(f.avx2 && !f.avx512f && !f.native_bf16());
        let xeon = "model name : Intel(R) Xeon(R) Platinum 8481C\nflags : avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n";
        let f = CpuFeatures::from_cpuinfo(xeon);
        assert!(f.avx512f && f.avx512_bf16 && f.amx_bf16);
        assert_eq!(f.summary(), "AVX2, AVX-512, avx512_bf16, AMX-BF16");
        assert_eq!(choose(&Target::Cpu(f), 16).precision, Precision::Bf16);
    }

    #[test]
    fn a_onednn_isa_cap_below_bf16_makes_auto_pick_f32() {
        let Target::Cpu(mut xeon) = cpu(true, true, true, true) else {
            unreachable!()
        };
        let mut capped = xeon.clone();
        capped.cap_to_onednn_isa("avx2");
        assert!(!capped.native_bf16() && !capped.avx512f && capped.avx2);
        assert_eq!(
            choose(&Target::Cpu(capped.clone()), 16).precision,
            Precision::F32
        );
        assert!(capped.onednn_runs_avx2());
        let mut sse = capped.clone();
        sse.cap_to_onednn_isa("SSE41");
        assert!(!sse.avx2 && !sse.onednn_runs_avx2());
        xeon.cap_to_onednn_isa("AVX512_CORE_BF16");
        assert!(xeon.avx512_bf16 && !xeon.amx_bf16 && !xeon.onednn_runs_avx2());
        assert_eq!(choose(&Target::Cpu(xeon), 16).precision, Precision::Bf16);
    }

    #[test]
    fn precision_names_round_trip_and_unknown_names_are_refused() {
        for name in Precision::NAMES {
            assert_eq!(Precision::parse(name).unwrap().name(), name);
        }
        let err = "fp16".parse::<Precision>().unwrap_err();
        assert!(
            err.contains("fp16") && err.contains("auto, f32, bf16"),
            "{err}"
        );
    }
}
