//! Identifiers: the names of namespaces, leases and (later) containers, images' keys and snapshots.
//!
//! The rule is containerd's `identifiers.Validate`: 1 to 76 characters, starting and ending with a
//! letter or digit, with `.`, `_` and `-` allowed between (never two in a row).

use crate::error::{Error, Result};

const MAX_LENGTH: usize = 76;

/// Check that `s` is a valid identifier. The messages are containerd's, word for word, so
/// clients see the same errors from berthd as from containerd.
pub fn validate(s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid_argument("identifier must not be empty"));
    }
    if s.len() > MAX_LENGTH {
        return Err(Error::invalid_argument(format!(
            "identifier {s:?} greater than maximum length ({MAX_LENGTH} characters)"
        )));
    }
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    let sep = |b: u8| matches!(b, b'.' | b'_' | b'-');
    let ok = alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes.iter().all(|&b| alnum(b) || sep(b))
        && !bytes.windows(2).any(|w| sep(w[0]) && sep(w[1]));
    if !ok {
        return Err(Error::invalid_argument(format!(
            "identifier {s:?} must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_containerd_identifiers() {
        for ok in [
            "default",
            "k8s.io",
            "a",
            "moby_1",
            "a-b.c_d",
            &"x".repeat(76),
        ] {
            validate(ok).unwrap();
        }
    }

    #[test]
    fn rejects_bad_identifiers() {
        for bad in ["", "-a", "a-", "a..b", "a/b", "a b", "ü", &"x".repeat(77)] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }
}
