//! File checksums for provenance and download verification.

use std::io::Read;
use std::path::Path;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::dataset::hex;
use crate::error::{DataError, Result};

/// A checksum algorithm and its expected lower-case hex digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// SHA-256, 64 hex digits.
    Sha256(String),
    /// MD5, 32 hex digits (what CIFAR, STL-10 and TinyImageNet publish).
    Md5(String),
}

impl Checksum {
    /// The expected hex digest.
    pub fn expected(&self) -> &str {
        match self {
            Checksum::Sha256(h) | Checksum::Md5(h) => h,
        }
    }
    /// "sha256" or "md5".
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Sha256(_) => "sha256",
            Checksum::Md5(_) => "md5",
        }
    }
    /// The digest of `path` with this algorithm.
    pub fn compute(&self, path: &Path) -> Result<String> {
        match self {
            Checksum::Sha256(_) => digest_file::<Sha256>(path),
            Checksum::Md5(_) => digest_file::<Md5>(path),
        }
    }
}

fn digest_file<D: Digest>(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Hex sha256 of a file (streamed), for provenance.
pub fn sha256_file(path: &Path) -> Result<String> {
    digest_file::<Sha256>(path)
}

/// Hex md5 of a file (streamed).
pub fn md5_file(path: &Path) -> Result<String> {
    digest_file::<Md5>(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_of_abc() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(md5_file(&p).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
        let err = sha256_file(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("none"), "{err}");
    }
}
