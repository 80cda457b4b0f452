//! Augmentation throughput of the two-view loader (views per second).
//!
//! ```text
//! cargo run --release -p kinfonce-data --example augment_throughput -- [DATA] [THREADS] [BATCHES]
//! ```
//! DATA defaults to `../shared/data/cifar10/lossless_test_first1000.bin` (1,000 real CIFAR
//! images); with no data it uses a procedurally generated 32x32 set. THREADS defaults to 2,
//! BATCHES (of 128 pairs) to 40. Prints one JSON line.

use std::sync::Arc;
use std::time::Instant;

use kinfonce_data::{
    AugmentConfig, ContrastiveLoader, DataConfig, DataFormat, Dataset, Dtype, Layout, LoaderConfig,
    Split,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .cloned()
        .unwrap_or_else(|| "../shared/data/cifar10/lossless_test_first1000.bin".into());
    let threads: usize = args.get(1).map_or(Ok(2), |s| s.parse())?;
    let batches: usize = args.get(2).map_or(Ok(40), |s| s.parse())?;
    let (data, format) = if std::path::Path::new(&path).exists() {
        let cfg = DataConfig::new(&path);
        let format = cfg.resolved_format()?;
        (cfg.load(Split::Test)?, format)
    } else {
        eprintln!("{path} is absent: using generated 32x32 images");
        let pixels = (0..1000 * 3072)
            .map(|i: usize| (i.wrapping_mul(2654435761) >> 7) as u8)
            .collect();
        (
            Dataset::new(pixels, vec![0; 1000], 32, 32, 3, vec![])?,
            DataFormat::Cifar10,
        )
    };
    let size = data.height();
    let data = Arc::new(data);
    for (layout, dtype) in [(Layout::Nchw, Dtype::F32), (Layout::Nhwc, Dtype::Bf16)] {
        let cfg = LoaderConfig {
            batch_size: 128,
            threads,
            layout,
            dtype,
            ..Default::default()
        };
        let loader =
            ContrastiveLoader::new(Arc::clone(&data), AugmentConfig::preset(format, size), cfg)?;
        let per_epoch = loader.batches_per_epoch();
        // Warm up, then time.
        loader.batch(0, 0)?;
        let t0 = Instant::now();
        let mut views = 0;
        let mut epoch = 0;
        while views < batches * 256 {
            for b in loader.epoch(epoch).take(per_epoch) {
                views += b?.rows();
                if views >= batches * 256 {
                    break;
                }
            }
            epoch += 1;
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{{\"format\":\"{format}\",\"size\":{size},\"threads\":{threads},\"layout\":\"{layout:?}\",\"dtype\":\"{dtype:?}\",\"views\":{views},\"seconds\":{secs:.3},\"views_per_s\":{:.0},\"us_per_view_per_thread\":{:.2}}}",
            views as f64 / secs,
            secs * 1e6 * threads as f64 / views as f64
        );
    }
    Ok(())
}
