//! `rohimaya upload` killed with SIGKILL at random points of a 200 MiB multipart upload,
//! ten times, then run again: the upload completes byte-exact with one job, and the bytes
//! sent again after each kill stay within the parts in flight (4 x 16 MiB), measured at a
//! fault proxy in front of the devstack's store. About a minute (eleven runs, each hashing
//! the file); it needs a D-Bus session with an unlocked gnome-keyring, as scripts/test
//! provides.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Killed, client_env};
use rohimaya_devstack::faults::FaultProxy;
use serde_json::Value;

const MIB: u64 = 1024 * 1024;
const SIZE: u64 = 200 * MIB;
const IN_FLIGHT_BYTES: u64 = 4 * 16 * MIB;

/// A text file: a 1 MiB block of words repeated, each MiB stamped with its index.
fn write_text(path: &Path, size: u64) {
    let words = b"the lighthouse keeper's daughter walked along the shore at dusk, ";
    let block: Vec<u8> = words.iter().copied().cycle().take(MIB as usize).collect();
    let mut f = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for i in 0..size / MIB {
        let stamp = format!("{nonce:x} block {i}\n");
        f.write_all(stamp.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(&block[stamp.len()..])
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A small xorshift: random kill points without another dependency.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn killed_uploads_resume_and_resend_only_the_parts_in_flight() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "this test needs a D-Bus session with an unlocked gnome-keyring (see scripts/test)"
    );
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s3_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let s3 = std::net::SocketAddr::from(([127, 0, 0, 1], s3_port));
    let proxy = rt
        .block_on(FaultProxy::start(s3))
        .unwrap_or_else(|e| panic!("{e}"));
    let profile = format!("crash-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_rohimaya");
    let command = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.args(["--profile", &profile]).args(args);
        client_env(&mut c, dir.path());
        c
    };
    let mut ds = command(&["devstack", "--save-profile", "--s3-listen", &s3.to_string()]);
    ds.arg("--data")
        .arg(dir.path().join("devstack"))
        .args(["--public-url", proxy.url().as_str(), "--job-seconds", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut devstack = Killed(ds.spawn().unwrap_or_else(|e| panic!("{e}")));
    let mut ready = String::new();
    if let Some(out) = devstack.0.stdout.take() {
        BufReader::new(out)
            .read_line(&mut ready)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(ready.contains("api_url"), "devstack not ready: {ready}");

    let mut signup = command(&["signup", "--email", "crash@example.com", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = signup.stdin.take() {
        stdin
            .write_all(b"a long enough password 123\n")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(signup.wait().is_ok_and(|s| s.success()), "signup failed");

    let file = dir.path().join("Big Book.txt");
    write_text(&file, SIZE);
    let file_arg = file.to_string_lossy().into_owned();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    let mut kills = 0u64;
    for _ in 0..10 {
        let start = proxy.bytes_up();
        // A random point of this run's sending: 1 B to 60 MiB into it.
        let kill_at = start + 1 + next(&mut seed) % (60 * MIB);
        let mut child = Killed(
            command(&["upload", &file_arg, "--json"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut finished = false;
        while proxy.bytes_up() < kill_at {
            if child.0.try_wait().ok().flatten().is_some() {
                finished = true;
                break;
            }
            assert!(Instant::now() < deadline, "the upload made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(child); // SIGKILL
        if finished {
            break;
        }
        kills += 1;
    }
    let out = command(&["upload", &file_arg, "--json"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "the final run failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let queue: Value = serde_json::from_slice(
        &command(&["queue", "--json"])
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
            .stdout,
    )
    .unwrap_or_default();
    let items = queue["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{queue}");
    assert_eq!(items[0]["state"], "completed", "{queue}");
    let key = items[0]["object_key"].as_str().unwrap_or_default();
    // The embedded store keeps objects as files under {data}/s3/{bucket}/{key}.
    let stored = std::fs::read(dir.path().join("devstack/s3/manuscripts").join(key))
        .unwrap_or_else(|e| panic!("stored object {key}: {e}"));
    assert!(
        stored == std::fs::read(&file).unwrap_or_default(),
        "not byte-exact"
    );
    let jobs: Value = serde_json::from_slice(
        &command(&["jobs", "--json"])
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
            .stdout,
    )
    .unwrap_or_default();
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs}");
    let resent = proxy.bytes_up().saturating_sub(SIZE);
    eprintln!(
        "crash test: {kills} kills, {} MiB sent in all for a {} MiB file: {:.1} MiB re-sent \
         ({:.1} MiB per kill; bound {} MiB per kill)",
        proxy.bytes_up() / MIB,
        SIZE / MIB,
        resent as f64 / MIB as f64,
        resent as f64 / MIB as f64 / kills.max(1) as f64,
        IN_FLIGHT_BYTES / MIB
    );
    assert!(
        resent <= kills * IN_FLIGHT_BYTES + MIB,
        "{resent} bytes re-sent after {kills} kills"
    );
}
