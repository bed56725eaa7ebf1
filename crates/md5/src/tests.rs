use rand::{Rng, SeedableRng};

use super::Md5;

fn hex(d: [u8; 16]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn reference(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(data).into()
}

#[test]
fn the_rfc_1321_test_suite() {
    let suite: [(&[u8], &str); 7] = [
        (b"", "d41d8cd98f00b204e9800998ecf8427e"),
        (b"a", "0cc175b9c0f1b6a831c399e269772661"),
        (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
        (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        (
            b"abcdefghijklmnopqrstuvwxyz",
            "c3fcd3d76192e4007dfb496cca67e13b",
        ),
        (
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "d174ab98d277d9f5a5611c2c9f419d9f",
        ),
        (
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a",
        ),
    ];
    for (input, want) in suite {
        assert_eq!(
            hex(Md5::digest(input)),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn every_length_around_the_padding_boundaries_matches_the_reference() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1321);
    let data: Vec<u8> = (0..400).map(|_| rng.random()).collect();
    for len in 0..=data.len() {
        assert_eq!(
            Md5::digest(&data[..len]),
            reference(&data[..len]),
            "length {len}"
        );
    }
}

#[test]
fn any_split_of_the_input_gives_the_same_digest() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let len = rng.random_range(0..5_000);
        let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let mut md5 = Md5::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = rng.random_range(0..=rest.len().min(300));
            let (head, tail) = rest.split_at(n);
            md5.update(head);
            rest = tail;
        }
        assert_eq!(md5.finalize(), reference(&data), "length {len}");
    }
}

#[test]
fn a_large_input_fed_in_uneven_pieces_matches_the_reference() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let data: Vec<u8> = (0..(3 << 20) + 17).map(|_| rng.random()).collect();
    let mut md5 = Md5::new();
    for piece in data.chunks(65_537) {
        md5.update(piece);
    }
    assert_eq!(md5.finalize(), reference(&data));
}

#[test]
fn a_clone_continues_independently() {
    let mut a = Md5::new();
    a.update(b"hello ");
    let mut b = a.clone();
    a.update(b"world");
    b.update(b"there");
    assert_eq!(a.finalize(), reference(b"hello world"));
    assert_eq!(b.finalize(), reference(b"hello there"));
}
