//! Writes the deterministic benchmark datasets of `scripts/bench-backup`, part compressible, part
//! random, about 1 GiB in all unless told: by default a few thousand small files and some large
//! ones; with FILES, that many files and nothing large (a home folder's shape: 20,000 files of
//! 1-100 KiB). Or changes 1% of a dataset's files in place.
//!
//!     make_dataset create DIR [MiB [FILES]]
//!     make_dataset change DIR

use std::path::Path;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Xorshift: the same bytes on every machine and every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn random(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            bytes.extend_from_slice(&self.next().to_le_bytes());
        }
        bytes.truncate(len);
        bytes
    }

    /// Text-like bytes that compress about 4:1.
    fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: [&str; 16] = [
            "subscriber ",
            "vault ",
            "spare ",
            "holder ",
            "shard ",
            "backup ",
            "the ",
            "of ",
            "and ",
            "restore ",
            "device ",
            "hub ",
            "quota ",
            "idle ",
            "snapshot ",
            "compute ",
        ];
        let mut bytes = Vec::with_capacity(len + 16);
        while bytes.len() < len {
            let word = WORDS[(self.next() % 16) as usize];
            bytes.extend_from_slice(word.as_bytes());
            if self.next().is_multiple_of(12) {
                bytes.extend_from_slice(format!("{}\n", self.next() % 100_000).as_bytes());
            }
        }
        bytes.truncate(len);
        bytes
    }
}

/// `files` files of 1 KiB up to twice their mean size, 100 to a folder, half text, half random.
fn create_many(dir: &Path, mebibytes: usize, files: usize) -> Result<()> {
    let mut noise = Noise(0x5eed_1234_abcd_0002);
    let mean = (mebibytes << 20) / files.max(1);
    let spread = (2 * mean).saturating_sub(1024).max(1) as u64;
    for n in 0..files {
        let folder = dir.join(format!("many/{:04}", n / 100));
        if n % 100 == 0 {
            std::fs::create_dir_all(&folder)?;
        }
        let len = 1024 + (noise.next() % spread) as usize;
        let bytes = if n % 2 == 0 {
            noise.text(len)
        } else {
            noise.random(len)
        };
        std::fs::write(folder.join(format!("file-{n:06}.dat")), &bytes)?;
    }
    Ok(())
}

fn create(dir: &Path, mebibytes: usize) -> Result<()> {
    let mut noise = Noise(0x5eed_1234_abcd_0001);
    let budget = mebibytes << 20;
    // Small files: about a fifth of the bytes, in 4000 files of 4-100 KiB.
    let mut written = 0;
    for n in 0..4000 {
        let folder = dir.join(format!("small/{:02}", n % 50));
        std::fs::create_dir_all(&folder)?;
        let len = 4096 + (noise.next() % (96 * 1024)) as usize;
        let bytes = if n % 2 == 0 {
            noise.text(len)
        } else {
            noise.random(len)
        };
        std::fs::write(folder.join(format!("file-{n:05}.dat")), &bytes)?;
        written += len;
    }
    // Large files for the rest, half compressible, half random.
    let mut n = 0;
    while written < budget {
        let len = (64 << 20).min(budget - written);
        let bytes = if n % 2 == 0 {
            noise.text(len)
        } else {
            noise.random(len)
        };
        std::fs::create_dir_all(dir.join("large"))?;
        std::fs::write(dir.join(format!("large/blob-{n:02}.bin")), &bytes)?;
        written += len;
        n += 1;
    }
    Ok(())
}

/// Rewrites every hundredth file of either shape with new content.
fn change(dir: &Path) -> Result<()> {
    let mut noise = Noise(0xc4a1_9e00_0000_0007);
    let mut paths = Vec::new();
    if dir.join("many").is_dir() {
        for n in (0..).step_by(100) {
            let path = dir.join(format!("many/{:04}/file-{n:06}.dat", n / 100));
            if !path.exists() {
                break;
            }
            paths.push(path);
        }
    } else {
        for n in (0..4000).step_by(100) {
            paths.push(dir.join(format!("small/{:02}/file-{n:05}.dat", n % 50)));
        }
    }
    for path in paths {
        let len = std::fs::metadata(&path)?.len() as usize;
        std::fs::write(&path, noise.random(len))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["create", dir] => create(Path::new(dir), 1024),
        ["create", dir, mebibytes] => create(Path::new(dir), mebibytes.parse()?),
        ["create", dir, mebibytes, files] => {
            create_many(Path::new(dir), mebibytes.parse()?, files.parse()?)
        }
        ["change", dir] => change(Path::new(dir)),
        _ => Err("usage: make_dataset create DIR [MiB [FILES]] | change DIR".into()),
    }
}
