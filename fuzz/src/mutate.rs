//! A small seeded mutator for the bounded fuzz run in `cargo test`: no coverage feedback, but
//! stacked byte-level and token-level mutations of real inputs (the ones libFuzzer's and AFL's
//! havoc stages use), so a CI run explores well beyond the seeds without a fuzzer installed.
//! Same seed, same sequence of inputs.

/// splitmix64: small, fast, and good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Bytes that mean something to at least one of the parsers: separators, signs, digits,
/// boundaries of integer types.
const INTERESTING: &[u8] = &[
    0, 1, 2, 4, 6, 8, 16, 17, 0x20, 0x7f, 0x80, 0xfe, 0xff, b'\n', b'\r', b'\t', b' ', b'-', b'0',
    b'9', b'#', b'/', b'=', b'.', b':',
];

fn range(rng: &mut Rng, len: usize) -> (usize, usize) {
    let a = rng.below(len + 1);
    // Mostly short ranges, sometimes long ones.
    let max = if rng.one_in(4) {
        len - a
    } else {
        16.min(len - a)
    };
    (a, a + rng.below(max + 1))
}

/// Applies 1 to 16 stacked mutations to `input` (from `pool` for splices, `dict` for tokens),
/// keeping it at most `max_len` bytes.
pub fn mutate(
    rng: &mut Rng,
    input: &mut Vec<u8>,
    pool: &[Vec<u8>],
    dict: &[&[u8]],
    max_len: usize,
) {
    let rounds = 1 << rng.below(5);
    for _ in 0..rounds.min(16) {
        let len = input.len();
        match rng.below(13) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                input.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let (a, b) = range(rng, len);
                input.drain(a..b);
            }
            5 if len > 0 => {
                // Repeat a piece (a header, a record, a line) somewhere else.
                let (a, b) = range(rng, len);
                let piece = input[a..b].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, piece);
            }
            6 if !pool.is_empty() => {
                // Overwrite with a piece of another input.
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() && len > 0 {
                    let (a, b) = range(rng, other.len());
                    let at = rng.below(len);
                    let end = (at + (b - a)).min(len);
                    input[at..end].copy_from_slice(&other[a..a + (end - at)]);
                }
            }
            7 if !pool.is_empty() => {
                // Insert a piece of another input.
                let other = &pool[rng.below(pool.len())];
                let (a, b) = range(rng, other.len());
                let at = rng.below(len + 1);
                input.splice(at..at, other[a..b].iter().copied());
            }
            8 if len > 0 => {
                input.truncate(rng.below(len));
            }
            9 if len > 0 => {
                // Small arithmetic on an integer of 1, 2 or 4 bytes in either byte order.
                let w = [1, 2, 4][rng.below(3)];
                if len >= w {
                    let at = rng.below(len - w + 1);
                    let delta = rng.below(35) as i64 - 17;
                    let mut buf = [0u8; 8];
                    buf[..w].copy_from_slice(&input[at..at + w]);
                    let be = rng.one_in(2);
                    if be {
                        buf[..w].reverse();
                    }
                    let v = u64::from_le_bytes(buf).wrapping_add(delta as u64);
                    let mut out = v.to_le_bytes();
                    if be {
                        out[..w].reverse();
                    }
                    input[at..at + w].copy_from_slice(&out[..w]);
                }
            }
            10 if !dict.is_empty() => {
                let tok = dict[rng.below(dict.len())];
                let at = rng.below(len + 1);
                if rng.one_in(2) {
                    input.splice(at..at, tok.iter().copied());
                } else {
                    let end = (at + tok.len()).min(len);
                    input.splice(at..end, tok.iter().copied());
                }
            }
            11 if len > 1 => {
                // Swap two pieces (reorders records, fields).
                let (a, b) = range(rng, len);
                let (c, d) = range(rng, len);
                if b <= c || d <= a {
                    let (first, second) = if b <= c {
                        ((a, b), (c, d))
                    } else {
                        ((c, d), (a, b))
                    };
                    let mut v = input[..first.0].to_vec();
                    v.extend_from_slice(&input[second.0..second.1]);
                    v.extend_from_slice(&input[first.1..second.0]);
                    v.extend_from_slice(&input[first.0..first.1]);
                    v.extend_from_slice(&input[second.1..]);
                    *input = v;
                }
            }
            12 if len > 0 => {
                // Set an integer of 2 or 4 bytes to a boundary value.
                let w = [2, 4][rng.below(2)];
                if len >= w {
                    let at = rng.below(len - w + 1);
                    let v: u32 = [
                        0,
                        1,
                        0x7f,
                        0x80,
                        0xff,
                        0x7fff,
                        0x8000,
                        0xffff,
                        0x7fff_ffff,
                        0xffff_ffff,
                    ][rng.below(10)];
                    let b = if rng.one_in(2) {
                        v.to_le_bytes()
                    } else {
                        v.to_be_bytes()
                    };
                    input[at..at + w].copy_from_slice(&b[..w]);
                }
            }
            _ => {}
        }
    }
    input.truncate(max_len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_mutants_and_mutants_differ_from_the_seed() {
        let pool = vec![b"O 2004-08-05-16:41:37 udp a b 1 2 - -\n".to_vec()];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..200)
                .map(|_| {
                    let mut v = pool[0].clone();
                    mutate(&mut rng, &mut v, &pool, &[b"::"], 4096);
                    v
                })
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        let changed = a.iter().filter(|v| **v != pool[0]).count();
        assert!(
            changed > 150,
            "only {changed} of 200 mutants differ from the seed"
        );
    }
}
