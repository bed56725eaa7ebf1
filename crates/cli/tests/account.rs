//! `rohimaya signup|login|logout|whoami|jobs` as processes against `rohimaya devstack
//! --save-profile` (a child process), with sessions in the real Secret Service (run under
//! `dbus-run-session` with an unlocked gnome-keyring, see scripts/test): every sign-in
//! method, the stable `--json` shapes, the "not remembered" path without D-Bus, and two
//! processes (CLI invocations in a loop and an in-process client) sharing one keyring
//! entry for two minutes at 2-second tokens with no reuse interval. Afterwards no file in
//! the client's data or config dir, no log line and no output holds a token.
//! Keyring-touching tests run one at a time (`KEYRING`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

static KEYRING: Mutex<()> = Mutex::new(());

fn keyring_lock() -> std::sync::MutexGuard<'static, ()> {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "these tests need a D-Bus session with an unlocked gnome-keyring: run \
         dbus-run-session -- bash -c 'printf \"\\n\" | gnome-keyring-daemon --unlock \
         --components=secrets >/dev/null; cargo test -p rohimaya-cli'"
    );
    KEYRING.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client's directories, a devstack child saved as a profile, and the profile name.
struct Setup {
    dir: tempfile::TempDir,
    profile: String,
    devstack: Child,
    info: Value,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.devstack.kill();
        let _ = self.devstack.wait();
    }
}

impl Setup {
    fn start(name: &str, devstack_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let profile = format!("{name}-{}", std::process::id());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rohimaya"));
        cmd.args([
            "--profile",
            &profile,
            "devstack",
            "--save-profile",
            "--data",
        ])
        .arg(dir.path().join("devstack"))
        .args(devstack_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        Self::client_env(&mut cmd, dir.path());
        let mut devstack = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(devstack.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: Value = serde_json::from_str(line.trim()).expect("ready line");
        Self {
            dir,
            profile,
            devstack,
            info,
        }
    }

    fn config_dir(root: &Path) -> PathBuf {
        root.join("config")
    }

    fn data_dir(root: &Path) -> PathBuf {
        root.join("data")
    }

    fn client_env(cmd: &mut Command, root: &Path) {
        cmd.env("ROHIMAYA_CONFIG_DIR", Self::config_dir(root))
            .env("ROHIMAYA_DATA_DIR", Self::data_dir(root))
            .env("RUST_LOG", "debug,s3s=off,hyper=off,reqwest=off,zbus=off")
            .env_remove("ROHIMAYA_SUPABASE_URL")
            .env_remove("ROHIMAYA_SUPABASE_ANON_KEY")
            .env_remove("ROHIMAYA_API_URL")
            .env_remove("ROHIMAYA_PROFILE");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rohimaya"));
        cmd.args(["--profile", &self.profile]).args(args);
        Self::client_env(&mut cmd, self.dir.path());
        cmd
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn url(&self, key: &str) -> String {
        self.info[key].as_str().unwrap().to_string()
    }

    fn stats(&self) -> Value {
        http_get_json(&format!("{}/devstack/stats", self.url("supabase_url")))
    }
}

fn http_get_json(url: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn json_of(out: &Output) -> Value {
    let (stdout, stderr) = text(out);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?} {stderr}"))
}

#[test]
fn sign_in_methods_whoami_jobs_and_logout() {
    let _guard = keyring_lock();
    let s = Setup::start("cli-methods", &[]);
    let email = format!("{}@example.com", s.profile);

    let out = s.run(
        &["signup", "--email", &email, "--password-stdin"],
        "pw-123456\n",
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let who = s.run(&["whoami", "--json"], "");
    assert!(who.status.success(), "{:?}", text(&who));
    let who = json_of(&who);
    assert_eq!(who["signed_in"], true);
    assert_eq!(who["email"], email.as_str());
    assert_eq!(who["remembered"], true, "{who}");

    let jobs = s.run(&["jobs", "--json"], "");
    assert!(jobs.status.success(), "{:?}", text(&jobs));
    assert_eq!(json_of(&jobs), serde_json::json!({"jobs": []}));
    let show = s.run(
        &[
            "jobs",
            "show",
            "00000000-0000-0000-0000-000000000000",
            "--json",
        ],
        "",
    );
    assert_eq!(show.status.code(), Some(1));
    assert_eq!(json_of(&show)["error"]["code"], "not_found");

    let wrong = s.run(
        &["login", "--email", &email, "--password-stdin", "--json"],
        "nope\n",
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(json_of(&wrong)["error"]["code"], "invalid_credentials");
    let ok = s.run(
        &["login", "--email", &email, "--password-stdin"],
        "pw-123456\n",
    );
    assert!(ok.status.success(), "{:?}", text(&ok));

    // Email code: the CLI asks for it on stdin once it is sent.
    let mut otp = s
        .command(&["login", "--email", &email, "--otp"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mailbox = format!("{}/devstack/mailbox/{email}", s.url("supabase_url"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        let mail = http_get_json(&mailbox);
        let otp_mail = mail
            .as_array()
            .and_then(|m| m.iter().find(|m| m["type"] == "magiclink"));
        if let Some(m) = otp_mail {
            break m["code"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no code mailed");
        std::thread::sleep(Duration::from_millis(50));
    };
    otp.stdin
        .take()
        .unwrap()
        .write_all(format!("{code}\n").as_bytes())
        .unwrap();
    let out = otp.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("Signed in as"), "{:?}", text(&out));

    // OAuth: the CLI prints the URL (no browser here); the test is the browser.
    let mut oauth = s
        .command(&[
            "login",
            "--oauth",
            "github",
            "--no-browser",
            "--timeout",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(oauth.stderr.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no URL printed");
        if line.starts_with("http") {
            break line.trim().to_string();
        }
    };
    be_the_browser(&url, &s.url("supabase_url"), &email);
    let out = oauth.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));

    let out = s.run(&["logout"], "");
    assert!(out.status.success(), "{:?}", text(&out));
    let who = s.run(&["whoami"], "");
    assert_eq!(who.status.code(), Some(1), "{:?}", text(&who));
    assert!(text(&who).0.contains("Not signed in"), "{:?}", text(&who));
}

fn be_the_browser(url: &str, supabase_url: &str, email: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let res = http.get(url).send().await.unwrap();
        let consent = res.headers()["location"].to_str().unwrap().to_string();
        let state = url::Url::parse(&consent)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let res = http
            .post(format!("{supabase_url}/devstack/oauth/consent"))
            .form(&[
                ("state", state.as_str()),
                ("email", email),
                ("decision", "approve"),
            ])
            .send()
            .await
            .unwrap();
        let callback = res.headers()["location"].to_str().unwrap().to_string();
        let page = http
            .get(&callback)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("close this tab"), "{page}");
    });
}

#[test]
fn without_dbus_sign_in_works_for_the_run_and_is_not_remembered() {
    let s = Setup::start("cli-nodbus", &[]);
    let email = format!("{}@example.com", s.profile);
    let run = |args: &[&str], stdin: &str| {
        let mut child = s
            .command(args)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(
        &["signup", "--email", &email, "--password-stdin"],
        "pw-123456\n",
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout} {stderr}");
    assert!(stdout.contains("Signed in as"), "{stdout}");
    assert!(
        stderr.contains("not remembered") && stderr.contains("because"),
        "{stderr}"
    );
    let who = run(&["whoami", "--json"], "");
    assert_eq!(who.status.code(), Some(1));
    let who = json_of(&who);
    assert_eq!(who["signed_in"], false);
    assert!(who["not_remembered_reason"].is_string(), "{who}");
}

#[test]
fn two_processes_share_one_keyring_entry_for_two_minutes() {
    let _guard = keyring_lock();
    let s = Setup::start(
        "cli-shared",
        &["--access-token-ttl", "2", "--refresh-reuse-interval", "0"],
    );
    let email = format!("{}@example.com", s.profile);
    let out = s.run(
        &["signup", "--email", &email, "--password-stdin"],
        "pw-123456\n",
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let mut outputs: Vec<String> = vec![text(&out).0, text(&out).1];

    // The in-process client: the same profile, data dir (lock) and keyring entry.
    let paths = rohimaya_core::config::Paths {
        config_dir: Setup::config_dir(s.dir.path()),
        data_dir: Setup::data_dir(s.dir.path()),
        library_dir: s.dir.path().join("library"),
    };
    let profile = rohimaya_core::config::Profile::resolve_with(
        |_| None,
        &paths.settings_file(),
        Some(&s.profile),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let session = rohimaya_core::auth::SessionManager::for_profile(&profile, &paths);
    let restored = rt.block_on(session.restore());
    assert!(
        matches!(restored, rohimaya_core::auth::SessionStatus::SignedIn(_)),
        "{restored:?}"
    );
    let api = rohimaya_core::api::ApiClient::new(&profile.endpoints).with_session(session.clone());
    let end = Instant::now() + Duration::from_secs(120);
    let in_process = rt.spawn({
        let api = api.clone();
        let session = session.clone();
        async move {
            let mut tokens = Vec::new();
            let mut pace = tokio::time::interval(Duration::from_millis(200));
            let mut calls = 0u32;
            while Instant::now() < end {
                pace.tick().await;
                api.list_jobs(&Default::default())
                    .await
                    .unwrap_or_else(|e| panic!("in-process call {calls}: {e}"));
                calls += 1;
                if calls.is_multiple_of(25) {
                    tokens.push(session.access_token().await.unwrap().expose().to_string());
                }
            }
            (calls, tokens)
        }
    });
    let mut cli_runs = 0;
    let mut refresh_tokens = Vec::new();
    while Instant::now() < end {
        let out = s.run(&["whoami", "--json"], "");
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "CLI run {cli_runs}: {stdout} {stderr}"
        );
        assert_eq!(json_of(&out)["signed_in"], true);
        outputs.push(stdout);
        outputs.push(stderr);
        cli_runs += 1;
        if let Ok(Some(saved)) = rohimaya_core::secrets::SessionStore::load(
            &rohimaya_core::secrets::KeyringStore::new(),
            &s.profile,
        ) {
            refresh_tokens.push(saved.refresh_token.expose().to_string());
        }
    }
    let (calls, access_tokens) = rt.block_on(in_process).unwrap();
    rt.block_on(session.verify_with_server()).unwrap();
    let last = s.run(&["whoami", "--json"], "");
    assert!(last.status.success(), "{:?}", text(&last));
    let stats = s.stats();
    println!(
        "two processes: {cli_runs} CLI runs, {calls} in-process calls, \
         {} refreshes by the in-process client, devstack stats {stats}",
        session.refreshes_sent()
    );
    assert_eq!(stats["refresh_refused"], serde_json::json!({}), "{stats}");
    assert!(cli_runs >= 10 && calls >= 100, "{cli_runs} {calls}");

    // No token in the client's files, logs or output.
    let mut secrets: Vec<String> = access_tokens;
    secrets.extend(refresh_tokens);
    assert!(secrets.len() > 10, "collected {} tokens", secrets.len());
    let mut texts = outputs;
    for root in [
        Setup::config_dir(s.dir.path()),
        Setup::data_dir(s.dir.path()),
    ] {
        for file in files_under(&root) {
            texts.push(String::from_utf8_lossy(&std::fs::read(&file).unwrap()).to_string());
        }
    }
    for t in &texts {
        assert!(!t.contains("panicked"), "a panic: {t}");
        for secret in &secrets {
            assert!(!t.contains(secret.as_str()), "a token leaked into: {t}");
        }
    }
    rt.block_on(session.sign_out());
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
