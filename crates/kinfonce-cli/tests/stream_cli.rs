//! `kinfonce pretrain --data DIR` on a folder of JPEGs and PNGs of mixed sizes: the folder is
//! streamed (views decoded from the files, the k-NN monitor on streamed evaluation views), and a
//! truncated file ends the run with exit code 1 and one message naming it, never a panic.
#![cfg(feature = "torch")]

use std::path::Path;
use std::process::Command;

/// Twelve noisy images in two classes, sides 61 to 203 px, one PNG and one gray JPEG per class.
fn folder(root: &Path) {
    for (c, class) in ["ant", "bee"].iter().enumerate() {
        for i in 0..6u32 {
            let (w, h) = (61 + 29 * i + 7 * c as u32, 203 - 23 * i);
            let v = |x: u32, y: u32, k: u32| {
                ((x * 3 + y * 5 + k * 70 + c as u32 * 90) % 256) as u8 ^ ((x * y + i) % 23) as u8
            };
            let path = root
                .join(class)
                .join(format!("{i}.{}", if i == 1 { "png" } else { "jpg" }));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            if i == 2 {
                image::GrayImage::from_fn(w, h, |x, y| image::Luma([v(x, y, 0)]))
                    .save(&path)
                    .unwrap();
            } else {
                image::RgbImage::from_fn(w, h, |x, y| {
                    image::Rgb([v(x, y, 0), v(x, y, 1), v(x, y, 2)])
                })
                .save(&path)
                .unwrap();
            }
        }
    }
}

fn pretrain(data: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .arg("pretrain")
        .arg("--data")
        .arg(data)
        .args([
            "--view-size",
            "32",
            "--width",
            "4",
            "--hidden-dim",
            "16",
            "--out-dim",
            "8",
            "--batch",
            "4",
            "--max-steps",
            "3",
            "--threads",
            "1",
            "--precision",
            "f32",
            "--val-fraction",
            "0.2",
            "--knn-every",
            "1",
            "--knn-bank",
            "8",
            "--knn-queries",
            "4",
            "--knn-k",
            "3",
            "--checkpoint-minutes",
            "0",
            "--json",
        ])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn a_folder_of_mixed_sizes_pretrains_streamed_and_a_truncated_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    folder(&data);
    let out = pretrain(&data, &dir.path().join("run"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.contains("\"steps\":3") && summary.contains("\"knn_top1\":0."),
        "{summary}"
    );
    let config = std::fs::read_to_string(dir.path().join("run/config.toml")).unwrap();
    assert!(
        config.contains("view_size = 32") && config.contains("stream = \"auto\""),
        "{config}"
    );
    assert!(data.join(kinfonce_data::INDEX_FILE).is_file());

    let victim = data.join("bee/4.jpg");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let out = pretrain(&data, &dir.path().join("run2"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bee/4.jpg") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
