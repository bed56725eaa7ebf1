//! Free disk space before a download: how much the file system holding the destination
//! has for this user, behind [`SpaceProbe`] so tests can pretend a disk is nearly full.
//!
//! It owns the probe and the "size + margin" rule. It never writes anything and never
//! fails a download because the probe itself cannot answer (some network file systems
//! cannot tell): then the download goes on and a full disk shows as a write error.

use std::fmt::Debug;
use std::path::Path;

/// How much free space a directory's file system has for this user.
pub trait SpaceProbe: Send + Sync + Debug {
    fn available_bytes(&self, dir: &Path) -> std::io::Result<u64>;
}

/// The real probe (`statvfs` / `GetDiskFreeSpaceExW` through `fs4`).
#[derive(Debug, Default, Clone, Copy)]
pub struct DiskSpace;

impl SpaceProbe for DiskSpace {
    fn available_bytes(&self, dir: &Path) -> std::io::Result<u64> {
        fs4::available_space(dir)
    }
}

/// A probe that always reports the same number (tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedSpace(pub u64);

impl SpaceProbe for FixedSpace {
    fn available_bytes(&self, _dir: &Path) -> std::io::Result<u64> {
        Ok(self.0)
    }
}

/// Room kept free beside a download: 1% of it, at least 32 MiB, at most 1 GiB.
pub fn margin_for(bytes: u64) -> u64 {
    (bytes / 100).clamp(32 << 20, 1 << 30)
}

/// `Err((needed, available))` when `dir` has less than `bytes` + margin free.
pub fn check(probe: &dyn SpaceProbe, dir: &Path, bytes: u64) -> Result<(), (u64, u64)> {
    let needed = bytes.saturating_add(margin_for(bytes));
    match probe.available_bytes(dir) {
        Ok(available) if available < needed => Err((needed, available)),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::debug!("cannot tell the free space of {}: {e}", dir.display());
            Ok(())
        }
    }
}

/// `bytes` for people: "1.5 GB", "320 MB", "12 KB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_and_check() {
        assert_eq!(margin_for(0), 32 << 20);
        assert_eq!(margin_for(10 << 30), (10u64 << 30) / 100);
        assert_eq!(margin_for(1 << 50), 1 << 30);
        let dir = Path::new(".");
        assert!(check(&FixedSpace(u64::MAX), dir, 1 << 30).is_ok());
        assert_eq!(
            check(&FixedSpace(10), dir, 100),
            Err((100 + (32 << 20), 10))
        );
        assert!(DiskSpace.available_bytes(dir).is_ok_and(|n| n > 0));
        assert_eq!(human(999), "999 bytes");
        assert_eq!(human(1_500_000_000), "1.5 GB");
        assert_eq!(human(320_000_000), "320 MB");
    }
}
