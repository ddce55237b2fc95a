//! Counts the words of a text: a data-processing Surplus compute job.
//!
//! A word is a run of ASCII letters and digits, lower-cased; every other byte separates words.
//! The output is the most frequent words, one `COUNT<TAB>WORD` line each, by count (highest
//! first) and then by word, so it is the same on every run.
//!
//! Options (the job's arguments):
//!   --top N       print the N most frequent words (default 10; 0 prints them all)
//!   --from-file   read the input from `/input/NAME` instead of standard input, NAME being the
//!                 input's name, which a Surplus task gets as its `argv[0]`

use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wordfreq: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args();
    let name = args.next().unwrap_or_default();
    let mut top = 10usize;
    let mut from_file = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--top" => {
                let n = args.next().ok_or("--top needs a number")?;
                top = n
                    .parse()
                    .map_err(|_| format!("--top {n:?}: not a whole number"))?;
            }
            "--from-file" => from_file = true,
            _ => {
                return Err(format!(
                    "unknown argument {arg:?} (expected --top N, --from-file)"
                ));
            }
        }
    }
    let text = if from_file {
        let file = Path::new(&name)
            .file_name()
            .ok_or_else(|| format!("argv[0] {name:?} names no file"))?;
        let path = PathBuf::from("/input").join(file);
        std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?
    } else {
        let mut text = Vec::new();
        std::io::stdin()
            .read_to_end(&mut text)
            .map_err(|e| format!("reading standard input: {e}"))?;
        text
    };

    let mut counts = count_words(&text).into_iter().collect::<Vec<_>>();
    // Words are distinct, so this order is total: nothing of the map's order shows through.
    counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if top > 0 {
        counts.truncate(top);
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (word, count) in &counts {
        write!(out, "{count}\t")
            .and_then(|()| out.write_all(word))
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| format!("writing the result: {e}"))?;
    }
    out.flush().map_err(|e| format!("writing the result: {e}"))
}

/// Each lower-cased word and how many times it occurs.
fn count_words(text: &[u8]) -> HashMap<Vec<u8>, u64> {
    let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut word = Vec::new();
    for &byte in text.iter().chain(std::iter::once(&b' ')) {
        if byte.is_ascii_alphanumeric() {
            word.push(byte.to_ascii_lowercase());
        } else if !word.is_empty() {
            match counts.get_mut(&word) {
                Some(count) => *count += 1,
                None => {
                    counts.insert(word.clone(), 1);
                }
            }
            word.clear();
        }
    }
    counts
}
