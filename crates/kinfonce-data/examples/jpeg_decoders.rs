//! The JPEG decoders a streamed folder could use, on one core: the `image` crate (zune-jpeg,
//! full size only) and libjpeg-turbo through the `turbojpeg` crate at full size and at the DCT
//! scales 1/2, 1/4 and 1/8. Decodes every `.jpg` under a folder once per decoder (files read
//! into memory first) and prints images/s, side by side.
//!
//! ```text
//! cargo run --release -p kinfonce-data --example jpeg_decoders -- /tmp/kinfonce-stream-bench/imagenet-like
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

fn jpegs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("a readable folder")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            jpegs(&p, out);
        } else if p.extension().is_some_and(|e| e == "jpg") {
            out.push(p);
        }
    }
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: jpeg_decoders FOLDER");
    let mut files = Vec::new();
    jpegs(Path::new(&dir), &mut files);
    let data: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!data.is_empty(), "no .jpg under {dir}");
    let time = |name: &str, f: &mut dyn FnMut(&[u8]) -> usize| {
        let t0 = Instant::now();
        let mut pixels = 0;
        for d in &data {
            pixels += f(d);
        }
        let s = t0.elapsed().as_secs_f64();
        println!(
            "{name:>22}: {:7.1} images/s ({:.1} Mpixel/s out)",
            data.len() as f64 / s,
            pixels as f64 / s / 1e6
        );
    };
    time("image (zune-jpeg) 1/1", &mut |d| {
        image::load_from_memory(d).unwrap().into_rgb8().len() / 3
    });
    #[cfg(feature = "turbojpeg")]
    for den in [1usize, 2, 4, 8] {
        let mut dec = turbojpeg::Decompressor::new().unwrap();
        let mut buf = Vec::new();
        time(&format!("libjpeg-turbo 1/{den}"), &mut |d| {
            let h = dec.read_header(d).unwrap();
            let (w, hh) = (h.width.div_ceil(den), h.height.div_ceil(den));
            buf.resize(w * hh * 3, 0);
            let img = turbojpeg::Image {
                pixels: &mut buf[..],
                width: w,
                pitch: w * 3,
                height: hh,
                format: turbojpeg::PixelFormat::RGB,
            };
            dec.decompress(d, img).unwrap();
            w * hh
        });
    }
}
