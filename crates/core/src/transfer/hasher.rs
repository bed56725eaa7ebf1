//! [`PartHasher`]: a file's checksums computed while it is being uploaded, a bounded
//! distance ahead of the senders, instead of in a pass over the whole file before the
//! first byte is sent.
//!
//! One blocking thread reads the file sequentially with fixed 1 MiB buffers and computes
//! each part's MD5 (the signed `Content-MD5`, and the ETag the store must answer); when
//! the file's SHA-256 is wanted (dedupe), the same buffers go over a bounded channel to a
//! second thread that computes it, so the two digests use two cores. The reader never runs
//! more than `lookahead` parts past the highest part a sender has asked for: it waits for
//! the senders, not the other way round. The MD5s of the parts hashed so far are kept (16
//! bytes each) for signing, resume checks and the multipart ETag.
//!
//! It owns that read and nothing else: it never sends, never signs, never touches the
//! queue. It never holds more than [`BUFFERS`] buffers, whatever the file's size, and stops
//! reading when its handle is dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rohimaya_md5::Md5;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::TransferError;
use super::plan::{MIB, PartPlan};

/// Bytes read from the file at a time.
pub const READ_BUFFER: usize = MIB as usize;
/// Buffers in use at most (being read into, queued for the SHA-256 thread, being hashed).
pub const BUFFERS: usize = 4;

/// What to compute besides the part MD5s, and how far ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashOptions {
    /// Compute the whole file's SHA-256 too (not needed when it is already known).
    pub sha256: bool,
    /// Parts the reader may hash past the highest part asked for (at least 1).
    pub lookahead: u32,
}

/// Why the checksums could not be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashError {
    /// The file is not as long as planned any more (or longer): it changed.
    Changed(String),
    /// The file cannot be read.
    Unreadable(String),
}

impl HashError {
    pub fn into_transfer(self, path: &Path) -> TransferError {
        match self {
            HashError::Changed(_) => TransferError::FileChanged {
                path: path.to_path_buf(),
            },
            HashError::Unreadable(reason) => TransferError::Unreadable {
                path: path.to_path_buf(),
                reason,
            },
        }
    }
}

/// Where the reader stands, as the async side sees it.
#[derive(Debug, Clone, Default)]
struct Status {
    /// Parts hashed so far (they are hashed in order).
    hashed: u32,
    /// Set when the reader is done: the SHA-256 (if asked for), or why it failed.
    outcome: Option<Result<Option<String>, HashError>>,
}

struct Gate {
    /// The reader may hash parts up to this number.
    allowed: u32,
    /// The handle was dropped: stop reading.
    stopped: bool,
}

struct Shared {
    gate: Mutex<Gate>,
    wake: Condvar,
    md5s: Mutex<Vec<[u8; 16]>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The running hasher of one file under one plan. Dropping it stops the reader.
pub struct PartHasher {
    shared: Arc<Shared>,
    status: watch::Receiver<Status>,
    plan: PartPlan,
    lookahead: u32,
}

impl std::fmt::Debug for PartHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartHasher")
            .field("plan", &self.plan)
            .field("hashed", &self.hashed())
            .finish()
    }
}

impl PartHasher {
    /// Starts reading `path` (expected to be `plan.size()` bytes long) on its own thread.
    pub fn start(path: &Path, plan: PartPlan, options: HashOptions) -> PartHasher {
        let lookahead = options.lookahead.max(1);
        let shared = Arc::new(Shared {
            gate: Mutex::new(Gate {
                allowed: lookahead,
                stopped: false,
            }),
            wake: Condvar::new(),
            md5s: Mutex::new(Vec::with_capacity(plan.part_count() as usize)),
        });
        let (tx, status) = watch::channel(Status::default());
        let reader = Reader {
            path: path.to_path_buf(),
            plan,
            sha256: options.sha256,
            shared: shared.clone(),
            status: tx.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("rohimaya-hash".into())
            .spawn(move || reader.run());
        if let Err(e) = spawned {
            tx.send_modify(|s| {
                s.outcome = Some(Err(HashError::Unreadable(format!(
                    "cannot start the hashing thread: {e}"
                ))))
            });
        }
        PartHasher {
            shared,
            status,
            plan,
            lookahead,
        }
    }

    pub fn plan(&self) -> PartPlan {
        self.plan
    }

    /// Parts hashed so far.
    pub fn hashed(&self) -> u32 {
        self.status.borrow().hashed
    }

    /// Lets the reader go on up to part `n`.
    fn allow(&self, n: u32) {
        let mut gate = lock(&self.shared.gate);
        if n > gate.allowed {
            gate.allowed = n;
            self.shared.wake.notify_all();
        }
    }

    /// The MD5 of part `n` (1-based) if it is hashed already; never waits.
    pub fn known_md5(&self, n: u32) -> Option<[u8; 16]> {
        let i = n.checked_sub(1)? as usize;
        lock(&self.shared.md5s).get(i).copied()
    }

    /// The MD5 of part `n` (1-based), waiting for the reader to get there. Asking for `n`
    /// lets the reader run up to `n + lookahead`.
    pub async fn md5(&self, n: u32) -> Result<[u8; 16], HashError> {
        self.allow(n.saturating_add(self.lookahead));
        let mut rx = self.status.clone();
        let reached = rx
            .wait_for(|s| s.hashed >= n || matches!(s.outcome, Some(Err(_))))
            .await
            .map(|s| match &s.outcome {
                Some(Err(e)) if s.hashed < n => Err(e.clone()),
                _ => Ok(()),
            });
        match reached {
            Ok(Ok(())) => self
                .known_md5(n)
                .ok_or_else(|| HashError::Unreadable(format!("part {n} is not in the plan"))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(HashError::Unreadable("the hashing thread stopped".into())),
        }
    }

    /// Every part's MD5, in part order, waiting for the last one.
    pub async fn part_md5s(&self) -> Result<Vec<[u8; 16]>, HashError> {
        self.md5(self.plan.part_count()).await?;
        Ok(lock(&self.shared.md5s).clone())
    }

    /// Lets the reader finish and waits for it: the file's hex SHA-256 when it was asked
    /// for (`None` otherwise). Fails if the file changed length or cannot be read.
    pub async fn finish(&self) -> Result<Option<String>, HashError> {
        self.allow(u32::MAX);
        let mut rx = self.status.clone();
        let outcome = rx
            .wait_for(|s| s.outcome.is_some())
            .await
            .map(|s| s.outcome.clone());
        match outcome {
            Ok(Some(r)) => r,
            _ => Err(HashError::Unreadable("the hashing thread stopped".into())),
        }
    }
}

impl Drop for PartHasher {
    fn drop(&mut self) {
        lock(&self.shared.gate).stopped = true;
        self.shared.wake.notify_all();
    }
}

/// The reading thread's side.
struct Reader {
    path: PathBuf,
    plan: PartPlan,
    sha256: bool,
    shared: Arc<Shared>,
    status: watch::Sender<Status>,
}

/// Reading stopped because the handle was dropped.
struct Stopped;

impl Reader {
    fn run(self) {
        let outcome = match self.read_all() {
            Ok(sha) => Ok(sha),
            Err(Some(e)) => Err(e),
            Err(None) => return,
        };
        self.status.send_modify(|s| s.outcome = Some(outcome));
    }

    /// Waits until part `n` may be hashed.
    fn wait_for_turn(&self, n: u32) -> Result<(), Stopped> {
        let mut gate = lock(&self.shared.gate);
        while !gate.stopped && n > gate.allowed {
            gate = match self.shared.wake.wait(gate) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
        if gate.stopped { Err(Stopped) } else { Ok(()) }
    }

    /// The SHA-256 (if asked for) after a full read; `Err(None)`: stopped by the handle.
    fn read_all(&self) -> Result<Option<String>, Option<HashError>> {
        let unreadable = |e: std::io::Error| Some(HashError::Unreadable(e.to_string()));
        let mut file = std::fs::File::open(&self.path).map_err(unreadable)?;
        let sha = self.sha256.then(ShaThread::start);
        // Without the SHA-256 thread one buffer is enough; with it, a small pool that
        // circulates between the two threads.
        let mut own = if sha.is_none() {
            vec![0u8; READ_BUFFER]
        } else {
            Vec::new()
        };
        for n in 1..=self.plan.part_count() {
            if self.wait_for_turn(n).is_err() {
                return Err(None);
            }
            let (_, mut left) = self.plan.part_range(n);
            let mut md5 = Md5::new();
            while left > 0 {
                let mut buf = match &sha {
                    Some(t) => t.empty.recv().map_err(|_| {
                        Some(HashError::Unreadable("the SHA-256 thread stopped".into()))
                    })?,
                    None => std::mem::take(&mut own),
                };
                let want = left.min(buf.len() as u64) as usize;
                let got = read_full(&mut file, &mut buf[..want]).map_err(unreadable)?;
                if got < want {
                    return Err(Some(HashError::Changed(
                        "the file got shorter while it was read".into(),
                    )));
                }
                md5.update(&buf[..got]);
                left -= got as u64;
                match &sha {
                    Some(t) => t.full.send((buf, got)).map_err(|_| {
                        Some(HashError::Unreadable("the SHA-256 thread stopped".into()))
                    })?,
                    None => own = buf,
                }
            }
            lock(&self.shared.md5s).push(md5.finalize());
            self.status.send_modify(|s| s.hashed = n);
        }
        let mut probe = [0u8; 1];
        if file.read(&mut probe).map_err(unreadable)? != 0 {
            return Err(Some(HashError::Changed(
                "the file got longer while it was read".into(),
            )));
        }
        match sha {
            Some(t) => match t.finish() {
                Some(hex) => Ok(Some(hex)),
                None => Err(Some(HashError::Unreadable(
                    "the SHA-256 thread stopped".into(),
                ))),
            },
            None => Ok(None),
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The SHA-256 thread: full buffers in, the same buffers back out empty.
struct ShaThread {
    full: SyncSender<(Vec<u8>, usize)>,
    empty: Receiver<Vec<u8>>,
    handle: std::thread::JoinHandle<String>,
}

impl ShaThread {
    fn start() -> ShaThread {
        let (full, full_rx) = sync_channel::<(Vec<u8>, usize)>(BUFFERS);
        let (empty_tx, empty) = sync_channel::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            // Cannot fail: the channel has room for every buffer and its receiver is here.
            let _ = empty_tx.send(vec![0u8; READ_BUFFER]);
        }
        let handle = std::thread::spawn(move || {
            let mut sha = Sha256::new();
            for (buf, len) in full_rx {
                sha.update(&buf[..len]);
                // The reader may be gone (stopped): then the buffer is simply dropped.
                let _ = empty_tx.send(buf);
            }
            hex::encode(sha.finalize())
        });
        ShaThread {
            full,
            empty,
            handle,
        }
    }

    fn finish(self) -> Option<String> {
        drop(self.full);
        self.handle.join().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn digests(data: &[u8], part: usize) -> (String, Vec<[u8; 16]>) {
        let sha = hex::encode(Sha256::digest(data));
        let md5s = data.chunks(part).map(Md5::digest).collect();
        (sha, md5s)
    }

    fn file_of(len: usize) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        (dir, path, data)
    }

    #[tokio::test]
    async fn part_md5s_and_sha256_match_one_shot_digests() {
        let part = 5 * MIB as usize;
        let len = 2 * part + 12_345;
        let (_dir, path, data) = file_of(len);
        let plan = PartPlan::multipart_with(len as u64, part as u64);
        let (sha, md5s) = digests(&data, part);
        let h = PartHasher::start(
            &path,
            plan,
            HashOptions {
                sha256: true,
                lookahead: 1,
            },
        );
        assert_eq!(h.md5(2).await.unwrap(), md5s[1]);
        assert_eq!(h.part_md5s().await.unwrap(), md5s);
        assert_eq!(h.finish().await.unwrap(), Some(sha));
        // Without the SHA-256: same MD5s, no digest.
        let h = PartHasher::start(
            &path,
            PartPlan::Single { size: len as u64 },
            HashOptions {
                sha256: false,
                lookahead: 1,
            },
        );
        assert_eq!(h.md5(1).await.unwrap(), Md5::digest(&data));
        assert_eq!(h.finish().await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_reader_stays_within_its_lookahead() {
        let part = 5 * MIB as usize;
        let (_dir, path, _) = file_of(6 * part);
        let plan = PartPlan::multipart_with(6 * part as u64, part as u64);
        let h = PartHasher::start(
            &path,
            plan,
            HashOptions {
                sha256: true,
                lookahead: 2,
            },
        );
        // Without any request it hashes exactly `lookahead` parts, then waits.
        let mut rx = h.status.clone();
        rx.wait_for(|s| s.hashed >= 2).await.unwrap();
        let more = tokio::time::timeout(Duration::from_millis(300), rx.wait_for(|s| s.hashed > 2));
        assert!(more.await.is_err(), "the reader ran past its lookahead");
        assert_eq!(h.hashed(), 2);
        assert_eq!(h.known_md5(3), None);
        // Asking for part 3 lets it go on to part 5, not further.
        h.md5(3).await.unwrap();
        rx.wait_for(|s| s.hashed >= 5).await.unwrap();
        let more = tokio::time::timeout(Duration::from_millis(300), rx.wait_for(|s| s.hashed > 5));
        assert!(more.await.is_err(), "the reader ran past its lookahead");
        assert!(h.known_md5(5).is_some());
        assert!(h.finish().await.unwrap().is_some());
        assert_eq!(h.hashed(), 6);
    }

    #[tokio::test]
    async fn a_file_of_another_length_is_reported_changed() {
        let (_dir, path, _) = file_of(1000);
        for size in [999, 1001] {
            let h = PartHasher::start(
                &path,
                PartPlan::Single { size },
                HashOptions {
                    sha256: true,
                    lookahead: 1,
                },
            );
            assert!(matches!(h.finish().await, Err(HashError::Changed(_))));
        }
        let h = PartHasher::start(
            &path.with_extension("missing"),
            PartPlan::Single { size: 1 },
            HashOptions {
                sha256: false,
                lookahead: 1,
            },
        );
        assert!(matches!(h.md5(1).await, Err(HashError::Unreadable(_))));
    }
}
