//! Well-known labels and label validation.
//!
//! Labels are the string map every object carries. A few keys have meaning to berth, exactly as
//! to containerd: they make objects roots or references for garbage collection.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Marks an object as a garbage-collection root: it is kept even if nothing refers to it.
pub const GC_ROOT: &str = "containerd.io/gc.root";
/// Prefix of labels whose value is a content digest that the labelled object keeps alive
/// (`containerd.io/gc.ref.content.<anything>` = `sha256:…`).
pub const GC_REF_CONTENT_PREFIX: &str = "containerd.io/gc.ref.content";
/// Prefix of labels naming a snapshot kept alive: `containerd.io/gc.ref.snapshot.<snapshotter>` = key.
pub const GC_REF_SNAPSHOT_PREFIX: &str = "containerd.io/gc.ref.snapshot.";
/// On a lease: the RFC 3339 time after which the lease expires and stops protecting anything.
pub const GC_EXPIRE: &str = "containerd.io/gc.expire";
/// On a lease: when set, the lease protects only the resources added to it, not their references.
pub const GC_FLAT: &str = "containerd.io/gc.flat";

/// On a layer blob: the digest of its uncompressed tar (its diff ID), set when it is unpacked.
pub const UNCOMPRESSED: &str = "containerd.io/uncompressed";

const MAX_LABEL_SIZE: usize = 4096;

/// Check one label as containerd does: a non-empty key and key+value at most 4096 bytes.
pub fn validate(key: &str, value: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_argument("label key must not be empty"));
    }
    if key.len() + value.len() > MAX_LABEL_SIZE {
        let shown: String = key.chars().take(10).collect();
        return Err(Error::invalid_argument(format!(
            "label key and value length ({} bytes) greater than maximum size ({MAX_LABEL_SIZE} bytes), key: {shown}",
            key.len() + value.len()
        )));
    }
    Ok(())
}

/// Validate every label of a map.
pub fn validate_all(labels: &BTreeMap<String, String>) -> Result<()> {
    labels.iter().try_for_each(|(k, v)| validate(k, v))
}

/// Apply containerd's field-mask rules for labels to `current`, given the `update` the client
/// sent and the `fieldpaths` of the mask.
///
/// - an empty mask replaces the whole label map (containerd's behaviour for an update without mask);
/// - `labels` replaces the whole map;
/// - `labels.<key>` sets that key from `update`, or removes it when `update` lacks it.
///
/// Any other path is rejected with `InvalidArgument`, naming the path; `other_paths` lists the
/// non-label fields the caller handles itself (they are skipped here).
pub fn apply_label_mask(
    current: &mut BTreeMap<String, String>,
    update: &BTreeMap<String, String>,
    fieldpaths: &[String],
    other_paths: &[&str],
) -> Result<()> {
    if fieldpaths.is_empty() {
        *current = update.clone();
        return validate_all(current);
    }
    for path in fieldpaths {
        if path == "labels" {
            *current = update.clone();
        } else if let Some(key) = path.strip_prefix("labels.") {
            match update.get(key) {
                Some(v) if !v.is_empty() => {
                    current.insert(key.to_string(), v.clone());
                }
                _ => {
                    current.remove(key);
                }
            }
        } else if !other_paths.contains(&path.as_str()) {
            return Err(Error::invalid_argument(format!(
                "cannot update {path:?} field"
            )));
        }
    }
    validate_all(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn mask_sets_and_removes_single_keys() {
        let mut cur = map(&[("a", "1"), ("b", "2")]);
        apply_label_mask(
            &mut cur,
            &map(&[("a", "9"), ("c", "3")]),
            &["labels.a".into(), "labels.b".into(), "labels.c".into()],
            &[],
        )
        .unwrap();
        assert_eq!(cur, map(&[("a", "9"), ("c", "3")]));
    }

    #[test]
    fn mask_labels_replaces_all_and_unknown_path_fails() {
        let mut cur = map(&[("a", "1")]);
        apply_label_mask(&mut cur, &map(&[("z", "1")]), &["labels".into()], &[]).unwrap();
        assert_eq!(cur, map(&[("z", "1")]));
        let err = apply_label_mask(&mut cur, &map(&[]), &["size".into()], &[]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }

    #[test]
    fn oversized_label_rejected() {
        assert!(validate("k", &"v".repeat(5000)).is_err());
        assert!(validate("", "v").is_err());
        validate("k", "v").unwrap();
    }
}
