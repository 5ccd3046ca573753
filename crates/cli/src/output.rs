//! Output helpers: aligned tables, JSON arrays, and the human renderings of sizes, ages and
//! labels that ctr uses.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Spaces between table columns.
const PADDING: usize = 3;

/// A table printed with aligned columns, header first, like ctr's tabwriter output.
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, each line ending in a newline; the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                line.push_str(cell);
                if i + 1 < columns {
                    let pad = widths[i] - cell.chars().count() + PADDING;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Print the table to stdout.
    pub fn print(&self) -> anyhow::Result<()> {
        print_raw(&self.render())
    }
}

/// Print `text` to stdout as is.
pub fn print_raw(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Print `items` as one pretty JSON array.
pub fn print_json<T: Serialize>(items: &[T]) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(items)?;
    text.push('\n');
    print_raw(&text)
}

/// Print one line per item (the `--quiet` listings).
pub fn print_lines<I: IntoIterator<Item = S>, S: AsRef<str>>(lines: I) -> anyhow::Result<()> {
    let mut text = String::new();
    for l in lines {
        text.push_str(l.as_ref());
        text.push('\n');
    }
    print_raw(&text)
}

/// `k=v` pairs sorted by key and joined with commas, as ctr shows labels.
pub fn labels_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An RFC 3339 UTC time with seconds precision, e.g. `2024-05-01T12:00:00Z`.
pub fn time_seconds(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// An RFC 3339 UTC time, with sub-second digits when there are any (for JSON).
pub fn time_precise(t: SystemTime) -> String {
    humantime::format_rfc3339(t).to_string()
}

/// A size in decimal units with four significant digits, like Docker's `units.HumanSize`
/// (`512B`, `1.234kB`, `10MB`).
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size.abs() >= 1000.0 && unit + 1 < UNITS.len() {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(size, 4), UNITS[unit])
}

/// `value` with `digits` significant digits and trailing zeros removed (Go's `%.4g` for the
/// magnitudes `human_size` produces).
fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let magnitude = value.abs().log10().floor() as i32 + 1;
    let decimals = (digits - magnitude).max(0) as usize;
    let mut s = format!("{value:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

/// How long ago `t` was, in Docker's `units.HumanDuration` words ("3 hours", "About a minute").
pub fn age(t: SystemTime) -> String {
    human_duration(SystemTime::now().duration_since(t).unwrap_or_default())
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = (seconds + 1800) / 3600;
    if seconds < 1 {
        "Less than a second".to_string()
    } else if seconds == 1 {
        "1 second".to_string()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".to_string()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".to_string()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["NAME", "LABELS"]);
        t.row(vec!["default".into(), "".into()]);
        t.row(vec!["a".into(), "x=1".into()]);
        assert_eq!(t.render(), "NAME      LABELS\ndefault\na         x=1\n");
    }

    #[test]
    fn table_counts_characters_not_bytes() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["é".into(), "1".into()]);
        assert_eq!(t.render(), "A   B\né   1\n");
    }

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1234), "1.234kB");
        assert_eq!(human_size(10_000), "10kB");
        assert_eq!(human_size(3_145_745), "3.146MB");
        assert_eq!(human_size(5_000_000_000), "5GB");
    }

    #[test]
    fn durations_read_like_docker() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(10)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(42)), "42 seconds");
        assert_eq!(human_duration(s(90)), "About a minute");
        assert_eq!(human_duration(s(600)), "10 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5 * 3600)), "5 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(21 * 86400)), "3 weeks");
        assert_eq!(human_duration(s(90 * 86400)), "3 months");
        assert_eq!(human_duration(s(800 * 86400)), "2 years");
    }

    #[test]
    fn labels_are_sorted_and_joined() {
        let mut m = BTreeMap::new();
        m.insert("b".to_string(), "2".to_string());
        m.insert("a".to_string(), "1".to_string());
        assert_eq!(labels_string(&m), "a=1,b=2");
        assert_eq!(labels_string(&BTreeMap::new()), "");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(86400);
        assert_eq!(time_seconds(t), "1970-01-02T00:00:00Z");
    }
}
