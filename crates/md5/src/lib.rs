//! MD5 (RFC 1321), computed as fast as one core allows: S3 and R2 answer a plain object's
//! ETag with its MD5, so every upload part is signed with one and every download is checked
//! against one, and that hashing is what a transfer spends most of its CPU on.
//!
//! It owns the digest arithmetic and nothing else: it never reads files, never decides what
//! to compare, and is not for anything that needs a secure hash (MD5 is broken for that;
//! dedupe uses SHA-256).
//!
//! Why not the `md-5` crate: the same algorithm runs ~30 % faster here (about OpenSSL's
//! speed, with no C or assembly; `bench/md5.sh` measures it). Each step's critical path is
//! `b` -> round function -> add -> rotate -> add. Everything that does not depend on `b`
//! (the previous `a`, the message word, the round constant and, in round 2, `c & !d`) is
//! added first, off that path. The compiler would otherwise add the constant last, on the
//! path, so the constants reach [`compress`] through an opaque reference. The round
//! functions use their shortest forms: F = `((c ^ d) & b) ^ d`, G = `(c & !d) + (b & d)`
//! (the two halves never share a bit, so `+` is `|`), I = `c ^ (b | !d)`.

/// The per-step constants: `floor(abs(sin(i + 1)) * 2^32)`.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// The rotations of each round's four steps.
const S: [[u32; 4]; 4] = [
    [7, 12, 17, 22],
    [5, 9, 14, 20],
    [4, 11, 16, 23],
    [6, 10, 15, 21],
];

/// The initial state.
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// A digest in progress: feed it with [`Md5::update`], read it with [`Md5::finalize`].
#[derive(Clone)]
pub struct Md5 {
    state: [u32; 4],
    /// The start of a block that `update` has not completed yet.
    pending: [u8; 64],
    pending_len: usize,
    /// Bytes fed so far (modulo 2^64, as RFC 1321 counts).
    len: u64,
}

impl Default for Md5 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Md5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Md5")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Md5 {
    pub fn new() -> Self {
        Md5 {
            state: INIT,
            pending: [0; 64],
            pending_len: 0,
            len: 0,
        }
    }

    /// The MD5 of `data`.
    pub fn digest(data: &[u8]) -> [u8; 16] {
        let mut md5 = Md5::new();
        md5.update(data);
        md5.finalize()
    }

    /// Feeds `data`; any split of the same bytes gives the same digest.
    pub fn update(&mut self, data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u64);
        let k = std::hint::black_box(&K);
        let mut data = data;
        if self.pending_len > 0 {
            let take = (64 - self.pending_len).min(data.len());
            let (head, rest) = data.split_at(take);
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(head);
            self.pending_len += take;
            data = rest;
            if self.pending_len < 64 {
                return;
            }
            compress(&mut self.state, &self.pending, k);
            self.pending_len = 0;
        }
        let (blocks, rest) = data.as_chunks::<64>();
        for block in blocks {
            compress(&mut self.state, block, k);
        }
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// The digest of everything fed.
    pub fn finalize(mut self) -> [u8; 16] {
        let bits = self.len.wrapping_mul(8);
        // 0x80, then zeros up to 56 bytes into a block, then the length in bits.
        let pad = if self.pending_len < 56 {
            56 - self.pending_len
        } else {
            120 - self.pending_len
        };
        let mut tail = [0u8; 72];
        tail[0] = 0x80;
        tail[pad..pad + 8].copy_from_slice(&bits.to_le_bytes());
        self.update(&tail[..pad + 8]);
        debug_assert_eq!(self.pending_len, 0);
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

#[inline(always)]
fn f(a: u32, b: u32, c: u32, d: u32, mk: u32, s: u32) -> u32 {
    let t = a.wrapping_add(mk);
    b.wrapping_add(t.wrapping_add(((c ^ d) & b) ^ d).rotate_left(s))
}

#[inline(always)]
fn g(a: u32, b: u32, c: u32, d: u32, mk: u32, s: u32) -> u32 {
    let t = a.wrapping_add(mk).wrapping_add(c & !d);
    b.wrapping_add(t.wrapping_add(b & d).rotate_left(s))
}

#[inline(always)]
fn h(a: u32, b: u32, c: u32, d: u32, mk: u32, s: u32) -> u32 {
    let t = a.wrapping_add(mk);
    b.wrapping_add(t.wrapping_add((c ^ d) ^ b).rotate_left(s))
}

#[inline(always)]
fn i(a: u32, b: u32, c: u32, d: u32, mk: u32, s: u32) -> u32 {
    let t = a.wrapping_add(mk);
    b.wrapping_add(t.wrapping_add(c ^ (b | !d)).rotate_left(s))
}

/// Four steps of round `$r` (constants from step `$j`), on message words `$x`.
macro_rules! four {
    ($op:ident, $st:ident, $m:ident, $k:ident, $r:literal, $j:literal, [$x0:literal, $x1:literal, $x2:literal, $x3:literal]) => {
        let [a, b, c, d] = &mut $st;
        *a = $op(
            *a,
            *b,
            *c,
            *d,
            $m[$x0].wrapping_add($k[$r * 16 + $j]),
            S[$r][0],
        );
        *d = $op(
            *d,
            *a,
            *b,
            *c,
            $m[$x1].wrapping_add($k[$r * 16 + $j + 1]),
            S[$r][1],
        );
        *c = $op(
            *c,
            *d,
            *a,
            *b,
            $m[$x2].wrapping_add($k[$r * 16 + $j + 2]),
            S[$r][2],
        );
        *b = $op(
            *b,
            *c,
            *d,
            *a,
            $m[$x3].wrapping_add($k[$r * 16 + $j + 3]),
            S[$r][3],
        );
    };
}

/// One 64-byte block into `state`. `k` is [`K`], passed so that the compiler cannot fold
/// the constants into the critical path (see the module's doc).
#[inline(always)]
fn compress(state: &mut [u32; 4], block: &[u8; 64], k: &[u32; 64]) {
    let m: [u32; 16] = std::array::from_fn(|n| {
        u32::from_le_bytes([
            block[4 * n],
            block[4 * n + 1],
            block[4 * n + 2],
            block[4 * n + 3],
        ])
    });
    let mut st = *state;
    four!(f, st, m, k, 0, 0, [0, 1, 2, 3]);
    four!(f, st, m, k, 0, 4, [4, 5, 6, 7]);
    four!(f, st, m, k, 0, 8, [8, 9, 10, 11]);
    four!(f, st, m, k, 0, 12, [12, 13, 14, 15]);
    four!(g, st, m, k, 1, 0, [1, 6, 11, 0]);
    four!(g, st, m, k, 1, 4, [5, 10, 15, 4]);
    four!(g, st, m, k, 1, 8, [9, 14, 3, 8]);
    four!(g, st, m, k, 1, 12, [13, 2, 7, 12]);
    four!(h, st, m, k, 2, 0, [5, 8, 11, 14]);
    four!(h, st, m, k, 2, 4, [1, 4, 7, 10]);
    four!(h, st, m, k, 2, 8, [13, 0, 3, 6]);
    four!(h, st, m, k, 2, 12, [9, 12, 15, 2]);
    four!(i, st, m, k, 3, 0, [0, 7, 14, 5]);
    four!(i, st, m, k, 3, 4, [12, 3, 10, 1]);
    four!(i, st, m, k, 3, 8, [8, 15, 6, 13]);
    four!(i, st, m, k, 3, 12, [4, 11, 2, 9]);
    for (s, v) in state.iter_mut().zip(st) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests;
