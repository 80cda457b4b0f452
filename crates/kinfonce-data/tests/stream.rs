//! Streamed image folders end to end: a folder of JPEGs and PNGs of different sizes (written
//! here with a fixed seed) streams through the loaders; the index is cached and re-checked; a
//! damaged or foreign file is one error that names it, never a panic.

use std::path::Path;
use std::sync::Arc;

use kinfonce_data::{
    AugmentConfig, ContrastiveLoader, DataConfig, DataFormat, EvalConfig, EvalLoader, LoaderConfig,
    Normalization, StreamMode, INDEX_FILE,
};

/// A noisy `w x h` image from `seed`, gray or RGB, saved by extension (JPEG quality 90, PNG).
fn write_image(path: &Path, w: u32, h: u32, gray: bool, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let v = |x: u32, y: u32, c: u32| {
        let n = (x.wrapping_mul(7919) ^ y.wrapping_mul(104_729) ^ (seed + c).wrapping_mul(31)) % 61;
        ((x * 255 / w + y * 128 / h + c * 40) % 200 + n) as u8
    };
    let img = if gray {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, h, |x, y| {
            image::Luma([v(x, y, 0)])
        }))
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([v(x, y, 0), v(x, y, 1), v(x, y, 2)])
        }))
    };
    img.save(path).unwrap();
}

/// Two classes of 5 images each: odd sizes, one gray JPEG and one PNG per class.
fn fixture(root: &Path) {
    let sizes = [(517, 389), (301, 257), (640, 480), (233, 611), (1001, 750)];
    for (c, class) in ["cat", "dog"].iter().enumerate() {
        for (i, &(w, h)) in sizes.iter().enumerate() {
            let ext = if i == 1 { "png" } else { "jpg" };
            let seed = (c * 10 + i) as u32;
            write_image(&root.join(format!("{class}/{i}.{ext}")), w, h, i == 3, seed);
        }
    }
}

fn config(root: &Path) -> DataConfig {
    let mut cfg = DataConfig::new(root);
    cfg.val_fraction = 0.2;
    cfg.folder.view_size = 32;
    cfg
}

fn aug() -> AugmentConfig {
    AugmentConfig::preset(DataFormat::ImageFolder, 32)
}

fn loader_cfg(batch: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: batch,
        ..Default::default()
    }
}

#[test]
fn a_folder_of_mixed_sizes_streams_through_both_loaders() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let splits = config(dir.path()).load_splits(false).unwrap();
    let train = Arc::new(splits.train);
    assert!(train.is_streamed());
    assert_eq!((train.len(), splits.val.len()), (8, 2));
    assert_eq!(
        (train.height(), train.width(), train.channels()),
        (32, 32, 3)
    );
    let (path, shape) = train.file(0).unwrap();
    assert!(path.starts_with(dir.path()));
    assert!(shape.width > 200 && shape.height > 200);

    let loader = ContrastiveLoader::new(Arc::clone(&train), aug(), loader_cfg(4)).unwrap();
    let batches: Vec<_> = loader.epoch(1).map(Result::unwrap).collect();
    assert_eq!(batches.len(), 2);
    let b = &batches[0];
    assert_eq!(b.shape, [8, 3, 32, 32]);
    let x = b.as_f32().unwrap();
    assert!(x.iter().all(|v| v.is_finite()));
    // Normalised pixels spread out; two views of one image differ.
    let item = 3 * 32 * 32;
    assert_ne!(&x[..item], &x[4 * item..5 * item]);
    // Views are a function of (seed, epoch, index, view): again, on more threads, the same.
    let again = ContrastiveLoader::new(
        train,
        aug(),
        LoaderConfig {
            threads: 3,
            ..loader_cfg(4)
        },
    )
    .unwrap();
    assert_eq!(again.batch(1, 0).unwrap(), batches[0]);

    let eval = EvalLoader::new(
        Arc::new(splits.val),
        EvalConfig {
            batch_size: 2,
            size: Some(32),
            normalization: Normalization::imagenet(),
            ..Default::default()
        },
    )
    .unwrap();
    let e: Vec<_> = eval.batches().map(Result::unwrap).collect();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].shape, [2, 3, 32, 32]);
}

#[test]
fn the_index_is_cached_and_rechecked_against_the_listing() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let all = || {
        let mut cfg = config(dir.path());
        cfg.val_fraction = 0.0;
        cfg.load(kinfonce_data::Split::Train).unwrap()
    };
    let first = all();
    let cache = dir.path().join(INDEX_FILE);
    let text = std::fs::read_to_string(&cache).unwrap();
    assert_eq!(text.lines().count(), 11, "a header and one line per file");
    // The cached sizes are the headers' (an image replaced by one of another size is re-read).
    write_image(&dir.path().join("cat/0.jpg"), 123, 77, false, 99);
    let second = all();
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.contains("\t77\t123\tcat/0.jpg"), "{text}");
    assert_ne!(first.fingerprint(), second.fingerprint());
    // A new file joins the index.
    write_image(&dir.path().join("dog/5.jpg"), 64, 64, false, 7);
    assert_eq!(all().len(), 11);
}

#[test]
fn a_truncated_file_fails_its_step_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let victim = dir.path().join("dog/2.jpg");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 3]).unwrap();
    let mut cfg = config(dir.path());
    cfg.val_fraction = 0.0;
    let train = Arc::new(cfg.load(kinfonce_data::Split::Train).unwrap());
    // The header still reads, so the index holds it; the step that decodes it fails.
    let loader = ContrastiveLoader::new(train, aug(), loader_cfg(10)).unwrap();
    let items: Vec<_> = loader.epoch(0).collect();
    assert_eq!(items.len(), 1);
    let err = items[0].as_ref().unwrap_err().to_string();
    assert!(err.contains("2.jpg") && err.contains("dog"), "{err}");
}

#[test]
fn a_file_that_is_not_an_image_fails_the_index_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    std::fs::write(dir.path().join("cat/notes.jpg"), b"not a JPEG at all").unwrap();
    let mut cfg = config(dir.path());
    cfg.folder.stream = StreamMode::Always;
    let err = cfg.load_splits(false).unwrap_err().to_string();
    assert!(err.contains("notes.jpg"), "{err}");
    // A PNG cut short inside its header fails the index too.
    std::fs::remove_file(dir.path().join("cat/notes.jpg")).unwrap();
    let png = dir.path().join("dog/1.png");
    let bytes = std::fs::read(&png).unwrap();
    std::fs::write(&png, &bytes[..20]).unwrap();
    let err = cfg.load_splits(false).unwrap_err().to_string();
    assert!(err.contains("1.png"), "{err}");
}
