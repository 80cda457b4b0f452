//! ImageFolder and TinyImageNet readers: JPEG/PNG files decoded with `image`, in parallel.
//!
//! Every image of a set must have one size: the size given in [`FolderOptions::image_size`],
//! else the size of the first file (in sorted order). A file of another size is an error that
//! names it, unless [`FolderOptions::resize`] asks to resize (bilinear, aspect not kept).
//! Grayscale and RGBA files are converted to RGB.
//!
//! A folder of images of different sizes, or one too large to decode into memory, is
//! **streamed** instead ([`StreamMode`]): see [`crate::StreamIndex`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::archive::find_in_dir;
use crate::dataset::{Dataset, OfficialSplits};
use crate::error::{DataError, Result};
use crate::stream::StreamIndex;

/// How to decode a folder of images.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderOptions {
    /// Required `(height, width)`. Default `None`: the size of the first image.
    pub image_size: Option<(usize, usize)>,
    /// Resize images of another size instead of failing. Default `false`.
    pub resize: bool,
    /// Whether to stream the images from their files. Default [`StreamMode::Auto`].
    pub stream: StreamMode,
    /// The side of a streamed set's views (its `height` and `width`). Default 224.
    pub view_size: usize,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            image_size: None,
            resize: false,
            stream: StreamMode::Auto,
            view_size: 224,
        }
    }
}

/// When an ImageFolder is streamed (read from its files view by view) rather than decoded
/// into memory at start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamMode {
    /// Stream when the images differ in size or their pixels would take more than
    /// [`STREAM_MEMORY_LIMIT`] bytes, unless an image size or resizing is asked for (those
    /// decode into memory). Default.
    #[default]
    Auto,
    /// Always stream.
    Always,
    /// Never stream (images of different sizes are then an error, or resized).
    Never,
}

/// The decoded size (bytes of pixels) above which [`StreamMode::Auto`] streams a folder:
/// 2 GiB.
pub const STREAM_MEMORY_LIMIT: u64 = 2 << 30;

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn is_image_name(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
        .collect::<Result<Vec<_>>>()?;
    v.retain(|p| !is_hidden(p));
    v.sort();
    Ok(v)
}

/// All image files under `dir`, recursively, sorted; any other (non-hidden) file is an error.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            out.extend(image_files(&p)?);
        } else if is_image_name(&p) {
            out.push(p);
        } else {
            return Err(DataError::format(
                &p,
                "not an image file (expected .jpg, .jpeg or .png)",
            ));
        }
    }
    Ok(out)
}

/// Decodes one file to RGB `[h, w, 3]`, checking or fixing its size.
fn decode(path: &Path, size: (usize, usize), resize: bool) -> Result<Vec<u8>> {
    let img = image::open(path)
        .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if (h, w) == size {
        return Ok(img.into_raw());
    }
    if !resize {
        return Err(DataError::format(
            path,
            format!(
                "image is {h}x{w} (HxW); expected {}x{} like the rest of the set (pass --image-size and --resize to resize)",
                size.0, size.1
            ),
        ));
    }
    let resized = image::imageops::resize(
        &img,
        size.1 as u32,
        size.0 as u32,
        image::imageops::FilterType::Triangle,
    );
    Ok(resized.into_raw())
}

fn image_size_of(path: &Path) -> Result<(usize, usize)> {
    let (w, h) = image::image_dimensions(path)
        .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))?;
    Ok((h as usize, w as usize))
}

/// `files` (under `root`, with their labels) as a [`Dataset`]: streamed when `opts` say so,
/// else decoded into memory.
fn decode_all(
    root: &Path,
    files: &[(PathBuf, u32)],
    names: Vec<String>,
    opts: &FolderOptions,
    size: Option<(usize, usize)>,
) -> Result<Dataset> {
    let fixed = size.is_some() || opts.image_size.is_some() || opts.resize;
    if !files.is_empty()
        && (opts.stream == StreamMode::Always || opts.stream == StreamMode::Auto && !fixed)
    {
        let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
        let index = StreamIndex::build(root, &paths)?;
        let first = index.shape(0);
        let same = (0..index.len()).all(|i| index.shape(i) == first);
        let bytes = (first.height * first.width * 3) as u64 * index.len() as u64;
        if opts.stream == StreamMode::Always || !same || bytes > STREAM_MEMORY_LIMIT {
            index.save_cache();
            let labels = files.iter().map(|(_, l)| *l).collect();
            let entries = (0..index.len() as u32).collect();
            return Dataset::streamed(Arc::new(index), entries, labels, opts.view_size, names);
        }
    }
    let size = match size.or(opts.image_size) {
        Some(s) => s,
        None => match files.first() {
            Some((p, _)) => image_size_of(p)?,
            None => (1, 1),
        },
    };
    let decoded = files
        .par_iter()
        .map(|(p, _)| decode(p, size, opts.resize))
        .collect::<Result<Vec<Vec<u8>>>>()?;
    let pixels = decoded.concat();
    let labels = files.iter().map(|(_, l)| *l).collect();
    Dataset::new(pixels, labels, size.0, size.1, 3, names)
}

/// Class folders of `dir` (sorted) and their image files; `None` when `dir` holds images only.
/// A class name and its image files.
type ClassFiles = (String, Vec<PathBuf>);

fn class_files(dir: &Path) -> Result<Option<Vec<ClassFiles>>> {
    let entries = sorted_entries(dir)?;
    let classes: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    if classes.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for c in classes {
        let files = image_files(c)?;
        if files.is_empty() {
            return Err(DataError::format(
                c,
                "class folder has no images (.jpg, .jpeg or .png)",
            ));
        }
        out.push((c.file_name().unwrap().to_string_lossy().into_owned(), files));
    }
    Ok(Some(out))
}

fn read_split_dir(
    dir: &Path,
    classes: Option<&[String]>,
    opts: &FolderOptions,
    size: Option<(usize, usize)>,
) -> Result<Dataset> {
    match class_files(dir)? {
        None => {
            let files = image_files(dir)?;
            if files.is_empty() {
                return Err(DataError::format(
                    dir,
                    "no images (.jpg, .jpeg or .png) and no class folders",
                ));
            }
            let files: Vec<(PathBuf, u32)> = files.into_iter().map(|p| (p, 0)).collect();
            decode_all(dir, &files, Vec::new(), opts, size)
        }
        Some(found) => {
            let names: Vec<String> = match classes {
                Some(c) => c.to_vec(),
                None => found.iter().map(|(n, _)| n.clone()).collect(),
            };
            let index: HashMap<&str, u32> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i as u32))
                .collect();
            let mut files = Vec::new();
            for (name, paths) in &found {
                let label = *index.get(name.as_str()).ok_or_else(|| {
                    DataError::format(
                        dir.join(name),
                        "class folder not present in the training split",
                    )
                })?;
                files.extend(paths.iter().map(|p| (p.clone(), label)));
            }
            decode_all(dir, &files, names, opts, size)
        }
    }
}

/// ImageFolder: `root/<class>/...` (train only), or `root/train/<class>` with `root/test/` or
/// `root/val/` as the test split.
pub(crate) fn read_image_folder(
    root: &Path,
    opts: &FolderOptions,
    train: bool,
    test: bool,
) -> Result<OfficialSplits> {
    if !root.is_dir() {
        return Err(DataError::format(root, "ImageFolder data must be a folder"));
    }
    let split_train = root.join("train");
    let split_test = ["test", "val"]
        .iter()
        .map(|s| root.join(s))
        .find(|p| p.is_dir());
    let mut out = OfficialSplits::default();
    if split_train.is_dir() {
        let tr = read_split_dir(&split_train, None, opts, None)?;
        if test {
            if let Some(t) = split_test {
                let classes = tr.is_labelled().then(|| tr.class_names().to_vec());
                // The test split is read as train was: streamed, or at train's size.
                let (test_opts, size) = if tr.is_streamed() {
                    let o = FolderOptions {
                        stream: StreamMode::Always,
                        ..opts.clone()
                    };
                    (o, None)
                } else {
                    (opts.clone(), Some((tr.height(), tr.width())))
                };
                out.test = Some(read_split_dir(&t, classes.as_deref(), &test_opts, size)?);
            }
        }
        out.train = train.then_some(tr);
    } else {
        out.train = Some(read_split_dir(root, None, opts, None)?);
    }
    Ok(out)
}

/// TinyImageNet-200: classes are the sorted wnids of `wnids.txt` (named from `words.txt` when
/// present); `train/<wnid>/images/*.JPEG` is the train split and `val/` the test split.
pub(crate) fn read_tiny_imagenet(
    path: &Path,
    opts: &FolderOptions,
    train: bool,
    test: bool,
) -> Result<OfficialSplits> {
    let wnids_path = find_in_dir(path, "wnids.txt").ok_or_else(|| DataError::Missing {
        path: path.to_path_buf(),
        what: "wnids.txt (TinyImageNet layout)".into(),
    })?;
    let root = wnids_path.parent().unwrap().to_path_buf();
    let text = std::fs::read_to_string(&wnids_path).map_err(|e| DataError::io(&wnids_path, e))?;
    let mut wnids: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    wnids.sort();
    wnids.dedup();
    if wnids.is_empty() {
        return Err(DataError::format(&wnids_path, "no class ids"));
    }
    let index: HashMap<&str, u32> = wnids
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let mut names = wnids.clone();
    if let Ok(words) = std::fs::read_to_string(root.join("words.txt")) {
        let map: HashMap<&str, &str> = words.lines().filter_map(|l| l.split_once('\t')).collect();
        for (n, w) in names.iter_mut().zip(&wnids) {
            if let Some(desc) = map.get(w.as_str()) {
                *n = desc.split(',').next().unwrap_or(desc).trim().to_string();
            }
        }
    }
    let size = opts.image_size.or(Some((64, 64)));
    let mut out = OfficialSplits::default();
    if train {
        let mut files = Vec::new();
        for (label, w) in wnids.iter().enumerate() {
            let class_dir = root.join("train").join(w);
            let images = if class_dir.join("images").is_dir() {
                class_dir.join("images")
            } else {
                class_dir.clone()
            };
            if !images.is_dir() {
                return Err(DataError::Missing {
                    path: class_dir,
                    what: "class folder of train images".into(),
                });
            }
            let found: Vec<PathBuf> = sorted_entries(&images)?
                .into_iter()
                .filter(|p| p.is_file())
                .collect();
            for p in &found {
                if !is_image_name(p) {
                    return Err(DataError::format(
                        p,
                        "not an image file (expected .jpg, .jpeg or .png)",
                    ));
                }
            }
            if found.is_empty() {
                return Err(DataError::format(&images, "class folder has no images"));
            }
            files.extend(found.into_iter().map(|p| (p, label as u32)));
        }
        out.train = Some(decode_all(&root, &files, names.clone(), opts, size)?);
    }
    if test {
        let ann = root.join("val").join("val_annotations.txt");
        let text = std::fs::read_to_string(&ann).map_err(|e| DataError::io(&ann, e))?;
        let mut files = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let mut cols = line.split('\t');
            let (Some(file), Some(wnid)) = (cols.next(), cols.next()) else {
                return Err(DataError::record(
                    &ann,
                    i,
                    format!("line {:?}; expected <file>\\t<wnid>\\t...", line),
                ));
            };
            let label = *index.get(wnid.trim()).ok_or_else(|| {
                DataError::record(
                    &ann,
                    i,
                    format!("class {wnid} is not in {}", wnids_path.display()),
                )
            })?;
            files.push((root.join("val").join("images").join(file.trim()), label));
        }
        files.sort();
        out.test = Some(decode_all(&root, &files, names, opts, size)?);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a `w x h` image whose pixels are all `rgb`.
    pub fn write_image(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
            .save(path)
            .unwrap();
    }

    #[test]
    fn image_folder_classes_sizes_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_image(&root.join("cat/a.png"), 8, 6, [10, 20, 30]);
        write_image(&root.join("cat/b.png"), 8, 6, [11, 20, 30]);
        write_image(&root.join("dog/c.png"), 8, 6, [200, 0, 0]);
        let s = read_image_folder(root, &FolderOptions::default(), true, true).unwrap();
        assert!(s.test.is_none());
        let d = s.train.unwrap();
        assert_eq!((d.len(), d.height(), d.width()), (3, 6, 8));
        assert_eq!(d.class_names(), &["cat".to_string(), "dog".to_string()]);
        assert_eq!(d.labels(), &[0, 0, 1]);
        assert_eq!(&d.image(1)[..3], &[11, 20, 30]);

        write_image(&root.join("dog/d.png"), 9, 6, [0, 0, 0]);
        let never = FolderOptions {
            stream: StreamMode::Never,
            ..FolderOptions::default()
        };
        let err = read_image_folder(root, &never, true, false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("d.png") && err.contains("6x9"), "{err}");
        // By default, images of different sizes stream.
        let streamed = read_image_folder(root, &FolderOptions::default(), true, false)
            .unwrap()
            .train
            .unwrap();
        assert!(streamed.is_streamed());
        assert_eq!((streamed.len(), streamed.height()), (4, 224));
        let opts = FolderOptions {
            image_size: Some((4, 4)),
            resize: true,
            ..FolderOptions::default()
        };
        let d = read_image_folder(root, &opts, true, false)
            .unwrap()
            .train
            .unwrap();
        assert_eq!((d.len(), d.height(), d.width()), (4, 4, 4));
        assert_eq!(&d.image(2)[..3], &[200, 0, 0]);

        std::fs::write(root.join("dog/notes.txt"), b"x").unwrap();
        let err = read_image_folder(root, &FolderOptions::default(), true, false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("notes.txt") && err.contains("not an image"),
            "{err}"
        );
        std::fs::remove_file(root.join("dog/notes.txt")).unwrap();
        std::fs::write(root.join("dog/broken.png"), b"not a png").unwrap();
        let err = read_image_folder(root, &opts, true, false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("broken.png") && err.contains("decode"),
            "{err}"
        );
        std::fs::remove_file(root.join("dog/broken.png")).unwrap();
        std::fs::create_dir(root.join("empty")).unwrap();
        let err = read_image_folder(root, &opts, true, false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("empty") && err.contains("no images"), "{err}");
    }

    #[test]
    fn image_folder_train_test_and_unlabelled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_image(&root.join("train/a/1.jpg"), 4, 4, [0, 0, 0]);
        write_image(&root.join("train/b/1.jpg"), 4, 4, [0, 0, 0]);
        write_image(&root.join("val/b/2.jpg"), 4, 4, [0, 0, 0]);
        let s = read_image_folder(root, &FolderOptions::default(), true, true).unwrap();
        assert_eq!(s.train.unwrap().len(), 2);
        let t = s.test.unwrap();
        assert_eq!(t.labels(), &[1]);
        assert_eq!(t.num_classes(), 2);
        let flat = dir.path().join("flat");
        write_image(&flat.join("x.png"), 4, 4, [1, 1, 1]);
        let d = read_image_folder(&flat, &FolderOptions::default(), true, false)
            .unwrap()
            .train
            .unwrap();
        assert!(!d.is_labelled());
    }

    /// A TinyImageNet-style tree: 2 wnids, 3 train images each, 2 val images; 8x8 for speed.
    pub fn tiny_imagenet_fixture(root: &Path) {
        let base = root.join("tiny-imagenet-200");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("wnids.txt"), "n02\nn01\n").unwrap();
        std::fs::write(
            base.join("words.txt"),
            "n01\tgoldfish, Carassius auratus\nn02\tsalamander\n",
        )
        .unwrap();
        for (w, v) in [("n01", 10u8), ("n02", 20u8)] {
            for i in 0..3 {
                write_image(
                    &base.join(format!("train/{w}/images/{w}_{i}.JPEG")),
                    8,
                    8,
                    [v, v, v],
                );
            }
            std::fs::write(base.join(format!("train/{w}/{w}_boxes.txt")), "").unwrap();
        }
        write_image(&base.join("val/images/val_0.JPEG"), 8, 8, [20, 20, 20]);
        write_image(&base.join("val/images/val_1.JPEG"), 8, 8, [10, 10, 10]);
        std::fs::write(
            base.join("val/val_annotations.txt"),
            "val_0.JPEG\tn02\t0\t0\t8\t8\nval_1.JPEG\tn01\t1\t1\t7\t7\n",
        )
        .unwrap();
    }

    #[test]
    fn tiny_imagenet_layout() {
        let dir = tempfile::tempdir().unwrap();
        tiny_imagenet_fixture(dir.path());
        let opts = FolderOptions {
            image_size: Some((8, 8)),
            ..FolderOptions::default()
        };
        let s = read_tiny_imagenet(dir.path(), &opts, true, true).unwrap();
        let tr = s.train.unwrap();
        assert_eq!(tr.len(), 6);
        assert_eq!(
            tr.class_names(),
            &["goldfish".to_string(), "salamander".to_string()]
        );
        assert_eq!(tr.labels(), &[0, 0, 0, 1, 1, 1]);
        let te = s.test.unwrap();
        assert_eq!(te.labels(), &[1, 0]);
        // JPEG is lossy: the flat gray survives within a few levels.
        assert!((te.image(0)[0] as i32 - 20).abs() <= 3);
        std::fs::write(
            dir.path().join("tiny-imagenet-200/val/val_annotations.txt"),
            "val_0.JPEG\tn09\t0\n",
        )
        .unwrap();
        let err = read_tiny_imagenet(dir.path(), &opts, false, true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("val_annotations.txt") && err.contains("n09"),
            "{err}"
        );
    }
}
