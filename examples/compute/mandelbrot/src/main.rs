//! Renders the Mandelbrot set: a floating-point-heavy Surplus compute job.
//!
//! Standard input holds `WIDTH HEIGHT MAX_ITER`, optionally followed by the view `X0 Y0 X1 Y1`
//! (the corners of the rectangle of the complex plane to draw; by default `-2.0 -1.5 1.0 1.5`).
//! The output is a binary PGM image (`P5`, 8-bit greys), the top row first.
//!
//! Each pixel is sampled at its centre: pixel `(px, py)` stands for `c = cx + i cy` with
//! `cx = X0 + (px + 0.5) * ((X1 - X0) / WIDTH)` and `cy = Y1 - (py + 0.5) * ((Y1 - Y0) / HEIGHT)`.
//! Escape-time iteration from `z = 0`: while fewer than `MAX_ITER` steps were taken and
//! `x*x + y*y <= 4`, `y = 2*x*y + cy` and `x = x*x - y*y + cx` (with the old `x` and `y`). A pixel
//! that never escapes is black (0); one that escaped after `n` steps gets the grey
//! `floor(255 * sqrt(sqrt(n / MAX_ITER)))`. Every operation is a correctly rounded IEEE 754 one
//! in f64 (Rust never fuses or reorders them), so the image is the same bytes on every machine.

use std::io::{BufWriter, Read, Write};
use std::process::ExitCode;

/// The largest image accepted, in pixels (16 MB of output).
const MAX_PIXELS: u64 = 1 << 24;

/// The view drawn when the input names none.
const DEFAULT_VIEW: View = View {
    x0: -2.0,
    y0: -1.5,
    x1: 1.0,
    y1: 1.5,
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mandelbrot: {message}");
            ExitCode::from(2)
        }
    }
}

/// What to draw.
struct Image {
    width: u32,
    height: u32,
    max_iter: u32,
    view: View,
}

/// A rectangle of the complex plane: `x` the real part, `y` the imaginary part.
struct View {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

fn run() -> Result<(), String> {
    if let Some(arg) = std::env::args().nth(1) {
        return Err(format!(
            "unexpected argument {arg:?}: the image is described on standard input"
        ));
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("reading standard input: {e}"))?;
    let image = parse(&text)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    render(&image, &mut out)
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the image: {e}"))
}

/// `WIDTH HEIGHT MAX_ITER [X0 Y0 X1 Y1]`.
fn parse(text: &str) -> Result<Image, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() != 3 && words.len() != 7 {
        return Err("expected `WIDTH HEIGHT MAX_ITER [X0 Y0 X1 Y1]` on standard input".into());
    }
    let whole = |word: &str| {
        word.parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{word:?} is not a positive whole number"))
    };
    let (width, height, max_iter) = (whole(words[0])?, whole(words[1])?, whole(words[2])?);
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(format!(
            "{width}x{height} is too large: at most {MAX_PIXELS} pixels"
        ));
    }
    let view = if words.len() == 7 {
        let real = |word: &str| {
            word.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{word:?} is not a finite number"))
        };
        View {
            x0: real(words[3])?,
            y0: real(words[4])?,
            x1: real(words[5])?,
            y1: real(words[6])?,
        }
    } else {
        DEFAULT_VIEW
    };
    if !(view.x0 < view.x1 && view.y0 < view.y1) {
        return Err("the view `X0 Y0 X1 Y1` needs X0 < X1 and Y0 < Y1".into());
    }
    Ok(Image {
        width,
        height,
        max_iter,
        view,
    })
}

/// Writes the image as a binary PGM, one row at a time.
fn render(image: &Image, out: &mut impl Write) -> std::io::Result<()> {
    let View { x0, y0, x1, y1 } = image.view;
    write!(out, "P5\n{} {}\n255\n", image.width, image.height)?;
    let step_x = (x1 - x0) / f64::from(image.width);
    let step_y = (y1 - y0) / f64::from(image.height);
    let mut row = vec![0u8; image.width as usize];
    for py in 0..image.height {
        let cy = y1 - (f64::from(py) + 0.5) * step_y;
        for (px, grey) in (0u32..).zip(row.iter_mut()) {
            let cx = x0 + (f64::from(px) + 0.5) * step_x;
            *grey = shade(escape_time(cx, cy, image.max_iter), image.max_iter);
        }
        out.write_all(&row)?;
    }
    Ok(())
}

/// How many steps `z = z^2 + c` takes from 0 to leave the disc of radius 2, at most `max_iter`.
fn escape_time(cx: f64, cy: f64, max_iter: u32) -> u32 {
    let (mut x, mut y) = (0.0f64, 0.0f64);
    let mut n = 0;
    while n < max_iter {
        let (xx, yy) = (x * x, y * y);
        if xx + yy > 4.0 {
            break;
        }
        y = 2.0 * x * y + cy;
        x = xx - yy + cx;
        n += 1;
    }
    n
}

/// Black inside the set; outside, brighter the longer the point took to escape.
fn shade(n: u32, max_iter: u32) -> u8 {
    if n >= max_iter {
        0
    } else {
        (255.0 * (f64::from(n) / f64::from(max_iter)).sqrt().sqrt()) as u8
    }
}
