//! What a CRI image is made of, from berth's image records (pure, as containerd's CRI
//! `toCRIImage`):
//!
//! - the **id** is the digest of the image's config (the same for every name of the image);
//! - the **repo tags** are the names that carry a tag (`docker.io/library/busybox:latest`);
//! - the **repo digests** are the names pinned by digest (`docker.io/library/busybox@sha256:…`,
//!   the digest being the record's target: the manifest, or the index of a multi-platform
//!   image), and, for each tagged name, its repository at its target's digest;
//! - the **size** is the sum of the layers' sizes as stored (compressed);
//! - the **user** is the config's `User`, up to a `:`: a number is the `uid`, anything else
//!   the `username`.

use berth_core::reference::Reference;

use crate::api;

/// How a record's name reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameKind {
    /// `repo:tag`: a repo tag.
    Tagged,
    /// `repo@sha256:…` (or `repo:tag@sha256:…`): a repo digest.
    Digested,
    /// `sha256:<hex>`: the image id as a name (containerd's CRI makes one per image).
    Id,
    /// Anything else (a record made by another client with a free-form name).
    Other,
}

/// Whether `s` is a digest of the form `sha256:<64 hex digits>`.
pub fn is_id(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// What kind of name `name` is.
pub fn classify(name: &str) -> NameKind {
    if is_id(name) {
        return NameKind::Id;
    }
    match Reference::parse(name) {
        Ok(r) if r.digest.is_some() => NameKind::Digested,
        Ok(r) if r.tag.is_some() => NameKind::Tagged,
        _ => NameKind::Other,
    }
}

/// One image record, as far as the CRI's identity goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The record's name.
    pub name: String,
    /// The digest of the record's target (manifest or index).
    pub target: String,
}

/// The repo tags and repo digests of an image whose records are `records` (sorted, each once).
pub fn tags_and_digests(records: &[Named]) -> (Vec<String>, Vec<String>) {
    let mut tags = Vec::new();
    let mut digests = Vec::new();
    for r in records {
        match classify(&r.name) {
            NameKind::Tagged => {
                tags.push(r.name.clone());
                if let Ok(parsed) = Reference::parse(&r.name) {
                    digests.push(format!("{}@{}", parsed.name(), r.target));
                }
            }
            NameKind::Digested => {
                if let Ok(parsed) = Reference::parse(&r.name) {
                    if let Some(d) = &parsed.digest {
                        digests.push(format!("{}@{d}", parsed.name()));
                    }
                }
            }
            NameKind::Id | NameKind::Other => {}
        }
    }
    tags.sort();
    tags.dedup();
    digests.sort();
    digests.dedup();
    (tags, digests)
}

/// The repo digest name of a tagged reference `name` pulled at `target` (None when `name` is
/// not a tagged reference).
pub fn repo_digest(name: &str, target: &str) -> Option<String> {
    let parsed = Reference::parse(name).ok()?;
    (parsed.digest.is_none()).then(|| format!("{}@{target}", parsed.name()))
}

/// The uid or user name of an image config's `config` object (its `User`), as containerd's
/// CRI `getUserFromImage`: `1000:1000` is uid 1000, `nobody` the user name `nobody`, empty
/// neither.
pub fn user(config: Option<&serde_json::Value>) -> (Option<i64>, String) {
    let user = config
        .and_then(|c| c.get("User"))
        .and_then(|u| u.as_str())
        .unwrap_or("");
    let user = user.split(':').next().unwrap_or("");
    if user.is_empty() {
        return (None, String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

/// The CRI image of id `id` named by `records`, of `size` bytes, with its config's `config`.
pub fn cri_image(
    id: &str,
    records: &[Named],
    size: u64,
    config: Option<&serde_json::Value>,
) -> api::Image {
    let (repo_tags, repo_digests) = tags_and_digests(records);
    let (uid, username) = user(config);
    api::Image {
        id: id.to_string(),
        repo_tags,
        repo_digests,
        size,
        uid: uid.map(|value| api::Int64Value { value }),
        username,
        spec: None,
        pinned: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const C: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn named(name: &str) -> Named {
        Named {
            name: name.into(),
            target: M.into(),
        }
    }

    #[test]
    fn names_are_tags_digests_or_the_id() {
        assert_eq!(
            classify("docker.io/library/busybox:latest"),
            NameKind::Tagged
        );
        assert_eq!(
            classify(&format!("docker.io/library/busybox@{M}")),
            NameKind::Digested
        );
        assert_eq!(classify(&format!("r.example/a:1@{M}")), NameKind::Digested);
        assert_eq!(classify(C), NameKind::Id);
        assert_eq!(classify("Not A Ref"), NameKind::Other);
        assert!(!is_id("sha256:abc"));
        assert!(!is_id(&C.to_uppercase()));
    }

    /// containerd's CRI after `crictl pull busybox`: three records, one image; the id record
    /// is neither a tag nor a digest; a tag's repository at the target is a repo digest.
    #[test]
    fn an_image_of_three_records_has_one_tag_and_one_digest() {
        let records = [
            named("docker.io/library/busybox:latest"),
            named(&format!("docker.io/library/busybox@{M}")),
            named(C),
        ];
        let image = cri_image(C, &records, 42, None);
        assert_eq!(image.id, C);
        assert_eq!(image.repo_tags, ["docker.io/library/busybox:latest"]);
        assert_eq!(
            image.repo_digests,
            [format!("docker.io/library/busybox@{M}")]
        );
        assert_eq!(image.size, 42);
        assert_eq!(image.uid, None);
        assert_eq!(image.username, "");
    }

    #[test]
    fn several_tags_are_sorted_and_a_record_with_only_a_tag_still_has_a_digest() {
        let records = [named("r.example/b:2"), named("r.example/a:1")];
        let (tags, digests) = tags_and_digests(&records);
        assert_eq!(tags, ["r.example/a:1", "r.example/b:2"]);
        assert_eq!(
            digests,
            [format!("r.example/a@{M}"), format!("r.example/b@{M}")]
        );
        assert_eq!(
            repo_digest("docker.io/library/busybox:latest", M).as_deref(),
            Some(format!("docker.io/library/busybox@{M}").as_str())
        );
        assert_eq!(repo_digest(&format!("r.example/a@{M}"), M), None);
    }

    #[test]
    fn the_user_is_a_uid_or_a_name() {
        let cfg = |u: &str| serde_json::json!({ "User": u });
        assert_eq!(user(Some(&cfg("1000"))), (Some(1000), String::new()));
        assert_eq!(user(Some(&cfg("1000:50"))), (Some(1000), String::new()));
        assert_eq!(user(Some(&cfg("nobody"))), (None, "nobody".to_string()));
        assert_eq!(user(Some(&cfg("nobody:nogroup"))), (None, "nobody".into()));
        assert_eq!(user(Some(&cfg(""))), (None, String::new()));
        assert_eq!(user(Some(&serde_json::json!({}))), (None, String::new()));
        assert_eq!(user(None), (None, String::new()));
        let image = cri_image(C, &[], 0, Some(&cfg("0")));
        assert_eq!(image.uid, Some(api::Int64Value { value: 0 }));
    }
}
