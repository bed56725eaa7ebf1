//! How a file is cut for upload and what its checksums are.
//!
//! [`PartPlan`] decides single PUT or multipart and the part size (fixed when the upload
//! is created: R2 wants every part but the last of one size, so a stored plan is reused
//! as it is and never re-derived mid-upload), and how checksums are spelled: the signed
//! `Content-MD5` and the ETag the store must report. The checksums themselves are computed
//! while the file is sent, by [`super::hasher`]. It never reads a file.

use base64::Engine;
use rohimaya_md5::Md5;

pub const MIB: u64 = 1024 * 1024;
/// R2's and S3's limits.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
pub const MAX_PARTS: u64 = 10_000;
pub const MAX_SINGLE_PUT: u64 = 5 * 1024 * MIB;

/// Upload sizing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanSettings {
    /// Files smaller than this go in one PUT (default 64 MiB).
    pub multipart_threshold: u64,
    /// The preferred part size (default 16 MiB), grown only to stay under 10,000 parts.
    pub part_size: u64,
}

impl Default for PlanSettings {
    fn default() -> Self {
        Self {
            multipart_threshold: 64 * MIB,
            part_size: 16 * MIB,
        }
    }
}

/// How one file is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartPlan {
    Single { size: u64 },
    Multipart { size: u64, part_size: u64 },
}

impl PartPlan {
    /// The plan for a file of `size` bytes.
    pub fn for_size(size: u64, settings: PlanSettings) -> PartPlan {
        let threshold = settings.multipart_threshold.min(MAX_SINGLE_PUT + 1);
        if size < threshold {
            return PartPlan::Single { size };
        }
        let mut part_size = settings.part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        if size.div_ceil(part_size) > MAX_PARTS {
            // The smallest MiB multiple that keeps the count at 10,000 parts or fewer.
            part_size = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        }
        PartPlan::Multipart { size, part_size }
    }

    /// A multipart plan with a part size the server fixed (resume or `create`'s answer).
    pub fn multipart_with(size: u64, part_size: u64) -> PartPlan {
        PartPlan::Multipart { size, part_size }
    }

    pub fn size(&self) -> u64 {
        match *self {
            PartPlan::Single { size } | PartPlan::Multipart { size, .. } => size,
        }
    }

    /// The number of parts (1 for a single PUT).
    pub fn part_count(&self) -> u32 {
        match *self {
            PartPlan::Single { .. } => 1,
            PartPlan::Multipart { size, part_size } => size.div_ceil(part_size) as u32,
        }
    }

    /// Byte range `(offset, len)` of part `n` (1-based).
    pub fn part_range(&self, n: u32) -> (u64, u64) {
        match *self {
            PartPlan::Single { size } => (0, size),
            PartPlan::Multipart { size, part_size } => {
                let offset = u64::from(n - 1) * part_size;
                (offset, part_size.min(size - offset))
            }
        }
    }

    pub fn is_multipart(&self) -> bool {
        matches!(self, PartPlan::Multipart { .. })
    }
}

/// The `Content-MD5` header value of a body with this MD5: its base64.
pub fn content_md5(md5: &[u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5)
}

/// MD5 of the body for a single PUT; for multipart, MD5 of the concatenated binary part
/// MD5s, then `-N`.
pub fn expected_etag(part_md5s: &[[u8; 16]], multipart: bool) -> String {
    if !multipart {
        return part_md5s.first().map(hex::encode).unwrap_or_default();
    }
    let mut md5 = Md5::new();
    for p in part_md5s {
        md5.update(p);
    }
    format!("{}-{}", hex::encode(md5.finalize()), part_md5s.len())
}

/// An ETag as the store sends it (quoted, maybe weak) -> lower-case hex.
pub fn normalize_etag(etag: &str) -> String {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.trim_matches('"').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_around_the_boundaries() {
        let s = PlanSettings::default();
        assert_eq!(PartPlan::for_size(1, s), PartPlan::Single { size: 1 });
        assert_eq!(
            PartPlan::for_size(64 * MIB - 1, s),
            PartPlan::Single { size: 64 * MIB - 1 }
        );
        let p = PartPlan::for_size(64 * MIB, s);
        assert_eq!(
            p,
            PartPlan::Multipart {
                size: 64 * MIB,
                part_size: 16 * MIB
            }
        );
        assert_eq!(p.part_count(), 4);
        let p = PartPlan::for_size(64 * MIB + 1, s);
        assert_eq!(p.part_count(), 5);
        assert_eq!(p.part_range(5), (64 * MIB, 1));
        // Grown only to stay under 10,000 parts.
        let huge = 200 * 1024 * MIB;
        let p = PartPlan::for_size(huge, s);
        let PartPlan::Multipart { part_size, .. } = p else {
            panic!("multipart expected")
        };
        assert!(part_size > 16 * MIB && p.part_count() as u64 <= MAX_PARTS);
        assert_eq!(part_size % MIB, 0);
        // Never below 5 MiB.
        let small = PlanSettings {
            multipart_threshold: MIB,
            part_size: MIB,
        };
        assert_eq!(
            PartPlan::for_size(6 * MIB, small),
            PartPlan::Multipart {
                size: 6 * MIB,
                part_size: MIN_PART_SIZE
            }
        );
    }

    #[test]
    fn digests_and_etags() {
        let md5: [u8; 16] = Md5::digest(b"hello");
        assert_eq!(
            expected_etag(&[md5], false),
            "5d41402abc4b2a76b9719d911017c592"
        );
        assert_eq!(content_md5(&md5), "XUFAKrxLKna5cZ2REBfFkg==");
        // Multipart ETag of two parts: MD5(md5a || md5b)-2.
        let a: [u8; 16] = Md5::digest(b"a");
        let b: [u8; 16] = Md5::digest(b"b");
        let mut cat = a.to_vec();
        cat.extend_from_slice(&b);
        assert_eq!(
            expected_etag(&[a, b], true),
            format!("{}-2", hex::encode(Md5::digest(&cat)))
        );
        assert_eq!(normalize_etag("W/\"ABC\""), "abc");
    }
}
