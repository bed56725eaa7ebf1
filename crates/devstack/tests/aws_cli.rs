//! Conformance with the official AWS CLI (PyPI `awscli`): it lists and downloads objects
//! the devstack stored, signing with the S3 credentials the devstack prints, and the bytes
//! match. A missing `aws` binary fails the test with an install hint (CI installs it).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rohimaya_devstack::DevstackInfo;

/// Runs `aws` with only the devstack's credentials in its environment (no user config).
async fn aws(info: &DevstackInfo, home: &Path, args: &[&str]) -> Output {
    assert!(
        common::have("aws"),
        "the AWS CLI is not installed: install it with `pip install awscli` (CI does)."
    );
    let run = tokio::process::Command::new("aws")
        .args(args)
        .args(["--endpoint-url", &info.s3_url])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_ACCESS_KEY_ID", &info.s3_access_key)
        .env("AWS_SECRET_ACCESS_KEY", &info.s3_secret_key)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(120), run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run aws: {e}"),
        Err(_) => panic!("aws {args:?} did not finish within 120 s"),
    }
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_lists_and_downloads_what_the_devstack_stored() {
    let data_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let devstack = common::start(data_dir.path(), |_| {}).await;
    let info = devstack.info.clone();
    let store = &devstack.backend().store;

    let mut bytes = vec![0u8; 3 * 1024 * 1024 + 17];
    rand::rng().fill(&mut bytes[..]);
    let bytes = Bytes::from(bytes);
    let key = "audiobooks/user-1/job 1/My Book + Notes — été_COMPLETE.wav";
    let meta = store
        .put_object(&info.audiobooks_bucket, key, bytes.clone(), "audio/wav")
        .await
        .unwrap_or_else(|e| panic!("put: {e}"));
    assert_eq!(meta.size, bytes.len() as u64);

    // Buckets.
    let out = aws(&info, home.path(), &["s3", "ls"]).await;
    check(&out, "aws s3 ls");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&info.audiobooks_bucket), "{listing}");
    assert!(listing.contains(&info.manuscripts_bucket), "{listing}");

    // Objects, recursively, with their size.
    let bucket_url = format!("s3://{}/", info.audiobooks_bucket);
    let out = aws(
        &info,
        home.path(),
        &["s3", "ls", "--recursive", &bucket_url],
    )
    .await;
    check(&out, "aws s3 ls --recursive");
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = listing
        .lines()
        .find(|l| l.ends_with(key))
        .unwrap_or_else(|| panic!("{key} is not in the listing:\n{listing}"));
    assert!(line.contains(&bytes.len().to_string()), "{line}");

    // Download to stdout and to a file.
    let object_url = format!("s3://{}/{key}", info.audiobooks_bucket);
    let out = aws(&info, home.path(), &["s3", "cp", &object_url, "-"]).await;
    check(&out, "aws s3 cp to stdout");
    assert!(out.stdout == bytes.as_ref(), "stdout bytes differ");

    let target = home.path().join("downloaded.wav");
    let target_str = target.to_string_lossy().to_string();
    let out = aws(&info, home.path(), &["s3", "cp", &object_url, &target_str]).await;
    check(&out, "aws s3 cp to a file");
    let file = std::fs::read(&target).unwrap_or_else(|e| panic!("read download: {e}"));
    assert!(file == bytes.as_ref(), "file bytes differ");

    // The low-level API agrees on size and ETag.
    let out = aws(
        &info,
        home.path(),
        &[
            "s3api",
            "head-object",
            "--bucket",
            &info.audiobooks_bucket,
            "--key",
            key,
        ],
    )
    .await;
    check(&out, "aws s3api head-object");
    let head: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("head-object output is not JSON: {e}"));
    assert_eq!(head["ContentLength"], serde_json::json!(bytes.len()));
    assert_eq!(
        head["ETag"],
        serde_json::json!(format!("\"{}\"", meta.etag))
    );

    // Wrong credentials are refused.
    let mut wrong = info.clone();
    wrong.s3_secret_key = "not-the-secret".into();
    let out = aws(&wrong, home.path(), &["s3", "ls"]).await;
    assert!(!out.status.success(), "a wrong secret was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SignatureDoesNotMatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    devstack.shutdown().await;
}
