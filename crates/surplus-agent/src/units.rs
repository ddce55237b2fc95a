//! Sizes, percentages, time windows, durations and rates as people type and read them.
//!
//! The parsers turn what a person types on the command line or in the tray app (`2GiB`, `50%`,
//! `22:00-06:00`, `1h30m`, `10MiB/s`) into values, and say exactly which input they could not
//! read; the formatters write values back the same way.

use std::fmt;
use std::time::Duration;

use surplus_protocol::TimeWindow;

/// One gibibyte, the unit the product's defaults are stated in.
pub const GIB: u64 = 1024 * 1024 * 1024;

/// Input typed by a person that a parser could not read. The message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct InputError {
    /// What was expected (`size`, `percentage`, `time window`, ...).
    pub what: &'static str,
    /// The input exactly as given.
    pub input: String,
    /// What is wrong with it, and what would be right.
    pub reason: String,
}

impl InputError {
    pub(crate) fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        Self {
            what,
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

pub(crate) const MINUTES_PER_DAY: u16 = 24 * 60;

/// Parses a size such as `2GiB`, `500MB`, `1.5 GB`, `10g` or `123` (bytes).
///
/// Units are case-insensitive. `KB`, `MB`, `GB`, `TB` are decimal (powers of 1000); `KiB`, `MiB`,
/// `GiB`, `TiB` and the bare letters `K`, `M`, `G`, `T` are binary (powers of 1024), as in `df -h`
/// and most command lines. A fraction is rounded down to whole bytes.
pub fn parse_size(input: &str) -> Result<u64, InputError> {
    const WHAT: &str = "size";
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(InputError::new(
            WHAT,
            input,
            "expected a number and a unit, such as 2GiB or 500MB",
        ));
    }
    let multiplier = size_unit(unit.trim()).ok_or_else(|| {
        InputError::new(
            WHAT,
            input,
            format!(
                "unknown unit {:?}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB",
                unit.trim()
            ),
        )
    })?;
    let bytes = scale_decimal(number, multiplier)
        .ok_or_else(|| InputError::new(WHAT, input, "expected a number such as 2 or 1.5"))?;
    u64::try_from(bytes).map_err(|_| InputError::new(WHAT, input, "too large"))
}

fn size_unit(unit: &str) -> Option<u64> {
    const KIB: u64 = 1024;
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => KIB,
        "m" | "mib" => KIB.pow(2),
        "g" | "gib" => KIB.pow(3),
        "t" | "tib" => KIB.pow(4),
        _ => return None,
    };
    Some(multiplier)
}

/// `number` (digits, optionally with one decimal point between digits) times `multiplier`, rounded
/// down; exact integer arithmetic so that `1.1GB` is exactly 1,100,000,000 bytes.
fn scale_decimal(number: &str, multiplier: u64) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 18 {
        return None;
    }
    if number.contains('.') && fraction.is_empty() {
        return None;
    }
    let multiplier = u128::from(multiplier);
    let whole: u128 = whole.parse().ok()?;
    let mut total = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().ok()?;
        let denominator = 10u128.pow(u32::try_from(fraction.len()).ok()?);
        total = total.checked_add(numerator.checked_mul(multiplier)? / denominator)?;
    }
    Some(total)
}

/// Parses a percentage such as `50` or `50%` (a whole number, 0-100).
pub fn parse_percent(input: &str) -> Result<u8, InputError> {
    const WHAT: &str = "percentage";
    let text = input.trim();
    let digits = text.strip_suffix('%').unwrap_or(text).trim_end();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InputError::new(
            WHAT,
            input,
            "expected a whole number from 0 to 100, such as 50%",
        ));
    }
    match digits.parse::<u32>() {
        Ok(value) if value <= 100 => {
            u8::try_from(value).map_err(|_| InputError::new(WHAT, input, "must be from 0 to 100"))
        }
        _ => Err(InputError::new(WHAT, input, "must be from 0 to 100")),
    }
}

/// How long ago something was, as a person says it: `just now`, `5 min ago`, `3 h ago`,
/// `4 days ago`.
pub fn format_ago(elapsed_ms: i64) -> String {
    let seconds = elapsed_ms.max(0) / 1000;
    match seconds {
        0..60 => "just now".to_owned(),
        60..3_600 => format!("{} min ago", seconds / 60),
        3_600..172_800 => format!("{} h ago", seconds / 3_600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// How long something still takes, as a person says it: `less than a minute left`,
/// `12 min left`, `2 h 5 min left`.
pub fn format_left(left_ms: i64) -> String {
    let minutes = (left_ms.max(0) + 59_999) / 60_000;
    match minutes {
        0..=1 if left_ms < 60_000 => "less than a minute left".to_owned(),
        0..60 => format!("{minutes} min left"),
        _ => match minutes % 60 {
            0 => format!("{} h left", minutes / 60),
            rest => format!("{} h {rest} min left", minutes / 60),
        },
    }
}

/// A count with its thousands grouped, as in `1,204 of 3,000 files`.
pub fn format_count(count: u64) -> String {
    let digits = count.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (at, digit) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// The range a CPU temperature limit may be set in, in degrees Celsius: below it a CPU idles
/// warmer than the limit, above it the CPU throttles itself first.
pub const MIN_CPU_CELSIUS: u8 = 40;
pub const MAX_CPU_CELSIUS: u8 = 100;

/// Parses a CPU temperature limit such as `80`, `80C` or `80 °C` (whole degrees Celsius, from
/// [`MIN_CPU_CELSIUS`] to [`MAX_CPU_CELSIUS`]).
pub fn parse_celsius(input: &str) -> Result<u8, InputError> {
    const WHAT: &str = "temperature";
    let text = input.trim();
    let digits = text
        .strip_suffix(['C', 'c'])
        .map(|rest| rest.trim_end().trim_end_matches('°').trim_end())
        .unwrap_or(text);
    let range = format!("must be from {MIN_CPU_CELSIUS} to {MAX_CPU_CELSIUS} °C");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InputError::new(
            WHAT,
            input,
            format!("expected whole degrees Celsius, such as 80C; {range}"),
        ));
    }
    match digits.parse::<u8>() {
        Ok(value) if (MIN_CPU_CELSIUS..=MAX_CPU_CELSIUS).contains(&value) => Ok(value),
        _ => Err(InputError::new(WHAT, input, range)),
    }
}

/// Parses a daily window such as `22:00-06:00` (local time). An end before the start wraps past
/// midnight; `24:00` is accepted as an end and means midnight. The start and end must differ.
pub fn parse_window(input: &str) -> Result<TimeWindow, InputError> {
    const WHAT: &str = "time window";
    let (start, end) = input
        .trim()
        .split_once('-')
        .ok_or_else(|| InputError::new(WHAT, input, "expected HH:MM-HH:MM, such as 22:00-06:00"))?;
    let start_minute = parse_clock(start.trim(), false).ok_or_else(|| {
        InputError::new(
            WHAT,
            input,
            format!("{:?} is not a time from 00:00 to 23:59", start.trim()),
        )
    })?;
    let end_minute = parse_clock(end.trim(), true).ok_or_else(|| {
        InputError::new(
            WHAT,
            input,
            format!("{:?} is not a time from 00:00 to 24:00", end.trim()),
        )
    })?;
    if start_minute == end_minute {
        return Err(InputError::new(
            WHAT,
            input,
            "start and end are the same; leave the window unset to allow any time",
        ));
    }
    Ok(TimeWindow {
        start_minute,
        end_minute,
    })
}

/// `H:MM` or `HH:MM` as minutes after midnight; `24:00` only when it ends a window.
fn parse_clock(text: &str, is_end: bool) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hours) || hours.len() > 2 || !digits(minutes) || minutes.len() != 2 {
        return None;
    }
    let hours: u16 = hours.parse().ok()?;
    let minutes: u16 = minutes.parse().ok()?;
    match (hours, minutes) {
        (24, 0) if is_end => Some(0),
        (0..=23, 0..=59) => Some(hours * 60 + minutes),
        _ => None,
    }
}

/// Formats a window the way [`parse_window`] reads it (`22:00-06:00`).
pub fn format_window(window: TimeWindow) -> String {
    let clock = |minute: u16| format!("{:02}:{:02}", minute / 60, minute % 60);
    format!(
        "{}-{}",
        clock(window.start_minute),
        clock(window.end_minute)
    )
}

/// Parses a duration such as `90s`, `15m`, `1h`, `2d` or `1h30m`.
///
/// Units are `d`, `h`, `m`, `s` (case-insensitive), each at most once and largest first, so that
/// a slip such as `30m1h` is caught rather than guessed at. A bare number has no unit and is
/// refused.
pub fn parse_duration(input: &str) -> Result<Duration, InputError> {
    const WHAT: &str = "duration";
    let text = input.trim();
    if text.is_empty() {
        return Err(InputError::new(
            WHAT,
            input,
            "expected a duration such as 90s, 15m, 1h, 2d or 1h30m",
        ));
    }
    let mut seconds: u64 = 0;
    let mut last_unit_seconds = u64::MAX;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(InputError::new(
                WHAT,
                input,
                "expected a number before each unit, such as 1h30m",
            ));
        }
        let (number, after) = rest.split_at(digits_end);
        let mut chars = after.chars();
        let unit = chars.next().ok_or_else(|| {
            InputError::new(
                WHAT,
                input,
                format!("{number:?} has no unit; add s, m, h or d"),
            )
        })?;
        let unit_seconds = match unit.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            other => {
                return Err(InputError::new(
                    WHAT,
                    input,
                    format!("unknown unit {other:?}; use s, m, h or d"),
                ));
            }
        };
        if unit_seconds >= last_unit_seconds {
            return Err(InputError::new(
                WHAT,
                input,
                "give each unit once, largest first, such as 1h30m",
            ));
        }
        last_unit_seconds = unit_seconds;
        let value: u64 = number
            .parse()
            .map_err(|_| InputError::new(WHAT, input, "number too large"))?;
        seconds = value
            .checked_mul(unit_seconds)
            .and_then(|part| seconds.checked_add(part))
            .ok_or_else(|| InputError::new(WHAT, input, "too long"))?;
        rest = chars.as_str();
    }
    Ok(Duration::from_secs(seconds))
}

/// Parses a transfer rate such as `10MiB/s` or `10MiB` into bytes per second (units as in
/// [`parse_size`]). A rate of zero is refused: leave the limit unset for no limit.
pub fn parse_rate(input: &str) -> Result<u64, InputError> {
    const WHAT: &str = "rate";
    let text = input.trim();
    let size = match text.len().checked_sub(2).and_then(|at| text.get(at..)) {
        Some(suffix) if suffix.eq_ignore_ascii_case("/s") => &text[..text.len() - 2],
        _ => text,
    };
    let bytes = parse_size(size).map_err(|error| InputError::new(WHAT, input, error.reason))?;
    if bytes == 0 {
        return Err(InputError::new(WHAT, input, "must be more than 0"));
    }
    Ok(bytes)
}

/// Formats a byte count for people, in binary units with one decimal (`12.4 GiB`, `512 B`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Precision lost in the cast is far below the one decimal shown.
    let mut value = bytes as f64;
    let mut unit = 0;
    while (value >= 1024.0 || (value * 10.0).round() >= 10240.0) && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A size for people, for use in format strings (`{}` shows `12.4 GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_binary_and_decimal_units() {
        let good = [
            ("123", 123),
            ("0", 0),
            ("2GiB", 2 * GIB),
            ("2 gib", 2 * GIB),
            ("500MB", 500_000_000),
            ("1.5 GB", 1_500_000_000),
            ("1.1GB", 1_100_000_000),
            ("10g", 10 * GIB),
            ("4K", 4096),
            ("4kb", 4000),
            ("1TiB", 1024 * GIB),
            ("7 bytes", 7),
            (" 12B ", 12),
            ("0.5KiB", 512),
            ("1.0005KiB", 1024),
        ];
        for (input, expected) in good {
            assert_eq!(parse_size(input), Ok(expected), "{input}");
        }
        let bad = [
            "",
            "GiB",
            "2XB",
            "-1",
            "1.2.3GB",
            "1.GB",
            ".5GB",
            "99999999999999999999TiB",
            "2 G B",
        ];
        for input in bad {
            let error = parse_size(input).expect_err(input);
            assert_eq!(error.input, input);
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
    }

    #[test]
    fn moments_ago() {
        assert_eq!(format_ago(-5), "just now");
        assert_eq!(format_ago(59_999), "just now");
        assert_eq!(format_ago(5 * 60_000), "5 min ago");
        assert_eq!(format_ago(3 * 3_600_000), "3 h ago");
        assert_eq!(format_ago(4 * 86_400_000), "4 days ago");
    }

    #[test]
    fn time_left_rounds_up_to_the_minute() {
        assert_eq!(format_left(-1), "less than a minute left");
        assert_eq!(format_left(59_999), "less than a minute left");
        assert_eq!(format_left(60_000), "1 min left");
        assert_eq!(format_left(61_000), "2 min left");
        assert_eq!(format_left(60 * 60_000), "1 h left");
        assert_eq!(format_left(125 * 60_000), "2 h 5 min left");
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(1_204), "1,204");
        assert_eq!(format_count(3_000_000), "3,000,000");
    }

    #[test]
    fn temperatures() {
        for (input, expected) in [
            ("80", 80),
            ("80C", 80),
            ("80 °C", 80),
            (" 40c ", 40),
            ("100", 100),
        ] {
            assert_eq!(parse_celsius(input), Ok(expected), "{input}");
        }
        for input in ["", "C", "39", "101", "-5", "80.5", "80F", "hot", "1000"] {
            let error = parse_celsius(input).expect_err(input);
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
    }

    #[test]
    fn percentages() {
        for (input, expected) in [
            ("50", 50),
            ("50%", 50),
            ("0", 0),
            ("100 %", 100),
            (" 7% ", 7),
        ] {
            assert_eq!(parse_percent(input), Ok(expected), "{input}");
        }
        for input in ["", "%", "101", "-5", "50.5", "fifty", "1000000000000"] {
            let error = parse_percent(input).expect_err(input);
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
    }

    #[test]
    fn windows() {
        assert_eq!(
            parse_window("22:00-06:00"),
            Ok(TimeWindow {
                start_minute: 1320,
                end_minute: 360
            })
        );
        assert_eq!(
            parse_window("9:30 - 17:45"),
            Ok(TimeWindow {
                start_minute: 570,
                end_minute: 1065
            })
        );
        assert_eq!(
            parse_window("18:00-24:00"),
            Ok(TimeWindow {
                start_minute: 1080,
                end_minute: 0
            })
        );
        assert_eq!(
            format_window(TimeWindow {
                start_minute: 1320,
                end_minute: 360
            }),
            "22:00-06:00"
        );
        for input in [
            "",
            "22:00",
            "22:00-22:00",
            "00:00-24:00",
            "24:00-06:00",
            "22:60-06:00",
            "2200-0600",
            "22:0-06:00",
            "a:bc-06:00",
        ] {
            let error = parse_window(input).expect_err(input);
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
    }

    #[test]
    fn durations() {
        let good = [
            ("90s", 90),
            ("15m", 900),
            ("1h", 3600),
            ("2d", 172_800),
            ("1h30m", 5400),
            ("1d2h3m4s", 93_784),
            ("0s", 0),
            ("2H", 7200),
        ];
        for (input, seconds) in good {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_secs(seconds)),
                "{input}"
            );
        }
        for input in [
            "",
            "90",
            "h",
            "1x",
            "30m1h",
            "1h1h",
            "1.5h",
            "-1h",
            "99999999999999999999d",
            "1h 30m",
        ] {
            let error = parse_duration(input).expect_err(input);
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10MiB/s"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_rate("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_rate("1.5 MB/S"), Ok(1_500_000));
        assert_eq!(parse_rate("4096"), Ok(4096));
        for input in ["", "/s", "0", "0MB/s", "fast", "10MiB/h"] {
            let error = parse_rate(input).expect_err(input);
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(13_314_398_618), "12.4 GiB");
        assert_eq!(format_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
        assert_eq!(Size(10 * GIB).to_string(), "10.0 GiB");
    }
}
