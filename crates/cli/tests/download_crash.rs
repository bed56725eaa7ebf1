//! `rohimaya download` killed with SIGKILL while it downloads, then run again: the book
//! completes byte-exact, is catalogued, and `rohimaya library list` still lists it once the
//! backend is stopped. Bytes fetched again are measured at a fault proxy in front of the
//! store and must stay within the engine's buffers in flight. The simulator's book is a
//! few hundred KiB (one 1 MiB buffer: the bandwidth limit cannot pace it finely), so the
//! kill lands once bytes flowed but before the file is put in place; killing and resuming
//! large books mid-file through the CLI is `download_resume.rs`. It needs a D-Bus
//! session with an unlocked gnome-keyring, as scripts/test provides.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Killed, client_env};
use rohimaya_devstack::faults::FaultProxy;
use serde_json::Value;

const MIB: u64 = 1024 * 1024;
/// Two 1 MiB buffers per connection, four connections (the engine's defaults).
const IN_FLIGHT_BYTES: u64 = 8 * MIB;

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn a_killed_download_resumes_byte_exact_and_the_library_works_offline() {
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
    let profile = format!("dlcrash-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_rohimaya");
    let command = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.args(["--profile", &profile]).args(args);
        client_env(&mut c, dir.path());
        c.env("ROHIMAYA_LIBRARY_DIR", dir.path().join("Library"));
        c
    };
    let mut ds = command(&["devstack", "--save-profile", "--s3-listen", &s3.to_string()]);
    ds.arg("--data")
        .arg(dir.path().join("devstack"))
        .args(["--public-url", proxy.url().as_str(), "--job-seconds", "1"])
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
    let mut signup = command(&["signup", "--email", "dl@example.com", "--password-stdin"])
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

    let manuscript = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/manuscripts/lighthouse.txt");
    let up = command(&["upload", &manuscript.to_string_lossy(), "--wait", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        up.status.success(),
        "upload: {}",
        String::from_utf8_lossy(&up.stdout)
    );
    let job_id = json(&up)["jobs"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let job = json(
        &command(&["jobs", "show", &job_id, "--json"])
            .output()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let size = job["job"]["file_size_bytes"].as_u64().unwrap_or_default();
    let key = job["job"]["audio_path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(size > 64 * 1024, "{job}");

    // Slowed down so the process is surely still running when bytes have flowed.
    let limit = (size / 8).max(8 * 1024).to_string();
    assert!(
        command(&["queue", "set", "--bandwidth", &limit])
            .output()
            .is_ok_and(|o| o.status.success())
    );
    proxy.reset_counters();
    let mut child = Killed(
        command(&["download", &job_id, "--book", "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.bytes_down() < size / 3 {
        assert!(
            child.0.try_wait().ok().flatten().is_none(),
            "the download ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "the download made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(child); // SIGKILL
    let before = proxy.bytes_down();
    assert!(
        command(&["queue", "set", "--bandwidth", "0"])
            .output()
            .is_ok_and(|o| o.status.success())
    );
    let out = command(&["download", &job_id, "--book", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let report = json(&out);
    assert!(out.status.success(), "the rerun failed: {report}");
    let items = report["downloads"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{report}");
    assert_eq!(items[0]["state"], "completed", "{report}");
    let rel = items[0]["rel_path"].as_str().unwrap_or_default();
    let landed = std::fs::read(dir.path().join("Library").join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"));
    let stored = std::fs::read(dir.path().join("devstack/s3/audiobooks").join(&key))
        .unwrap_or_else(|e| panic!("stored object {key}: {e}"));
    assert!(landed == stored, "not byte-exact");
    let total = proxy.bytes_down();
    let refetched = total.saturating_sub(size);
    eprintln!(
        "download crash test: {size} B book, killed at {before} B, {total} B fetched in all, {refetched} B again"
    );
    assert!(refetched <= IN_FLIGHT_BYTES, "{refetched} B fetched again");

    // The backend stops: the library still lists the book.
    drop(devstack);
    let list = command(&["library", "list", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(list.status.success());
    let books = json(&list)["books"].as_array().cloned().unwrap_or_default();
    assert!(
        books.iter().any(|b| b["job_id"] == job_id.as_str()),
        "{books:?}"
    );
}
