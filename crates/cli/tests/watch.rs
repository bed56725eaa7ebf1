//! `rohimaya watch` as processes: `watch add` + `watch set` + `watch run --verbose` against
//! a `rohimaya devstack` process picks up a manuscript dropped into the folder, uploads it
//! (one job), shows why it waited and ignored what it ignored, and stops cleanly with exit
//! code 0 on SIGINT (Ctrl-C). It needs a D-Bus session with an unlocked gnome-keyring, as
//! scripts/test provides (the signed-in session lives in the keyring).

#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Killed, client_env};

fn wait_exit(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            return status;
        }
        assert!(Instant::now() < end, "did not exit within {deadline:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn watch_run_uploads_a_dropped_manuscript_and_stops_on_ctrl_c() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "this test needs a D-Bus session with an unlocked gnome-keyring (see scripts/test)"
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let profile = format!("watch-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_rohimaya");
    let command = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.args(["--profile", &profile]).args(args);
        client_env(&mut c, dir.path());
        c
    };
    let mut ds = command(&["devstack", "--save-profile", "--job-seconds", "600"]);
    ds.arg("--data")
        .arg(dir.path().join("devstack"))
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

    let mut signup = command(&["signup", "--email", "watch@example.com", "--password-stdin"])
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

    let books = dir.path().join("Books");
    std::fs::create_dir_all(&books).unwrap_or_else(|e| panic!("{e}"));
    let books_arg = books.to_string_lossy().into_owned();
    let ok = |args: &[&str]| {
        let out = command(args).output().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["watch", "add", &books_arg, "--recursive", "--voice", "nova"]);
    ok(&["watch", "set", "--stability-ms", "300"]);
    let list: serde_json::Value =
        serde_json::from_str(&ok(&["watch", "list", "--json"])).unwrap_or_default();
    assert_eq!(list["folders"][0]["recursive"], true, "{list}");
    assert_eq!(list["folders"][0]["options"]["voice"], "nova", "{list}");
    // Adding it twice is refused with its code.
    let again = command(&["watch", "add", &books_arg, "--json"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stdout).contains("watch_folder_already_watched"));

    let mut run = Killed(
        command(&["watch", "run", "--verbose"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let (tx, rx) = mpsc::channel::<String>();
    if let Some(out) = run.0.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/manuscripts/lighthouse.txt");
    std::fs::write(books.join("~$lock.docx"), b"lock").unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&fixture, books.join("Lighthouse.txt")).unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|l: &String| l.starts_with("uploaded") && l.contains("Lighthouse.txt"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("no upload line within 60 s; got {lines:?}"),
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ignored") && l.contains("~$lock.docx")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("seen")), "{lines:?}");

    let pid = nix::unistd::Pid::from_raw(run.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap_or_else(|e| panic!("{e}"));
    let status = wait_exit(&mut run.0, Duration::from_secs(10));
    assert!(status.success(), "watch run exited with {status}");

    let queue: serde_json::Value =
        serde_json::from_str(&ok(&["queue", "list", "--json"])).unwrap_or_default();
    let items = queue["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{queue}");
    assert_eq!(items[0]["state"], "completed");
    let log = ok(&["watch", "log", "--limit", "100"]);
    assert!(log.contains("queued"), "{log}");
}
