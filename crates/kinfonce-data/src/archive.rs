//! Reading named members from a folder or straight from a `.tar.gz` archive.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::error::{DataError, Result};

/// True for `*.tar.gz` and `*.tgz`.
pub(crate) fn is_tar_gz(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// A member's content and the path to name in errors (`archive.tar.gz/inner/name` for archives).
pub(crate) struct Member {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// Reads the members whose *file names* are in `wanted` from `source`: a `.tar.gz` archive
/// (streamed once, stopping when all are found) or a folder (the file itself or one level of
/// sub-folders, e.g. `cifar-10-batches-bin/`). Missing members are absent from the map.
pub(crate) fn read_members(source: &Path, wanted: &[&str]) -> Result<HashMap<String, Member>> {
    if is_tar_gz(source) {
        read_tar_gz(source, wanted)
    } else {
        let mut out = HashMap::new();
        for &name in wanted {
            if let Some(path) = find_in_dir(source, name) {
                let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
                out.insert(name.to_string(), Member { path, bytes });
            }
        }
        Ok(out)
    }
}

/// `dir/name`, else `dir/<sub>/name` for the first sub-folder (sorted) that has it.
pub(crate) fn find_in_dir(dir: &Path, name: &str) -> Option<PathBuf> {
    let direct = dir.join(name);
    if direct.is_file() {
        return Some(direct);
    }
    let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subs.sort();
    subs.into_iter().map(|s| s.join(name)).find(|p| p.is_file())
}

fn read_tar_gz(source: &Path, wanted: &[&str]) -> Result<HashMap<String, Member>> {
    let file = File::open(source).map_err(|e| DataError::io(source, e))?;
    let gz = GzDecoder::new(BufReader::with_capacity(1 << 20, file));
    let mut archive = tar::Archive::new(gz);
    let corrupt = |e: std::io::Error, what: &str| {
        DataError::format(
            source,
            format!("truncated or corrupt archive while {what}: {e}"),
        )
    };
    let mut out = HashMap::new();
    let entries = archive.entries().map_err(|e| corrupt(e, "opening it"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(e, "reading the next member header"))?;
        let inner = entry
            .path()
            .map_err(|e| corrupt(e, "reading a member name"))?
            .into_owned();
        let Some(name) = inner.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if !wanted.contains(&name.as_str()) || out.contains_key(&name) {
            continue;
        }
        let size = entry.size() as usize;
        let mut bytes = Vec::with_capacity(size);
        let member_path = source.join(&inner);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(e, &format!("reading {}", inner.display())))?;
        if bytes.len() != size {
            return Err(DataError::format(
                &member_path,
                format!(
                    "truncated archive: member has {} of its {size} bytes",
                    bytes.len()
                ),
            ));
        }
        out.insert(
            name,
            Member {
                path: member_path,
                bytes,
            },
        );
        if out.len() == wanted.len() {
            break;
        }
    }
    Ok(out)
}

/// Reads a whole file, gunzipping it when its name ends in `.gz`.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(BufReader::with_capacity(1 << 20, file))
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::format(path, format!("truncated or corrupt gzip: {e}")))?;
    } else {
        BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::io(path, e))?;
    }
    Ok(bytes)
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Writes `.tar.gz` fixtures.
    use std::path::Path;

    /// Writes `members` (inner path, bytes) into a gzip-compressed tar at `path`.
    pub fn write_tar_gz(path: &Path, members: &[(&str, &[u8])]) {
        let file = std::fs::File::create(path).unwrap();
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, bytes) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, *bytes).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::write_tar_gz;
    use super::*;

    #[test]
    fn members_from_tar_gz_and_folder_agree() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("x.tar.gz");
        write_tar_gz(&archive, &[("top/a.bin", b"aaa"), ("top/b.txt", b"bb")]);
        let m = read_members(&archive, &["a.bin", "c.bin"]).unwrap();
        assert_eq!(m["a.bin"].bytes, b"aaa");
        assert!(!m.contains_key("c.bin"));
        std::fs::create_dir(dir.path().join("top")).unwrap();
        std::fs::write(dir.path().join("top/a.bin"), b"aaa").unwrap();
        let m = read_members(dir.path(), &["a.bin"]).unwrap();
        assert_eq!(m["a.bin"].bytes, b"aaa");
    }

    #[test]
    fn truncated_archive_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("x.tar.gz");
        let big: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        write_tar_gz(&archive, &[("top/a.bin", &big)]);
        let bytes = std::fs::read(&archive).unwrap();
        std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_members(&archive, &["a.bin"]).err().expect("must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("x.tar.gz") && msg.contains("truncated"),
            "{msg}"
        );
    }
}
