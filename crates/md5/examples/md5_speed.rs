//! Hashing speed on one core, this crate against the `md-5` crate, over the same
//! in-memory buffer fed in 1 MiB pieces (what the transfers do). `bench/md5.sh` runs it
//! beside OpenSSL's and coreutils' MD5.
//!
//! `cargo run --release -p rohimaya-md5 --example md5_speed -- [MiB] [rounds]`

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mb = data.len() as f64 / 1e6;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let mut h = rohimaya_md5::Md5::new();
        for piece in data.chunks(1 << 20) {
            h.update(piece);
        }
        let a = h.finalize();
        ours.push(mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut h = <md5::Md5 as md5::Digest>::new();
        for piece in data.chunks(1 << 20) {
            md5::Digest::update(&mut h, piece);
        }
        let b: [u8; 16] = md5::Digest::finalize(h).into();
        theirs.push(mb / t.elapsed().as_secs_f64());
        assert_eq!(a, b, "the digests differ");
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{{\"mib\": {mib}, \"rounds\": {rounds}, \"rohimaya_md5_mb_s\": {:.0}, \"md5_crate_mb_s\": {:.0}}}",
        median(&mut ours),
        median(&mut theirs)
    );
}
