//! Chain IDs: the names of unpacked layer stacks.
//!
//! A layer's **diff ID** is the digest of its *uncompressed* tar (the config lists them, bottom
//! first, in `rootfs.diff_ids`); it names one layer's changes. A **chain ID** names the whole
//! stack of layers up to and including one layer, so that two images sharing their bottom layers
//! share those snapshots too. The OCI image spec defines it:
//!
//! ```text
//! ChainID(L0)     = DiffID(L0)
//! ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))
//! ```
//!
//! An image is unpacked into snapshots committed under the chain IDs of its layers: the snapshot
//! named `ChainID(L0..Ln)` has the snapshot `ChainID(L0..Ln-1)` as its parent.

use berth_core::Digest;

/// The chain ID of every prefix of `diff_ids`: element `n` names the stack of layers `0..=n`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::sha256_of(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The chain ID of the whole stack `diff_ids`; `None` for an image without layers.
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    chain_ids(diff_ids).pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(hex_char: char) -> Digest {
        Digest::parse(&format!("sha256:{}", hex_char.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn first_chain_id_is_the_first_diff_id() {
        let a = digest('a');
        assert_eq!(chain_ids(std::slice::from_ref(&a)), vec![a.clone()]);
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a));
        assert_eq!(chain_id(&[]), None);
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn later_chain_ids_hash_parent_space_diff_id() {
        let (a, b, c) = (digest('a'), digest('b'), digest('c'));
        let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        let ab = Digest::sha256_of(format!("{a} {b}").as_bytes());
        let abc = Digest::sha256_of(format!("{ab} {c}").as_bytes());
        assert_eq!(ids, vec![a, ab, abc.clone()]);
        assert_eq!(
            abc.to_string().len(),
            "sha256:".len() + 64,
            "chain ids are sha256 digests"
        );
    }

    #[test]
    fn known_vector() {
        // Two layers whose diff IDs are the digests of "a" and "b" (independently computed with
        // `printf '%s %s' "$A" "$B" | sha256sum`).
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let ids = chain_ids(&[a.clone(), b]);
        assert_eq!(ids[0], a);
        assert_eq!(
            ids[1].to_string(),
            "sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676",
            "chain id of sha256(a), sha256(b)"
        );
    }
}
