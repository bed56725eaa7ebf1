//! A listing is a consistent answer even while objects under the listed prefix are being
//! deleted: S3 never fails a LIST because a key vanished mid-listing, and neither may the
//! embedded store (s3s-fs walks directories and fails when an entry disappears between
//! `readdir` and `stat`). The simulator deletes a cancelled run's audio while clients list
//! the same prefix, so this race is real, not theoretical.

mod common;

use bytes::Bytes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_while_objects_are_deleted_never_fails() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let devstack = common::start(dir.path(), |_| {}).await;
    let store = devstack.backend().store.clone();
    let bucket = devstack.backend().config.audiobooks_bucket.clone();
    const ROUNDS: usize = 8;
    const KEYS: usize = 25;
    for round in 0..ROUNDS {
        let prefix = format!("audiobooks/u/job-{round}/");
        for k in 0..KEYS {
            store
                .put_object(
                    &bucket,
                    &format!("{prefix}track-{k:03}.wav"),
                    Bytes::from_static(b"RIFF"),
                    "audio/wav",
                )
                .await
                .unwrap_or_else(|e| panic!("put: {e}"));
        }
        let deleter = {
            let store = store.clone();
            let bucket = bucket.clone();
            let prefix = prefix.clone();
            tokio::spawn(async move {
                for k in 0..KEYS {
                    store
                        .delete_object(&bucket, &format!("{prefix}track-{k:03}.wav"))
                        .await
                        .unwrap_or_else(|e| panic!("delete: {e}"));
                }
            })
        };
        // List until the deleter is done; every answer must be a success listing a subset.
        let mut seen = usize::MAX;
        while !deleter.is_finished() {
            let listed = store
                .list_objects(&bucket, &prefix)
                .await
                .unwrap_or_else(|e| panic!("round {round}: listing failed mid-delete: {e}"));
            assert!(listed.len() <= KEYS);
            assert!(listed.iter().all(|o| o.key.starts_with(&prefix)));
            seen = seen.min(listed.len());
        }
        deleter.await.unwrap_or_else(|e| panic!("{e}"));
        let left = store
            .list_objects(&bucket, &prefix)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(left.is_empty(), "round {round}: {} keys left", left.len());
    }
    devstack.shutdown().await;
}
