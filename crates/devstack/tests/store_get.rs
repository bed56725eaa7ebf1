//! The embedded store answers presigned GETs as R2 does for resumable downloads: `Range`
//! gives 206 with `Content-Range`, `If-Match` with another ETag gives 412
//! `PreconditionFailed` (also after the object was replaced), and a URL past its lifetime
//! gives 403 `AccessDenied` "Request has expired".

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;

fn body(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test]
async fn ranged_conditional_and_expiring_gets() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let devstack = common::start(dir.path(), |_| {}).await;
    let backend = devstack.backend();
    let bucket = backend.config.audiobooks_bucket.clone();
    let key = "audiobooks/u/j/book.wav";
    let first = body(100_000, 1);
    let meta = backend
        .store
        .put_object(&bucket, key, first.clone(), "audio/wav")
        .await
        .unwrap_or_else(|e| panic!("put: {e}"));
    let url = backend
        .store
        .presign_get(&bucket, key, Duration::from_secs(60), None)
        .unwrap_or_else(|e| panic!("presign: {e}"))
        .url;
    let http = reqwest::Client::new();
    let etag = format!("\"{}\"", meta.etag.trim_matches('"'));

    let res = http
        .get(&url)
        .header("Range", "bytes=1000-1999")
        .header("If-Match", &etag)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 206);
    assert_eq!(res.headers()["content-range"], "bytes 1000-1999/100000");
    assert_eq!(res.headers()["etag"].to_str().unwrap_or_default(), etag);
    let got = res.bytes().await.unwrap_or_default();
    assert_eq!(got, first.slice(1000..2000));

    let res = http
        .get(&url)
        .header("Range", "bytes=99000-")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap_or_default(), first.slice(99_000..));

    let res = http
        .get(&url)
        .header("If-Match", "\"0123456789abcdef0123456789abcdef\"")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 412);
    assert!(
        res.text()
            .await
            .unwrap_or_default()
            .contains("<Code>PreconditionFailed</Code>")
    );

    // Replaced: the old ETag no longer matches; the new one does.
    let second = body(50_000, 7);
    let meta2 = backend
        .store
        .put_object(&bucket, key, second.clone(), "audio/wav")
        .await
        .unwrap_or_else(|e| panic!("put: {e}"));
    assert_ne!(meta.etag, meta2.etag);
    let res = http
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Match", &etag)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 412);
    let res = http
        .get(&url)
        .header("If-Match", "*")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap_or_default(), second);

    // A URL signed for one second is refused once that second has passed.
    let short = backend
        .store
        .presign_get(&bucket, key, Duration::from_secs(1), None)
        .unwrap_or_else(|e| panic!("presign: {e}"))
        .url;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = http
            .get(&short)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if res.status() == 403 {
            let text = res.text().await.unwrap_or_default();
            assert!(text.contains("AccessDenied"), "{text}");
            assert!(text.contains("expired"), "{text}");
            break;
        }
        assert_eq!(res.status(), 200);
        assert!(Instant::now() < deadline, "the 1 s URL never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
