//! `fetch` against a local HTTP server on 127.0.0.1: download, resume, restart, mismatch.
#![cfg(feature = "fetch")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kinfonce_data::fetch::{
    download, fetch_dataset, known_dataset, locate, part_path, FetchOptions,
};
use kinfonce_data::{md5_file, Checksum};

/// How the server answers one request.
#[derive(Clone, Copy)]
enum Reply {
    /// Honour `Range` (206) or send everything (200).
    Normal,
    /// Announce the full length but send only `n` bytes, then close.
    CutAfter(usize),
    /// Ignore `Range` and send everything with 200.
    IgnoreRange,
}

struct Server {
    base: String,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
    handle: JoinHandle<()>,
}

/// Serves `body` at any path for exactly `replies.len()` connections, then stops.
fn serve(body: Vec<u8>, replies: Vec<Reply>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ranges);
    let handle = std::thread::spawn(move || {
        for reply in replies {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
                    range = Some(v.trim().to_string());
                }
            }
            seen.lock().unwrap().push(range.clone());
            let start = match (reply, &range) {
                (Reply::IgnoreRange, _) | (_, None) => None,
                (_, Some(r)) => r
                    .trim_start_matches("bytes=")
                    .trim_end_matches('-')
                    .parse::<usize>()
                    .ok(),
            };
            let (status, slice) = match start {
                Some(s) => ("206 Partial Content", &body[s..]),
                None => ("200 OK", &body[..]),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                slice.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            let send = match reply {
                Reply::CutAfter(n) => &slice[..n.min(slice.len())],
                _ => slice,
            };
            let _ = stream.write_all(send);
            let _ = stream.flush();
        }
    });
    Server {
        base,
        ranges,
        handle,
    }
}

fn payload(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect()
}

fn md5_of(bytes: &[u8], dir: &std::path::Path) -> Checksum {
    let p = dir.join("reference");
    std::fs::write(&p, bytes).unwrap();
    Checksum::Md5(md5_file(&p).unwrap())
}

fn quiet() -> FetchOptions {
    FetchOptions {
        progress: false,
        timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

#[test]
fn interrupted_transfer_resumes_with_range_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let body = payload(300_000);
    let sum = md5_of(&body, dir.path());
    let server = serve(body.clone(), vec![Reply::CutAfter(120_000), Reply::Normal]);
    let dest = dir.path().join("cache/file.bin");
    let url = format!("{}file.bin", server.base);

    let err = download(&url, &dest, &sum, &quiet())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("interrupted") || err.contains("ended after"),
        "{err}"
    );
    assert!(!dest.exists(), "no final file after a broken transfer");
    let kept = std::fs::metadata(part_path(&dest)).unwrap().len();
    assert!(kept > 0 && kept < body.len() as u64, "kept {kept}");

    let done = download(&url, &dest, &sum, &quiet()).unwrap();
    assert_eq!(done.resumed_from, kept);
    assert!(done.transferred);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert!(!part_path(&dest).exists());
    server.handle.join().unwrap();
    let ranges = server.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![None, Some(format!("bytes={kept}-"))]);

    // Present and valid: verified, not transferred again (the server is gone).
    let again = download(&url, &dest, &sum, &quiet()).unwrap();
    assert!(!again.transferred);
}

#[test]
fn server_ignoring_range_restarts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let body = payload(50_000);
    let sum = md5_of(&body, dir.path());
    let dest = dir.path().join("f.bin");
    std::fs::write(part_path(&dest), &body[..1000]).unwrap();
    let server = serve(body.clone(), vec![Reply::IgnoreRange]);
    let done = download(&format!("{}f.bin", server.base), &dest, &sum, &quiet()).unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    server.handle.join().unwrap();
}

#[test]
fn checksum_mismatch_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let body = payload(10_000);
    let server = serve(body, vec![Reply::Normal]);
    let dest = dir.path().join("f.bin");
    let wrong = Checksum::Md5("00000000000000000000000000000000".into());
    let err = download(&format!("{}f.bin", server.base), &dest, &wrong, &quiet())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains("00000000000000000000000000000000"),
        "{err}"
    );
    assert!(!dest.exists() && !part_path(&dest).exists());
    server.handle.join().unwrap();
}

#[test]
fn http_error_status_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    // A server that answers 416 to a fresh request is not a success: use a closed port instead.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    drop(listener);
    let err = download(
        &url,
        &dir.path().join("x"),
        &Checksum::Md5(String::new()),
        &quiet(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&url) && err.contains("request failed"),
        "{err}"
    );
}

#[test]
fn fetch_dataset_through_a_mirror_checks_the_published_md5() {
    // The mirror serves bytes that are not the real CIFAR-10: the published md5 rejects them.
    let dir = tempfile::tempdir().unwrap();
    let server = serve(payload(5000), vec![Reply::Normal]);
    let ds = known_dataset("CIFAR-10").unwrap();
    let opts = FetchOptions {
        mirror: Some(server.base.clone()),
        ..quiet()
    };
    let err = fetch_dataset(ds, dir.path(), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("c32a1d4ab5d03f1284b67883e8d87530"), "{err}");
    assert!(locate(ds, dir.path()).is_none());
    server.handle.join().unwrap();
    assert!(known_dataset("svhn")
        .unwrap_err()
        .to_string()
        .contains("tiny-imagenet"));
}
