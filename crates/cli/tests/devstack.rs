//! `rohimaya devstack` as a process: prints exactly one JSON line once every server is
//! accepting, serves, and exits 0 on SIGTERM and SIGINT; flags reach the config.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running {
    child: Child,
    info: serde_json::Value,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rohimaya"))
        .arg("devstack")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn rohimaya devstack");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the ready line");
    let info: serde_json::Value =
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    Running { child, info }
}

fn wait_exit(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < end,
            "devstack did not exit within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, sig).expect("send signal");
}

#[tokio::test]
async fn prints_one_ready_line_with_every_field_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&["--data", dir.path().to_str().unwrap()]);
    for field in [
        "supabase_url",
        "anon_key",
        "api_url",
        "s3_url",
        "s3_access_key",
        "s3_secret_key",
        "manuscripts_bucket",
        "audiobooks_bucket",
    ] {
        let v = running.info[field].as_str().unwrap_or_default();
        assert!(!v.is_empty(), "{field} missing in {}", running.info);
    }
    // Ready means ready: the first request after the line succeeds.
    let api = running.info["api_url"].as_str().unwrap();
    let res = reqwest::get(format!("{api}/health")).await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let s3 = running.info["s3_url"].as_str().unwrap();
    // The S3 server answers (unsigned requests are refused, as R2 does).
    let res = reqwest::get(s3).await.unwrap();
    assert_eq!(res.status(), 403);
}

#[cfg(unix)]
#[test]
fn exits_zero_on_sigterm_and_sigint() {
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut running = start(&["--data", dir.path().to_str().unwrap()]);
        signal(&running.child, sig);
        let status = wait_exit(&mut running.child, Duration::from_secs(20));
        assert!(status.success(), "{sig:?} -> {status:?}");
    }
}

#[test]
fn listen_flag_sets_the_gateway_port_and_state_persists() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let listen = format!("127.0.0.1:{port}");
    let first = start(&["--data", dir.path().to_str().unwrap(), "--listen", &listen]);
    assert_eq!(first.info["supabase_url"], format!("http://{listen}"));
    let anon = first.info["anon_key"].clone();
    drop(first);
    // Same data dir: same keys, so every issued token stays valid.
    let second = start(&["--data", dir.path().to_str().unwrap()]);
    assert_eq!(second.info["anon_key"], anon);
}

#[test]
fn bad_flags_fail_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_rohimaya"))
        .args(["devstack", "--url-ttl", "0", "--data"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("url_ttl"), "{err}");
}
