//! Counts the primes in a range: a CPU-bound Surplus compute job.
//!
//! Standard input holds the range as text: `LO HI` (both included) or a single `N`, meaning
//! `1 N`. The output is three lines: the range, the number of primes in it, and the sum of those
//! primes modulo 2^64, which makes a cheap checksum of which primes were found.
//!
//! The kernel is a segmented sieve of Eratosthenes over the odd numbers: the primes up to the
//! square root of `HI` are found first, then the range is sieved one cache-sized segment at a
//! time, each base prime remembering where its next multiple falls.

use std::io::{Read, Write};
use std::process::ExitCode;

/// Odd numbers per segment, one byte each: fits the first-level data cache.
const SEGMENT: usize = 1 << 15;

/// The largest `HI` accepted: its base primes (up to 10^7) take a few MB.
const MAX_HI: u64 = 100_000_000_000_000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("primes: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    if let Some(arg) = std::env::args().nth(1) {
        return Err(format!(
            "unexpected argument {arg:?}: the range is read from standard input"
        ));
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("reading standard input: {e}"))?;
    let (lo, hi) = parse_range(&text)?;
    let (count, sum) = count_primes(lo, hi);
    let mut out = std::io::stdout().lock();
    writeln!(out, "range {lo} {hi}\ncount {count}\nsum {sum}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the result: {e}"))
}

/// `LO HI` or `N` (meaning `1 N`).
fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let numbers = text
        .split_whitespace()
        .map(|word| {
            word.parse::<u64>()
                .map_err(|_| format!("{word:?} is not a whole number"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (lo, hi) = match numbers[..] {
        [n] => (1, n),
        [lo, hi] => (lo, hi),
        _ => return Err("expected `LO HI` or `N` on standard input".into()),
    };
    if lo > hi {
        return Err(format!("the range {lo} {hi} is empty: LO is above HI"));
    }
    if hi > MAX_HI {
        return Err(format!("HI may be at most {MAX_HI}"));
    }
    Ok((lo, hi))
}

/// The number of primes in `lo..=hi` and their sum modulo 2^64.
fn count_primes(lo: u64, hi: u64) -> (u64, u64) {
    let (mut count, mut sum) = (0u64, 0u64);
    if lo <= 2 && 2 <= hi {
        count = 1;
        sum = 2;
    }
    // The first odd number of the range that could be an odd prime.
    let first = lo.max(3) | 1;
    if first > hi {
        return (count, sum);
    }
    let base = odd_primes_up_to(isqrt(hi));
    // For each base prime p, the index (in odd numbers from the current segment's start) of the
    // next multiple of p to cross off: the first odd multiple at least p*p and at least `first`.
    let mut next: Vec<u64> = base
        .iter()
        .map(|&p| {
            let p = u64::from(p);
            let mut multiple = (p * p).max(first.div_ceil(p) * p);
            if multiple % 2 == 0 {
                multiple += p;
            }
            (multiple - first) / 2
        })
        .collect();
    let mut segment = vec![0u8; SEGMENT];
    let mut start = first;
    loop {
        let len = ((hi - start) / 2 + 1).min(SEGMENT as u64) as usize;
        let sieve = &mut segment[..len];
        sieve.fill(1);
        for (&p, next) in base.iter().zip(next.iter_mut()) {
            if *next >= len as u64 {
                *next -= len as u64;
                continue;
            }
            let p = p as usize;
            let mut j = *next as usize;
            while j < len {
                sieve[j] = 0;
                j += p;
            }
            *next = (j - len) as u64;
        }
        for (i, &is_prime) in sieve.iter().enumerate() {
            if is_prime != 0 {
                count += 1;
                sum = sum.wrapping_add(start + 2 * i as u64);
            }
        }
        let covered = 2 * len as u64;
        if hi - start < covered {
            break;
        }
        start += covered;
    }
    (count, sum)
}

/// The odd primes up to `limit`, by a plain sieve over the odd numbers.
fn odd_primes_up_to(limit: u64) -> Vec<u32> {
    if limit < 3 {
        return Vec::new();
    }
    let limit = limit as usize;
    // composite[i] stands for 2i + 1.
    let mut composite = vec![false; limit / 2 + 1];
    let mut primes = Vec::new();
    for i in 1..composite.len() {
        if composite[i] {
            continue;
        }
        let p = 2 * i + 1;
        if p > limit {
            break;
        }
        primes.push(p as u32);
        // p * p in u64: on wasm32 a usize has 32 bits.
        let square = p as u64 * p as u64;
        if square > limit as u64 {
            continue;
        }
        let mut j = (square / 2) as usize;
        while j < composite.len() {
            composite[j] = true;
            j += p;
        }
    }
    primes
}

/// The integer square root, exactly.
fn isqrt(n: u64) -> u64 {
    let mut r = (n as f64).sqrt() as u64;
    while r * r > n {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}
