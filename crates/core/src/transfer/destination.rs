//! Where a download may land: inside the library folder, whatever the caller or the
//! server said. A destination is resolved component by component under the library root:
//! no `..`, `.`, drive or root components, no file system link leading out of the root,
//! no link as the file itself; missing folders under the root are created one by one
//! (never through a link that leaves it).
//!
//! It owns that check and the `.part` name. It never sanitizes names (the library's
//! layout does that before asking) and never writes a file.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// A checked destination: its folder (canonical, inside the root), the final path and
/// the `.part` path beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub dir: PathBuf,
    pub path: PathBuf,
    pub part: PathBuf,
}

/// Why a destination was refused.
#[derive(Debug)]
pub enum Refused {
    /// Not inside the root (the reason says how).
    Outside(String),
    /// The folders could not be created or read.
    Io(io::Error),
}

/// Resolves `dest` (absolute, or relative to `root`) inside `root`, creating `root` and
/// the missing folders under it.
pub fn resolve(root: &Path, dest: &Path) -> Result<Destination, Refused> {
    std::fs::create_dir_all(root).map_err(Refused::Io)?;
    let root_real = root.canonicalize().map_err(Refused::Io)?;
    let relative: PathBuf = if dest.is_absolute() {
        match dest
            .strip_prefix(root)
            .or_else(|_| dest.strip_prefix(&root_real))
        {
            Ok(r) => r.to_path_buf(),
            Err(_) => {
                return Err(Refused::Outside(format!(
                    "{} is not inside the library folder {}",
                    dest.display(),
                    root.display()
                )));
            }
        }
    } else {
        dest.to_path_buf()
    };
    let mut names: Vec<OsString> = Vec::new();
    for c in relative.components() {
        match c {
            Component::Normal(n) => names.push(n.to_os_string()),
            other => {
                return Err(Refused::Outside(format!(
                    "{} has a {:?} component; only plain names are allowed under the library folder",
                    dest.display(),
                    other.as_os_str()
                )));
            }
        }
    }
    let Some(file_name) = names.pop() else {
        return Err(Refused::Outside(format!(
            "{} names no file inside the library folder",
            dest.display()
        )));
    };
    let mut dir = root_real.clone();
    for name in names {
        let next = dir.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.is_dir() => dir = next,
            Ok(m) if m.file_type().is_symlink() => {
                let real = next.canonicalize().map_err(Refused::Io)?;
                if !real.starts_with(&root_real) || !real.is_dir() {
                    return Err(Refused::Outside(format!(
                        "{} is a link leading out of the library folder",
                        next.display()
                    )));
                }
                dir = real;
            }
            Ok(_) => {
                return Err(Refused::Io(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is a file, not a folder", next.display()),
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match std::fs::create_dir(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Refused::Io(e)),
                }
                dir = next;
            }
            Err(e) => return Err(Refused::Io(e)),
        }
    }
    let path = dir.join(&file_name);
    let mut part_name = file_name;
    part_name.push(".part");
    let part = dir.join(part_name);
    for p in [&path, &part] {
        if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Refused::Outside(format!(
                "{} is a link; downloads never write through links",
                p.display()
            )));
        }
    }
    Ok(Destination { dir, path, part })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outside(r: Result<Destination, Refused>) -> bool {
        matches!(r, Err(Refused::Outside(_)))
    }

    #[test]
    fn stays_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = tmp.path().join("Library");
        let d = resolve(&root, Path::new("Ann/Book/Book.wav")).unwrap_or_else(|e| panic!("{e:?}"));
        let real = root.canonicalize().unwrap_or_default();
        assert_eq!(d.dir, real.join("Ann").join("Book"));
        assert_eq!(d.part, real.join("Ann/Book/Book.wav.part"));
        assert!(d.dir.is_dir());
        let abs = resolve(&root, &root.join("Ann/x.wav")).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(abs.path, real.join("Ann/x.wav"));

        assert!(outside(resolve(&root, Path::new("../x.wav"))));
        assert!(outside(resolve(&root, Path::new("Ann/../../x.wav"))));
        assert!(outside(resolve(&root, &tmp.path().join("elsewhere.wav"))));
        // `.` in the middle is dropped by the path parser: still inside.
        let dot = resolve(&root, Path::new("Ann/./x.wav")).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(dot.path, real.join("Ann/x.wav"));
        assert!(outside(resolve(&root, Path::new("."))));
        assert!(outside(resolve(&root, Path::new(""))));
        assert!(!tmp.path().join("x.wav").exists());
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_root_are_refused() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = tmp.path().join("Library");
        let out = tmp.path().join("outside");
        std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&out, root.join("Escape")).unwrap_or_else(|e| panic!("{e}"));
        assert!(outside(resolve(&root, Path::new("Escape/New/x.wav"))));
        assert!(!out.join("New").exists(), "nothing created outside");
        std::os::unix::fs::symlink(out.join("f"), root.join("f.wav"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(outside(resolve(&root, Path::new("f.wav"))));
        // A link that stays inside is fine.
        std::fs::create_dir_all(root.join("Real")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(root.join("Real"), root.join("Alias"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(resolve(&root, Path::new("Alias/x.wav")).is_ok());
    }
}
