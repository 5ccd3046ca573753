//! Content addresses: [`Digest`] (`algorithm:hex`) and [`Descriptor`] (media type, digest, size).

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::error::{Error, Result};

/// The hash algorithms a digest may use, as the OCI image spec registers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm's name as it appears before the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha384 => "sha384",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 64,
            DigestAlgorithm::Sha384 => 96,
            DigestAlgorithm::Sha512 => 128,
        }
    }

    /// A fresh incremental hasher of this algorithm.
    pub fn digester(self) -> Digester {
        Digester::new(self)
    }
}

/// A validated content digest such as `sha256:2c26b4…`.
///
/// The string form is canonical: lowercase hex of the exact length of the algorithm.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: DigestAlgorithm,
    encoded: String,
}

impl Digest {
    /// Parse and validate `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Digest> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| Error::invalid_argument(format!("digest {s:?}: missing algorithm")))?;
        let algorithm = match alg {
            "sha256" => DigestAlgorithm::Sha256,
            "sha384" => DigestAlgorithm::Sha384,
            "sha512" => DigestAlgorithm::Sha512,
            _ => {
                return Err(Error::invalid_argument(format!(
                    "digest {s:?}: unsupported algorithm {alg:?}"
                )))
            }
        };
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::invalid_argument(format!(
                "digest {s:?}: invalid {alg} encoding"
            )));
        }
        Ok(Digest {
            algorithm,
            encoded: hex.to_string(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        let mut d = Digester::new(DigestAlgorithm::Sha256);
        d.update(data);
        d.finish()
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The hex part, without the algorithm.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.encoded)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

/// An incremental hasher that yields a [`Digest`]; its state can be rebuilt by re-feeding data.
#[derive(Clone)]
pub enum Digester {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digester")
    }
}

impl Digester {
    /// A hasher for `alg`.
    pub fn new(alg: DigestAlgorithm) -> Self {
        match alg {
            DigestAlgorithm::Sha256 => Digester::Sha256(sha2::Sha256::new()),
            DigestAlgorithm::Sha384 => Digester::Sha384(sha2::Sha384::new()),
            DigestAlgorithm::Sha512 => Digester::Sha512(sha2::Sha512::new()),
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Digester::Sha256(h) => h.update(data),
            Digester::Sha384(h) => h.update(data),
            Digester::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far, without consuming the hasher.
    pub fn current(&self) -> Digest {
        self.clone().finish()
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let (algorithm, bytes) = match self {
            Digester::Sha256(h) => (DigestAlgorithm::Sha256, h.finalize().to_vec()),
            Digester::Sha384(h) => (DigestAlgorithm::Sha384, h.finalize().to_vec()),
            Digester::Sha512(h) => (DigestAlgorithm::Sha512, h.finalize().to_vec()),
        };
        Digest {
            algorithm,
            encoded: hex::encode(bytes),
        }
    }
}

/// What a piece of content is: its media type, digest and size (an OCI descriptor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: i64,
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonical_digests() {
        let d = Digest::sha256_of(b"hello");
        assert_eq!(
            d.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
    }

    #[test]
    fn rejects_malformed_digests() {
        for bad in [
            "",
            "sha256",
            "md5:abcd",
            "sha256:abc",
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
            "sha256:zzf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut h = Digester::new(DigestAlgorithm::Sha256);
        h.update(b"hel");
        assert_ne!(h.current(), Digest::sha256_of(b"hello"));
        h.update(b"lo");
        assert_eq!(h.finish(), Digest::sha256_of(b"hello"));
    }
}
