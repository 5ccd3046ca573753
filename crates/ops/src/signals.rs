//! Signals by name or number, as `kill -s`, `stop` and an image's `StopSignal` give them.

use crate::error::{OpsError, Result};

/// SIGTERM: what `stop` sends first when the image names no stop signal.
pub const SIGTERM: i32 = 15;
/// SIGKILL: what `stop` sends after the grace time.
pub const SIGKILL: i32 = 9;

fn invalid(s: &str) -> OpsError {
    OpsError::from(berth_core::Error::invalid_argument(format!("signal {s:?}")))
}

/// Signal names and numbers `kill -s` and `stop` accept (`SIGTERM`, `TERM`, `15`).
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// A signal by name (`SIGTERM`, `term`) or number (`15`, 1 to 64).
pub fn parse(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(invalid(s));
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| invalid(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse("SIGTERM").unwrap(), 15);
        assert_eq!(parse("kill").unwrap(), 9);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("SIGUSR1").unwrap(), 10);
        assert!(parse("0").is_err());
        assert!(parse("SIGNOPE").is_err());
    }
}
