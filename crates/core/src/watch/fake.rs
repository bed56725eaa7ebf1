//! [`FakeFs`] and [`FakeClock`]: an in-memory tree (files with bytes and mtimes, folders,
//! symlinks, files that cannot be opened yet, placeholders, permission-denied entries) and
//! a clock a test moves by hand. Every change the test makes is recorded as a path event
//! the test hands to the engine when it chooses, so a test decides exactly when the
//! watcher "hears" about a change, as with Zed's fake `Fs`. For unit tests only; it never
//! touches the disk.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::clock::Clock;
use super::fs::{FileKind, FileStat, WatchFs};

/// A clock that moves only when told.
#[derive(Debug, Clone, Default)]
pub struct FakeClock {
    ms: Arc<AtomicU64>,
}

impl FakeClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: Duration) {
        self.ms.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
enum Node {
    File {
        bytes: Vec<u8>,
        mtime_ms: i64,
        /// False while "another program" holds it (a Windows sharing violation).
        openable: bool,
        placeholder: bool,
        denied: bool,
    },
    Dir {
        denied: bool,
    },
    Symlink {
        target: PathBuf,
    },
}

#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<PathBuf, Node>,
    events: Vec<PathBuf>,
}

/// The in-memory file system. Cheap to clone; clones share the tree.
#[derive(Debug, Clone)]
pub struct FakeFs {
    tree: Arc<Mutex<Tree>>,
    clock: FakeClock,
}

/// Wall-clock mtimes are the fake clock plus this (some date in 2023).
const EPOCH_MS: i64 = 1_700_000_000_000;

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", p.display()),
    )
}

fn denied(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: permission denied", p.display()),
    )
}

impl FakeFs {
    pub fn new(clock: FakeClock) -> Self {
        Self {
            tree: Arc::new(Mutex::new(Tree::default())),
            clock,
        }
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        match self.tree.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn now(&self) -> i64 {
        EPOCH_MS + self.clock.now_ms() as i64
    }

    fn ensure_parents(tree: &mut Tree, path: &Path) {
        let mut p = path.parent();
        while let Some(dir) = p {
            if dir.as_os_str().is_empty() {
                break;
            }
            tree.nodes
                .entry(dir.to_path_buf())
                .or_insert(Node::Dir { denied: false });
            p = dir.parent();
        }
    }

    /// Creates a folder (and its parents).
    pub fn mkdir(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let mut t = self.tree();
        Self::ensure_parents(&mut t, path);
        t.nodes
            .entry(path.to_path_buf())
            .or_insert(Node::Dir { denied: false });
        t.events.push(path.to_path_buf());
    }

    /// Writes a whole file (creating parents), stamping its mtime with the clock.
    pub fn write(&self, path: impl AsRef<Path>, bytes: &[u8]) {
        let path = path.as_ref();
        let now = self.now();
        let mut t = self.tree();
        Self::ensure_parents(&mut t, path);
        t.nodes.insert(
            path.to_path_buf(),
            Node::File {
                bytes: bytes.to_vec(),
                mtime_ms: now,
                openable: true,
                placeholder: false,
                denied: false,
            },
        );
        t.events.push(path.to_path_buf());
    }

    /// Appends to a file (a writer still at work).
    pub fn append(&self, path: impl AsRef<Path>, more: &[u8]) {
        let path = path.as_ref();
        let now = self.now();
        let mut t = self.tree();
        if let Some(Node::File {
            bytes, mtime_ms, ..
        }) = t.nodes.get_mut(path)
        {
            bytes.extend_from_slice(more);
            *mtime_ms = now;
        }
        t.events.push(path.to_path_buf());
    }

    /// Removes a file or a folder with everything in it.
    pub fn remove(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let mut t = self.tree();
        t.nodes.retain(|p, _| !p.starts_with(path));
        t.events.push(path.to_path_buf());
    }

    /// Renames a file or a folder (with its contents), keeping mtimes as real renames do.
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) {
        let (from, to) = (from.as_ref(), to.as_ref());
        let mut t = self.tree();
        Self::ensure_parents(&mut t, to);
        let moved: Vec<(PathBuf, Node)> = t
            .nodes
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        for (p, n) in moved {
            t.nodes.remove(&p);
            let rest = p.strip_prefix(from).unwrap_or(Path::new(""));
            let dest = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            t.nodes.insert(dest, n);
        }
        t.events.push(from.to_path_buf());
        t.events.push(to.to_path_buf());
    }

    /// Makes `path` a symbolic link to `target`.
    pub fn symlink(&self, path: impl AsRef<Path>, target: impl AsRef<Path>) {
        let path = path.as_ref();
        let mut t = self.tree();
        Self::ensure_parents(&mut t, path);
        t.nodes.insert(
            path.to_path_buf(),
            Node::Symlink {
                target: target.as_ref().to_path_buf(),
            },
        );
        t.events.push(path.to_path_buf());
    }

    /// Whether the file can be opened (false: "locked by another program").
    pub fn set_openable(&self, path: impl AsRef<Path>, open: bool) {
        if let Some(Node::File { openable, .. }) = self.tree().nodes.get_mut(path.as_ref()) {
            *openable = open;
        }
    }

    /// Whether the file is a cloud placeholder.
    pub fn set_placeholder(&self, path: impl AsRef<Path>, value: bool) {
        if let Some(Node::File { placeholder, .. }) = self.tree().nodes.get_mut(path.as_ref()) {
            *placeholder = value;
        }
    }

    /// Makes reading a file or listing a folder fail with permission denied.
    pub fn set_denied(&self, path: impl AsRef<Path>, value: bool) {
        match self.tree().nodes.get_mut(path.as_ref()) {
            Some(Node::File { denied, .. }) | Some(Node::Dir { denied }) => *denied = value,
            _ => {}
        }
    }

    /// The paths changed since the last call (what a notify watcher would report).
    pub fn take_events(&self) -> Vec<PathBuf> {
        std::mem::take(&mut self.tree().events)
    }

    /// Resolves symlinks in `path` (at most 40 hops, as the kernel's ELOOP limit).
    fn resolve(t: &Tree, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
        let mut current = path.to_path_buf();
        for _ in 0..40 {
            let mut out = PathBuf::new();
            let comps: Vec<Component> = current.components().collect();
            let mut replaced = None;
            for (i, c) in comps.iter().enumerate() {
                out.push(c);
                let last = i + 1 == comps.len();
                if let Some(Node::Symlink { target }) = t.nodes.get(&out)
                    && (!last || follow_last)
                {
                    let mut next = target.clone();
                    for rest in &comps[i + 1..] {
                        next.push(rest);
                    }
                    replaced = Some(next);
                    break;
                }
            }
            match replaced {
                Some(next) => current = next,
                None => return Ok(current),
            }
        }
        Err(io::Error::other("too many levels of symbolic links"))
    }

    fn node(&self, path: &Path) -> io::Result<Node> {
        let t = self.tree();
        let real = Self::resolve(&t, path, true)?;
        t.nodes.get(&real).cloned().ok_or_else(|| not_found(path))
    }

    fn file_bytes(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.node(path)? {
            Node::File { denied: true, .. } => Err(denied(path)),
            Node::File {
                openable: false, ..
            } => Err(io::Error::other(format!(
                "{}: used by another process",
                path.display()
            ))),
            Node::File { bytes, .. } => Ok(bytes),
            _ => Err(io::Error::other(format!("{} is a folder", path.display()))),
        }
    }
}

impl WatchFs for FakeFs {
    fn stat(&self, path: &Path) -> io::Result<FileStat> {
        let symlink = {
            let t = self.tree();
            let parent_resolved = Self::resolve(&t, path, false)?;
            matches!(t.nodes.get(&parent_resolved), Some(Node::Symlink { .. }))
        };
        let node = match self.node(path) {
            Ok(n) => n,
            Err(_) if symlink => {
                return Ok(FileStat {
                    kind: FileKind::Other,
                    size: 0,
                    mtime_ms: 0,
                    symlink,
                    hidden: false,
                    placeholder: false,
                    file_id: None,
                });
            }
            Err(e) => return Err(e),
        };
        Ok(match node {
            Node::File {
                bytes,
                mtime_ms,
                placeholder,
                ..
            } => FileStat {
                kind: FileKind::File,
                size: bytes.len() as u64,
                mtime_ms,
                symlink,
                hidden: false,
                placeholder,
                file_id: None,
            },
            Node::Dir { .. } | Node::Symlink { .. } => FileStat {
                kind: FileKind::Dir,
                size: 0,
                mtime_ms: 0,
                symlink,
                hidden: false,
                placeholder: false,
                file_id: None,
            },
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let t = self.tree();
        let real = Self::resolve(&t, path, true)?;
        match t.nodes.get(&real) {
            Some(Node::Dir { denied: true }) => return Err(denied(path)),
            Some(Node::Dir { .. }) => {}
            Some(_) => return Err(io::Error::other("not a folder")),
            None => return Err(not_found(path)),
        }
        Ok(t.nodes
            .keys()
            .filter(|p| p.parent() == Some(real.as_path()))
            .filter_map(|p| p.file_name().map(|n| path.join(n)))
            .collect())
    }

    fn open_for_reading(&self, path: &Path) -> io::Result<()> {
        self.file_bytes(path).map(|_| ())
    }

    fn sha256(&self, path: &Path) -> io::Result<String> {
        let bytes = self.file_bytes(path)?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.mkdir(path);
        Ok(())
    }

    fn move_no_clobber(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.tree().nodes.contains_key(to) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
        }
        if !self.tree().nodes.contains_key(from) {
            return Err(not_found(from));
        }
        self.rename(from, to);
        Ok(())
    }
}
