//! The example jobs of `examples/compute`, as committed (no WebAssembly toolchain needed), run in
//! the sandbox on their sample inputs. Each output is checked against the same result computed
//! here by simpler code, and runs of the same task agree bit for bit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use surplus_sandbox::{Floats, Limits, Outcome, Run, Sandbox, Task};
use tokio::sync::watch;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/compute")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(60),
        output_bytes: 1 << 20,
    }
}

/// A task's input sits in a folder of its own, as on a donor: a copy of the sample input.
struct Input {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn input(name: &str) -> Input {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, read(&examples().join("inputs").join(name))).expect("copy the input");
    Input { _dir: dir, path }
}

async fn run(sandbox: &Sandbox, job: &str, input: &Input, args: &[&str]) -> Run {
    run_floats(sandbox, job, Floats::Native, input, args).await
}

async fn run_floats(
    sandbox: &Sandbox,
    job: &str,
    floats: Floats,
    input: &Input,
    args: &[&str],
) -> Run {
    let program = sandbox
        .program(&read(&examples().join(format!("{job}.wasm"))), floats)
        .expect("the committed module compiles");
    let task = Task {
        input_dir: input.path.parent().expect("folder").to_owned(),
        input_name: input
            .path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned(),
        args: args.iter().map(|a| a.to_string()).collect(),
        seed: 7,
    };
    let (_pause, paused) = watch::channel(false);
    sandbox
        .run(&program, &task, limits(), paused)
        .await
        .expect("runs")
}

/// `LO HI` or `N` (meaning `1 N`), as the job reads it.
fn range(text: &str) -> (u64, u64) {
    let numbers: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().expect("a number"))
        .collect();
    match numbers[..] {
        [n] => (1, n),
        [lo, hi] => (lo, hi),
        _ => panic!("not a range: {text:?}"),
    }
}

/// The primes in `lo..=hi` (count, sum modulo 2^64), by crossing off the multiples of the primes
/// up to the square root in one array over the whole window.
fn primes_in(lo: u64, hi: u64) -> (u64, u64) {
    let mut root = 0u64;
    while (root + 1) * (root + 1) <= hi {
        root += 1;
    }
    let mut small = vec![true; root as usize + 1];
    let mut window = vec![true; (hi - lo + 1) as usize];
    for n in lo..=hi.min(1) {
        window[(n - lo) as usize] = false;
    }
    for p in 2..=root {
        if !small[p as usize] {
            continue;
        }
        for m in (p * p..=root).step_by(p as usize) {
            small[m as usize] = false;
        }
        let first = (p * p).max(lo.div_ceil(p) * p);
        for m in (first..=hi).step_by(p as usize) {
            window[(m - lo) as usize] = false;
        }
    }
    window
        .iter()
        .zip(lo..)
        .filter(|(prime, _)| **prime)
        .fold((0, 0), |(count, sum), (_, n)| {
            (count + 1, sum.wrapping_add(n))
        })
}

/// The `top` most frequent words (0: all), by count and then word, as `COUNT\tWORD` lines.
fn word_frequencies(text: &[u8], top: usize) -> String {
    let mut counts = BTreeMap::<String, u64>::new();
    for word in text.split(|b| !b.is_ascii_alphanumeric()) {
        if !word.is_empty() {
            *counts
                .entry(String::from_utf8_lossy(word).to_ascii_lowercase())
                .or_default() += 1;
        }
    }
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    // Stable, and the map gave the words in order: equal counts stay by word.
    counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    if top > 0 {
        counts.truncate(top);
    }
    counts
        .iter()
        .map(|(word, count)| format!("{count}\t{word}\n"))
        .collect()
}

/// The image `mandelbrot` draws for `WIDTH HEIGHT MAX_ITER [X0 Y0 X1 Y1]`, as a binary PGM: each
/// pixel's centre iterated `z = z^2 + c` from 0 until `|z|^2 > 4` or `MAX_ITER` steps, black if
/// it never escaped, else `255 * sqrt(sqrt(steps / MAX_ITER))` rounded down. The same f64
/// operations in the same order, each correctly rounded, so the same bytes as the job's.
fn mandelbrot_pgm(text: &str) -> Vec<u8> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let width: u32 = words[0].parse().expect("WIDTH");
    let height: u32 = words[1].parse().expect("HEIGHT");
    let max_iter: u32 = words[2].parse().expect("MAX_ITER");
    let view: Vec<f64> = match words[3..] {
        [] => vec![-2.0, -1.5, 1.0, 1.5],
        _ => words[3..]
            .iter()
            .map(|w| w.parse().expect("a number"))
            .collect(),
    };
    let [x0, y0, x1, y1] = view[..] else {
        panic!("not a view: {text:?}")
    };
    let (dx, dy) = ((x1 - x0) / width as f64, (y1 - y0) / height as f64);
    let mut pgm = format!("P5\n{width} {height}\n255\n").into_bytes();
    for row in 0..height {
        let ci = y1 - (row as f64 + 0.5) * dy;
        for column in 0..width {
            let cr = x0 + (column as f64 + 0.5) * dx;
            let (mut zr, mut zi) = (0.0f64, 0.0f64);
            let steps = (0..max_iter)
                .find(|_| {
                    let (rr, ii) = (zr * zr, zi * zi);
                    if rr + ii > 4.0 {
                        return true;
                    }
                    zi = 2.0 * zr * zi + ci;
                    zr = rr - ii + cr;
                    false
                })
                .unwrap_or(max_iter);
            pgm.push(if steps == max_iter {
                0
            } else {
                (255.0 * (steps as f64 / max_iter as f64).sqrt().sqrt()) as u8
            });
        }
    }
    pgm
}

/// An input of our own, in a folder of its own.
fn input_text(name: &str, text: &str) -> Input {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("input");
    Input { _dir: dir, path }
}

#[tokio::test]
async fn primes_counts_the_primes_of_each_sample_range() {
    let sandbox = Sandbox::new(None).expect("sandbox");
    for name in ["range-1.txt", "range-2.txt", "range-3.txt", "range-4.txt"] {
        let input = input(name);
        let (lo, hi) = range(&String::from_utf8_lossy(&read(&input.path)));
        let (count, sum) = primes_in(lo, hi);
        let run = run(&sandbox, "primes", &input, &[]).await;
        assert_eq!(run.outcome, Outcome::Success, "{name}");
        assert_eq!(
            String::from_utf8_lossy(&run.output),
            format!("range {lo} {hi}\ncount {count}\nsum {sum}\n"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn primes_refuses_a_malformed_range() {
    let sandbox = Sandbox::new(None).expect("sandbox");
    let input = input_text("bad.txt", "ten twenty");
    let run = run(&sandbox, "primes", &input, &[]).await;
    assert_eq!(run.outcome, Outcome::Exit(2));
    assert!(run.output.is_empty());
}

#[tokio::test]
async fn mandelbrot_draws_the_same_image_as_the_test() {
    let sandbox = Sandbox::new(None).expect("sandbox");
    for (text, width, height) in [
        ("64 48 200\n", 64, 48),
        ("90 70 300 -0.76 0.095 -0.73 0.1175\n", 90, 70),
        ("33 1 50 -2 -0.01 0.5 0.01", 33, 1),
    ] {
        let input = input_text("view.txt", text);
        // Floats as the hardware does them, and with NaNs canonicalised: the same image.
        for floats in [Floats::Native, Floats::Portable] {
            let run = run_floats(&sandbox, "mandelbrot", floats, &input, &[]).await;
            assert_eq!(run.outcome, Outcome::Success, "{text:?} {floats:?}");
            let header = format!("P5\n{width} {height}\n255\n");
            assert!(run.output.starts_with(header.as_bytes()), "{text:?}");
            assert_eq!(run.output.len(), header.len() + width * height, "{text:?}");
            let expected = mandelbrot_pgm(text);
            assert!(
                run.output == expected,
                "{text:?} {floats:?}: the images differ"
            );
        }
    }
    // Not a blank image: both the set (black) and a range of greys around it.
    let image = &mandelbrot_pgm("64 48 200")["P5\n64 48\n255\n".len()..];
    assert!(image.contains(&0));
    let greys: std::collections::BTreeSet<u8> = image.iter().copied().collect();
    assert!(greys.len() > 20, "{} greys", greys.len());
}

#[tokio::test]
async fn mandelbrot_draws_each_sample_view() {
    let sandbox = Sandbox::new(None).expect("sandbox");
    for name in [
        "mandel-1.txt",
        "mandel-2.txt",
        "mandel-3.txt",
        "mandel-4.txt",
    ] {
        let input = input(name);
        let run = run(&sandbox, "mandelbrot", &input, &[]).await;
        assert_eq!(run.outcome, Outcome::Success, "{name}");
        let expected = mandelbrot_pgm(&String::from_utf8_lossy(&read(&input.path)));
        assert!(run.output == expected, "{name}: the images differ");
    }
}

#[tokio::test]
async fn mandelbrot_refuses_a_malformed_input() {
    let sandbox = Sandbox::new(None).expect("sandbox");
    for text in [
        "",
        "64 48",
        "0 48 100",
        "64 48 100 -2 -1.5 1",
        "64 48 100 1 -1.5 -2 1.5",
        "64 48 100 -2 -1.5 1 inf",
        "100000 100000 10",
    ] {
        let input = input_text("bad.txt", text);
        let run = run(&sandbox, "mandelbrot", &input, &[]).await;
        assert_eq!(run.outcome, Outcome::Exit(2), "{text:?}");
        assert!(run.output.is_empty(), "{text:?}");
    }
}

#[tokio::test]
async fn wordfreq_prints_the_most_frequent_words() {
    let sandbox = Sandbox::new(None).expect("sandbox");
    for name in ["harbour.txt", "ledger.txt"] {
        let input = input(name);
        let text = read(&input.path);
        for (args, top) in [
            (&[][..], 10),
            (&["--top", "3"][..], 3),
            (&["--top", "0"][..], 0),
        ] {
            let run = run(&sandbox, "wordfreq", &input, args).await;
            assert_eq!(run.outcome, Outcome::Success, "{name} {args:?}");
            let expected = word_frequencies(&text, top);
            assert_eq!(
                String::from_utf8_lossy(&run.output),
                expected,
                "{name} {args:?}"
            );
        }
    }
    let run = run(&sandbox, "wordfreq", &input("ledger.txt"), &["--bogus"]).await;
    assert_eq!(run.outcome, Outcome::Exit(2));
}

#[tokio::test]
async fn wordfreq_reads_its_input_from_the_input_folder_too() {
    let sandbox = Sandbox::new(None).expect("sandbox");
    let input = input("harbour.txt");
    let from_stdin = run(&sandbox, "wordfreq", &input, &["--top", "0"]).await;
    let from_file = run(&sandbox, "wordfreq", &input, &["--top", "0", "--from-file"]).await;
    assert_eq!(from_file.outcome, Outcome::Success);
    assert_eq!(
        String::from_utf8_lossy(&from_file.output),
        word_frequencies(&read(&input.path), 0)
    );
    assert_eq!(from_file.output, from_stdin.output);
}

#[tokio::test]
async fn runs_of_the_same_task_agree_bit_for_bit() {
    // Each run on a sandbox of its own, as on two donors.
    let first = Sandbox::new(None).expect("sandbox");
    let second = Sandbox::new(None).expect("sandbox");
    for (job, name, args) in [
        ("primes", "range-3.txt", &[][..]),
        ("mandelbrot", "mandel-2.txt", &[][..]),
        ("wordfreq", "harbour.txt", &["--top", "0"][..]),
        ("wordfreq", "ledger.txt", &["--top", "0", "--from-file"][..]),
    ] {
        let input = input(name);
        let a = run(&first, job, &input, args).await;
        let b = run(&second, job, &input, args).await;
        assert_eq!(a.outcome, Outcome::Success, "{job} {name}");
        assert!(!a.output.is_empty(), "{job} {name}");
        assert_eq!(a.output, b.output, "{job} {name}");
    }
}
