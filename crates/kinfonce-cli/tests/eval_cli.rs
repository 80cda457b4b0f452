//! `kinfonce eval`, `embed` and `compare` end to end on generated fixtures in the exact
//! layouts (an ImageFolder of 64x64 JPEGs with train/ and test/, the TinyImageNet tree) and
//! on the real CIFAR-10 archive when it is at hand; the bad inputs get clear errors.
#![cfg(feature = "torch")]

mod common;
use common::{cifar, WithDeadline};
use kinfonce_train::compare::EVAL_FILES;
use kinfonce_train::tch::Tensor;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn kinfonce(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .args(args)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env_remove("KINFONCE_DATA")
        .output_within();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, stdout, stderr) = kinfonce(args);
    assert!(success, "kinfonce {args:?} failed:\n{stderr}\n{stdout}");
    stdout
}

fn fails(args: &[&str]) -> String {
    let (success, stdout, stderr) = kinfonce(args);
    assert!(!success, "kinfonce {args:?} should fail:\n{stdout}");
    stderr
}

fn last_json(stdout: &str) -> Value {
    let line = stdout.lines().last().expect("output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}

/// A 64x64 JPEG whose colour and stripes depend on the class.
fn write_jpeg(path: &Path, class: usize, i: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        let stripe = ((x as usize / (4 + 2 * class)) + i).is_multiple_of(2);
        let base = [
            (60 * class) as u8,
            200 - (50 * class) as u8,
            (17 * i % 255) as u8,
        ];
        let v = if stripe { 40 } else { 0 };
        image::Rgb([
            base[0].saturating_add(v),
            base[1],
            base[2].wrapping_add((y % 7) as u8),
        ])
    });
    img.save(path).unwrap();
}

/// root/train/<class>/*.jpg and root/test/<class>/*.jpg, 64x64.
fn image_folder(root: &Path, classes: usize, train: usize, test: usize) {
    for c in 0..classes {
        for i in 0..train {
            write_jpeg(&root.join(format!("train/class{c}/{i}.jpg")), c, i);
        }
        for i in 0..test {
            write_jpeg(&root.join(format!("test/class{c}/{i}.jpg")), c, i + 100);
        }
    }
}

/// The TinyImageNet-200 layout: wnids.txt, words.txt, train/<wnid>/images/*.JPEG,
/// val/images/*.JPEG + val/val_annotations.txt.
fn tiny_imagenet(root: &Path, train: usize, val: usize) {
    let wnids = ["n01443537", "n01629819"];
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("wnids.txt"), wnids.join("\n") + "\n").unwrap();
    std::fs::write(
        root.join("words.txt"),
        "n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n",
    )
    .unwrap();
    let mut ann = String::new();
    for (c, w) in wnids.iter().enumerate() {
        for i in 0..train {
            write_jpeg(&root.join(format!("train/{w}/images/{w}_{i}.JPEG")), c, i);
        }
        std::fs::write(root.join(format!("train/{w}/{w}_boxes.txt")), "").unwrap();
        for i in 0..val {
            let name = format!("val_{}.JPEG", c * val + i);
            write_jpeg(&root.join("val/images").join(&name), c, 50 + i);
            ann.push_str(&format!("{name}\t{w}\t0\t0\t63\t63\n"));
        }
    }
    std::fs::write(root.join("val/val_annotations.txt"), ann).unwrap();
}

/// A tiny pretraining run (width `width`, 2 steps) on `data`.
fn pretrain(data: &Path, out: &Path, width: &str) {
    ok(&[
        "pretrain",
        "--data",
        data.to_str().unwrap(),
        "--width",
        width,
        "--hidden-dim",
        "32",
        "--out-dim",
        "16",
        "--batch",
        "8",
        "--max-steps",
        "2",
        "--threads",
        "1",
        "--knn-every",
        "0",
        "--precision",
        "f32",
        "--out",
        out.to_str().unwrap(),
    ]);
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn check_record(v: &Value, protocol: &str, n_train: u64, n_test: u64) {
    assert_eq!(v["protocol"], protocol, "{v}");
    let top1 = v["top1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&top1), "{v}");
    assert!(v["top5"].as_f64().unwrap() >= top1);
    assert_eq!(v["n_train"], n_train, "{v}");
    assert_eq!(v["n_test"], n_test, "{v}");
    let confusion_total: u64 = v["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()))
        .sum();
    assert_eq!(confusion_total, n_test);
}

#[test]
fn eval_and_embed_on_image_folder_and_tiny_imagenet_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("folder");
    // 3 classes x 10 train images: the seeded 10% validation split keeps 27 in train.
    image_folder(&folder, 3, 10, 4);
    let run = tmp.path().join("run");
    pretrain(&folder, &run, "8");

    let v = last_json(&ok(&[
        "eval",
        "knn",
        "--run",
        s(&run),
        "--threads",
        "1",
        "--json",
    ]));
    check_record(&v, "knn", 27, 12);
    // The default k = 200 is above the 27 bank images: every one votes, and the record says so.
    assert_eq!(
        (&v["knn"]["k"], &v["k_asked"]),
        (&27.into(), &200.into()),
        "{v}"
    );
    assert_eq!(v["init"], false);
    // The precision `auto` chose is recorded (what `kinfonce info` says it picks).
    let info = last_json(&ok(&["info", "--json"]));
    assert_eq!(v["precision"], info["auto"]["cpu"]["precision"], "{v}");
    assert_eq!(
        v["channels_last"], info["auto"]["cpu"]["channels_last"],
        "{v}"
    );
    let v = last_json(&ok(&[
        "eval",
        "knn",
        "--run",
        s(&run),
        "--init",
        "--k",
        "5",
        "--threads",
        "1",
        "--json",
    ]));
    check_record(&v, "knn", 27, 12);
    assert_eq!(v["init"], true);
    assert_eq!(
        (&v["knn"]["k"], &v["k_asked"]),
        (&5.into(), &5.into()),
        "{v}"
    );

    let probe = tmp.path().join("probe.safetensors");
    let v = last_json(&ok(&[
        "eval",
        "linear",
        "--run",
        s(&run),
        "--fast",
        "--epochs",
        "5",
        "--threads",
        "1",
        "--save-probe",
        s(&probe),
        "--json",
    ]));
    check_record(&v, "linear-fast", 27, 12);
    assert_eq!(v["probe"]["lr"], 0.3);
    let svg = std::fs::read_to_string(run.join("confusion-linear-fast.svg")).unwrap();
    assert!(svg.contains("class2"), "confusion plot names the classes");
    // The official protocol (simclr_finetune.py), 2 epochs: its own 20% validation split
    // (3 x 10 images -> 24 train, 6 val) with a validation accuracy, the test split reported.
    let v = last_json(&ok(&[
        "eval",
        "linear",
        "--run",
        s(&run),
        "--epochs",
        "2",
        "--threads",
        "1",
        "--json",
    ]));
    check_record(&v, "linear-official", 24, 12);
    let description = v["description"].as_str().unwrap();
    assert!(
        description.contains("color jitter 0.8/0.8/0.8/0.2")
            && description.contains("centre-cropped"),
        "{description}"
    );
    let val = v["val_top1"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&val) && (val * 6.0).fract().abs() < 1e-9,
        "{v}"
    );
    // crop-flip: the run's 10% validation split held out, no validation accuracy.
    let v = last_json(&ok(&[
        "eval",
        "linear",
        "--run",
        s(&run),
        "--protocol",
        "crop-flip",
        "--epochs",
        "2",
        "--threads",
        "1",
        "--json",
    ]));
    check_record(&v, "linear-crop-flip", 27, 12);
    assert!(v.get("val_top1").is_none(), "{v}");
    assert!(v["description"]
        .as_str()
        .unwrap()
        .contains("random resized crop"));
    // moco-official as the official trainer runs it: every training image (30), whole batches
    // only (its 512 refused for 30 images), the test top-1 of every epoch, the last as top1 and
    // the best labelled.
    let err = fails(&[
        "eval",
        "linear",
        "--run",
        s(&run),
        "--protocol",
        "moco-official",
        "--epochs",
        "1",
    ]);
    assert!(
        err.contains("--batch 512") && err.contains("30 training images"),
        "{err}"
    );
    let v = last_json(&ok(&[
        "eval",
        "linear",
        "--run",
        s(&run),
        "--protocol",
        "moco-official",
        "--batch",
        "8",
        "--epochs",
        "3",
        "--threads",
        "1",
        "--json",
    ]));
    check_record(&v, "linear-moco-official", 30, 12);
    let per_epoch: Vec<f64> = v["epoch_test_top1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_f64().unwrap())
        .collect();
    assert_eq!(per_epoch.len(), 3, "{v}");
    assert_eq!(
        v["top1"].as_f64(),
        per_epoch.last().copied(),
        "top1 is the last epoch's"
    );
    let best = per_epoch.iter().cloned().fold(f64::MIN, f64::max);
    let best_epoch = v["best_epoch"].as_u64().unwrap() as usize;
    assert_eq!(v["best_test_top1"].as_f64(), Some(best), "{v}");
    assert_eq!(per_epoch[best_epoch - 1], best, "{v}");
    assert!(v["description"]
        .as_str()
        .unwrap()
        .contains("batch norm in training mode"));
    // moco-official-eval: the same classifier (lr 30, no momentum or decay, batch 512) unless
    // flags say otherwise, on padded crops, eval-mode features, the run's split held out.
    let v = last_json(&ok(&[
        "eval",
        "linear",
        "--run",
        s(&run),
        "--protocol",
        "moco-official-eval",
        "--epochs",
        "2",
        "--momentum",
        "0.5",
        "--threads",
        "1",
        "--json",
    ]));
    check_record(&v, "linear-moco-official-eval", 27, 12);
    assert!(v.get("epoch_test_top1").is_none(), "{v}");
    let classifier = &v["probe"];
    assert_eq!(
        (
            &classifier["lr"],
            &classifier["momentum"],
            &classifier["weight_decay"],
            &classifier["batch"]
        ),
        (&30.0.into(), &0.5.into(), &0.0.into(), &512.into()),
        "{v}"
    );
    assert!(v["description"]
        .as_str()
        .unwrap()
        .contains("RandomCrop with padding 4"));
    let err = fails(&[
        "eval",
        "linear",
        "--run",
        s(&run),
        "--protocol",
        "official-ish",
    ]);
    assert!(
        err.contains("official-ish") && err.contains("crop-flip"),
        "{err}"
    );

    // TinyImageNet layout, evaluated with the same encoder.
    let tiny = tmp.path().join("tiny-imagenet-200");
    tiny_imagenet(&tiny, 6, 3);
    let v = last_json(&ok(&[
        "eval",
        "knn",
        "--run",
        s(&run),
        "--data",
        s(&tiny),
        "--threads",
        "1",
        "--json",
    ]));
    // 2 wnids x 6 train images: the 10% validation split holds out 1 per class.
    check_record(&v, "knn", 10, 6);
    assert_eq!(v["class_names"][0], "goldfish");

    // Features export, both formats.
    let st = tmp.path().join("emb.safetensors");
    ok(&[
        "embed",
        "--run",
        s(&run),
        "--split",
        "test",
        "--out",
        s(&st),
        "--threads",
        "1",
    ]);
    let t = Tensor::read_safetensors(&st).unwrap();
    let get = |n: &str| t.iter().find(|(k, _)| k == n).unwrap().1.shallow_clone();
    assert_eq!(get("features").size(), vec![12, 64]);
    assert_eq!(get("labels").size(), vec![12]);
    assert_eq!(get("labels").kind(), kinfonce_train::tch::Kind::Int64);
    let npy = tmp.path().join("emb.npy");
    let v = last_json(&ok(&[
        "embed",
        "--run",
        s(&run),
        "--split",
        "train",
        "--out",
        s(&npy),
        "--threads",
        "1",
        "--json",
    ]));
    assert_eq!(v["n"], 27);
    let f = Tensor::read_npy(&npy).unwrap();
    assert_eq!(f.size(), vec![27, 64]);
    let l = Tensor::read_npy(tmp.path().join("emb.labels.npy")).unwrap();
    assert_eq!(l.size(), vec![27]);
    // The embedding is the encoder's: the same features as k-NN would see (deterministic).
    let again = tmp.path().join("again.npy");
    ok(&[
        "embed",
        "--run",
        s(&run),
        "--split",
        "train",
        "--out",
        s(&again),
        "--threads",
        "1",
    ]);
    assert!(Tensor::read_npy(&again)
        .unwrap()
        .allclose(&f, 1e-6, 1e-6, false));
    let err = fails(&[
        "embed",
        "--run",
        s(&run),
        "--out",
        s(&tmp.path().join("x.csv")),
    ]);
    assert!(err.contains(".safetensors or .npy"), "{err}");
    // An output that cannot be written fails before any feature is computed (a path under a
    // regular file: not even root can create it).
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let started = std::time::Instant::now();
    let err = fails(&[
        "embed",
        "--run",
        s(&run),
        "--out",
        s(&blocker.join("emb.npy")),
    ]);
    assert!(err.contains("--out") && err.contains("a-file"), "{err}");
    assert!(!err.contains("features:"), "computed features first: {err}");
    assert!(started.elapsed().as_secs() < 30);
    // A damaged checkpoint is refused by file name, before libtorch reads it.
    let ck = kinfonce_train::checkpoint::latest(&run.join("checkpoints"))
        .unwrap()
        .unwrap();
    let copy = tmp.path().join("damaged-ck");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&ck).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    let head = copy.join("encoder.safetensors");
    let mut bytes = std::fs::read(&head).unwrap();
    let at = bytes.len() - 1;
    bytes[at] ^= 1;
    std::fs::write(&head, bytes).unwrap();
    let err = fails(&[
        "embed",
        "--run",
        s(&run),
        "--checkpoint",
        s(&copy),
        "--out",
        s(&tmp.path().join("d.npy")),
    ]);
    assert!(
        err.contains("encoder.safetensors") && err.contains("damaged"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Bad input 1: a run folder without a checkpoint.
    let bare = tmp.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(run.join("config.toml"), bare.join("config.toml")).unwrap();
    let err = fails(&["eval", "knn", "--run", s(&bare), "--threads", "1"]);
    assert!(
        err.contains("no complete checkpoint") && err.contains("bare"),
        "{err}"
    );
    let err = fails(&["eval", "knn", "--run", s(tmp.path()), "--threads", "1"]);
    assert!(err.contains("not a run folder"), "{err}");

    // Bad input 2: a checkpoint of another architecture (width 4) with this run's (width 8)
    // configuration.
    let narrow = tmp.path().join("narrow");
    pretrain(&folder, &narrow, "4");
    let ck = std::fs::read_dir(narrow.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("step-")
        })
        .unwrap();
    let err = fails(&[
        "eval",
        "knn",
        "--run",
        s(&run),
        "--checkpoint",
        s(&ck),
        "--threads",
        "1",
    ]);
    assert!(
        err.contains("narrow")
            && err.contains("shape [4]")
            && err.contains("another architecture")
            && err.contains("width 8"),
        "{err}"
    );

    // Bad input 3: a saved probe of 3 classes on a data set of 2 classes.
    let err = fails(&[
        "eval",
        "linear",
        "--run",
        s(&run),
        "--data",
        s(&tiny),
        "--probe",
        s(&probe),
        "--threads",
        "1",
    ]);
    assert!(err.contains("3 classes") && err.contains("has 2"), "{err}");
    // ... and on the 3-class set it evaluates.
    let v = last_json(&ok(&[
        "eval",
        "linear",
        "--run",
        s(&run),
        "--probe",
        s(&probe),
        "--threads",
        "1",
        "--json",
    ]));
    assert_eq!(v["protocol"], "linear-saved");

    // Bad input 4: a folder without a test split.
    let flat = tmp.path().join("flat");
    for c in 0..2 {
        // 10 per class: the 10% validation split holds out one per class.
        for i in 0..10 {
            write_jpeg(&flat.join(format!("c{c}/{i}.jpg")), c, i);
        }
    }
    let err = fails(&[
        "eval",
        "knn",
        "--run",
        s(&run),
        "--data",
        s(&flat),
        "--threads",
        "1",
    ]);
    assert!(
        err.contains("no test split") && err.contains("--test-split val"),
        "{err}"
    );
    let v = last_json(&ok(&[
        "eval",
        "knn",
        "--run",
        s(&run),
        "--data",
        s(&flat),
        "--test-split",
        "val",
        "--threads",
        "1",
        "--json",
    ]));
    assert_eq!(v["test_split"], "val");
}

#[test]
fn eval_on_cifar10_archive() {
    let Some(data) = cifar() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    ok(&[
        "pretrain",
        "--data",
        s(&data),
        "--width",
        "4",
        "--hidden-dim",
        "32",
        "--out-dim",
        "16",
        "--batch",
        "16",
        "--max-steps",
        "1",
        "--subset",
        "64",
        "--threads",
        "1",
        "--knn-every",
        "0",
        "--out",
        s(&run),
    ]);
    let v = last_json(&ok(&[
        "eval",
        "knn",
        "--run",
        s(&run),
        "--subset-train",
        "500",
        "--threads",
        "1",
        "--json",
    ]));
    // The official test batch: 10,000 images; train capped at 500.
    check_record(&v, "knn", 500, 10_000);
    assert_eq!(v["class_names"][0], "airplane");

    // A MoCo run's momentum (key) encoder evaluates like any encoder; a SimCLR run has none.
    let err = fails(&["eval", "knn", "--run", s(&run), "--momentum-encoder"]);
    assert!(
        err.contains("head.safetensors") && err.contains("not a MoCo run"),
        "{err}"
    );
    // The official MoCo recipe, scaled down (queue, splits, widths, batch, steps).
    let moco = tmp.path().join("moco");
    ok(&[
        "pretrain",
        "--data",
        s(&data),
        "--run-preset",
        "moco-sum",
        "--queue-size",
        "32",
        "--bn-splits",
        "2",
        "--width",
        "4",
        "--hidden-dim",
        "32",
        "--out-dim",
        "16",
        "--batch",
        "16",
        "--max-steps",
        "2",
        "--subset",
        "64",
        "--threads",
        "1",
        "--knn-every",
        "0",
        "--out",
        s(&moco),
    ]);
    // Its config.toml holds the official schedule, network and views (`moco/moco.py`).
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(moco.join("config.toml")).unwrap()).unwrap();
    let c = &config["config"];
    for (key, want) in [
        ("schedule", "cosine-per-epoch"),
        ("stem", "cifar"),
        ("init", "torch-default"),
        ("augment", "moco-v2"),
        ("method", "moco"),
    ] {
        assert_eq!(c[key].as_str(), Some(want), "{key}: {c}");
    }
    assert_eq!(c["stem_relu"].as_bool(), Some(false), "{c}");
    assert_eq!(c["epochs"].as_integer(), Some(200), "{c}");
    let (success, stdout, stderr) = kinfonce(&[
        "eval",
        "knn",
        "--run",
        s(&moco),
        "--momentum-encoder",
        "--subset-train",
        "500",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(success, "{stderr}");
    assert!(stderr.contains("momentum encoder from"), "{stderr}");
    check_record(&last_json(&stdout), "knn", 500, 10_000);
}

#[test]
fn compare_trains_evaluates_adopts_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("folder");
    image_folder(&folder, 2, 10, 3);
    let study = tmp.path().join("study");
    let common = [
        "--precision",
        "f32",
        "--epochs",
        "2",
        "--width",
        "4",
        "--batch",
        "6",
        "--threads",
        "1",
        "--data",
        s(&folder),
    ];
    // A run started by hand with `kinfonce pretrain` and the same settings is adopted.
    let adopted = study.join("runs/gaussian-seed0");
    let mut args = vec![
        "pretrain",
        "--preset",
        "gaussian",
        "--seed",
        "0",
        "--out",
        s(&adopted),
    ];
    args.extend(common);
    ok(&args);
    let mut args = vec![
        "compare",
        "--kernels",
        "gaussian,laplacian",
        "--seeds",
        "0,1",
        "--probe-epochs",
        "5",
        "--out",
        s(&study),
        "--json",
    ];
    args.extend(common);
    let (success, stdout, stderr) = kinfonce(&args);
    assert!(success, "{stderr}");
    assert!(
        stderr.contains("gaussian seed 0] pretraining finished (step 6), skipped"),
        "{stderr}"
    );
    let v = last_json(&stdout);
    assert_eq!(v["runs"], 4);
    let knn = &v["kernels"]["laplacian"]["knn_top1"];
    assert_eq!(knn["n"], 2);
    assert!((0.0..=1.0).contains(&knn["mean"].as_f64().unwrap()));
    for run in [
        "gaussian-seed0",
        "gaussian-seed1",
        "laplacian-seed0",
        "laplacian-seed1",
    ] {
        for f in [
            "eval-knn.json",
            "eval-linear.json",
            "eval-knn-init.json",
            "eval-linear-init.json",
        ] {
            let text = std::fs::read_to_string(study.join("runs").join(run).join(f)).unwrap();
            let r: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(r["n_test"], 6, "{run}/{f}");
        }
    }
    // The baseline at initialisation does not depend on the loss: same seed, same numbers.
    let init = |run: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(study.join("runs").join(run).join("eval-linear-init.json"))
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        init("gaussian-seed1")["top1"],
        init("laplacian-seed1")["top1"]
    );
    assert!(study.join("runs/laplacian-seed0/pca-test.json").is_file());
    // The paired differences are those of the eval records, seed by seed.
    let top1 = |run: &str, f: &str| -> f64 {
        let text = std::fs::read_to_string(study.join("runs").join(run).join(f)).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["top1"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(v["baseline"], "gaussian");
    let gap = &v["paired"]["laplacian"]["linear_top1"];
    assert_eq!(gap["seeds"], serde_json::json!([0, 1]));
    for (i, seed) in ["seed0", "seed1"].into_iter().enumerate() {
        let want = top1(&format!("laplacian-{seed}"), "eval-linear.json")
            - top1(&format!("gaussian-{seed}"), "eval-linear.json");
        assert!((gap["differences"][i].as_f64().unwrap() - want).abs() < 1e-12);
    }
    assert!(gap["stats"]["lo"].as_f64().unwrap() <= gap["stats"]["hi"].as_f64().unwrap());
    let report = std::fs::read_to_string(study.join("report.md")).unwrap();
    for needle in [
        "| gaussian | 2 |",
        "| laplacian | 2 |",
        "## Paired differences against gaussian",
        "- laplacian − gaussian, k-NN top-1: ",
        "Student t over seeds",
        "![PCA laplacian seed 0](pca-laplacian.svg)",
        "![k-NN by seed](knn-by-seed.svg)",
        "`runs/laplacian-seed1`",
    ] {
        assert!(report.contains(needle), "report lacks {needle}:\n{report}");
    }
    for f in [
        "loss.svg",
        "knn-monitor.svg",
        "knn-by-seed.svg",
        "linear-by-seed.svg",
        "pca-gaussian.svg",
        "pca-laplacian.svg",
    ] {
        assert!(study.join(f).is_file(), "{f}");
    }

    // Again: nothing to train, nothing to evaluate.
    let (success, _, stderr) = kinfonce(&args);
    assert!(success, "{stderr}");
    assert_eq!(stderr.matches("skipped").count(), 4, "{stderr}");
    assert!(!stderr.contains("features"), "{stderr}");

    // A finished run kept without weights (its checkpoints/ not committed) is neither trained
    // nor evaluated again, and stays in the report.
    let weightless = study.join("runs/laplacian-seed1");
    std::fs::remove_dir_all(weightless.join("checkpoints")).unwrap();
    let (success, _, stderr) = kinfonce(&args);
    assert!(success, "{stderr}");
    assert!(
        stderr.contains("laplacian seed 1] pretraining finished (step 6, kept without weights)"),
        "{stderr}"
    );
    assert!(!stderr.contains("features"), "{stderr}");
    let report = std::fs::read_to_string(study.join("report.md")).unwrap();
    assert!(report.contains("| laplacian | 2 |"), "{report}");

    // A second horizon: a study folder of weightless copies, one k-NN record moved by 0.1, so
    // the gap's change is 0.1 at seed 0 and 0 at seed 1.
    let horizon = tmp.path().join("horizon-b");
    for run in [
        "gaussian-seed0",
        "gaussian-seed1",
        "laplacian-seed0",
        "laplacian-seed1",
    ] {
        let (from, to) = (study.join("runs").join(run), horizon.join("runs").join(run));
        std::fs::create_dir_all(&to).unwrap();
        for f in ["config.toml", "metrics.jsonl"]
            .into_iter()
            .chain(EVAL_FILES)
        {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
    }
    let moved = horizon.join("runs/laplacian-seed0/eval-knn.json");
    let mut r: Value = serde_json::from_str(&std::fs::read_to_string(&moved).unwrap()).unwrap();
    r["top1"] = (r["top1"].as_f64().unwrap() + 0.1).into();
    std::fs::write(&moved, r.to_string()).unwrap();
    let mut with_b = args.clone();
    with_b.extend(["--report-only", "--horizon-b", s(&horizon)]);
    let (success, stdout, stderr) = kinfonce(&with_b);
    assert!(success, "{stderr}");
    let change = &last_json(&stdout)["horizon_b"]["gap_change"]["laplacian"];
    let knn: Vec<f64> = serde_json::from_value(change["knn_top1"]["differences"].clone()).unwrap();
    assert!(
        (knn[0] - 0.1).abs() < 1e-12 && knn[1].abs() < 1e-12,
        "{knn:?}"
    );
    let report = std::fs::read_to_string(study.join("report.md")).unwrap();
    assert!(
        report.contains("## Second horizon") && report.contains("change of the gap"),
        "{report}"
    );

    // Without its eval records a weightless run can be neither evaluated nor trained over.
    std::fs::remove_file(weightless.join("eval-linear.json")).unwrap();
    let err = fails(&args);
    assert!(
        err.contains("laplacian-seed1") && err.contains("eval-linear.json"),
        "{err}"
    );
    assert!(weightless.join("config.toml").is_file(), "left in place");
    let mut bad = args.clone();
    bad.extend(["--baseline", "simple-sum"]);
    assert!(fails(&bad).contains("--baseline simple-sum is not among --kernels"));

    // A run folder made with other settings is refused by name.
    let mut other = vec![
        "compare",
        "--kernels",
        "gaussian",
        "--seeds",
        "0",
        "--out",
        s(&study),
    ];
    other.extend([
        "--epochs",
        "3",
        "--width",
        "4",
        "--batch",
        "6",
        "--threads",
        "1",
        "--data",
        s(&folder),
    ]);
    let err = fails(&other);
    assert!(
        err.contains("gaussian-seed0") && err.contains("epochs: 2 -> 3"),
        "{err}"
    );
}

#[test]
fn linear_help_lists_the_protocols_and_names_the_official_one() {
    // Whitespace collapsed: clap wraps the text to the terminal's width.
    let help = ok(&["eval", "linear", "--help"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for needle in [
        "official (default; what the official code's simclr_finetune.py runs)",
        "crop-flip:",
        "moco-official (the official MoCo code's classifier, lightly's, as its trainer runs it)",
        "moco-official-eval:",
        "--fast",
        "Resize(35)",
    ] {
        assert!(help.contains(needle), "`{needle}` missing from:\n{help}");
    }
}
