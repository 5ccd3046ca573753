//! Conversions between containerd's wire types and berth's: one place for both the server
//! (berth-services) and the client (berth-client).

use berth_core::mount::Mount;
use berth_core::{Descriptor, Digest};

use containerd_client::types::{Descriptor as DescriptorMsg, Mount as MountMsg};

/// A descriptor message as berth's descriptor; an unparsable digest is an invalid argument.
pub fn descriptor_from_msg(d: DescriptorMsg) -> berth_core::Result<Descriptor> {
    Ok(Descriptor {
        media_type: d.media_type,
        digest: Digest::parse(&d.digest)?,
        size: d.size,
        annotations: d.annotations.into_iter().collect(),
    })
}

/// berth's descriptor as a message.
pub fn descriptor_msg(d: Descriptor) -> DescriptorMsg {
    DescriptorMsg {
        media_type: d.media_type,
        digest: d.digest.to_string(),
        size: d.size,
        annotations: d.annotations.into_iter().collect(),
    }
}

/// Mount messages as berth's mounts (an empty target is the root).
pub fn mounts_from_msg(mounts: Vec<MountMsg>) -> Vec<Mount> {
    mounts
        .into_iter()
        .map(|m| Mount {
            kind: m.r#type,
            source: m.source,
            target: Some(m.target).filter(|t| !t.is_empty()),
            options: m.options,
        })
        .collect()
}

/// berth's mounts as messages.
pub fn mounts_msg(mounts: Vec<Mount>) -> Vec<MountMsg> {
    mounts
        .into_iter()
        .map(|m| MountMsg {
            r#type: m.kind,
            source: m.source,
            target: m.target.unwrap_or_default(),
            options: m.options,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_and_descriptors_round_trip() {
        let m = vec![Mount::new("overlay", "overlay", ["lowerdir=/a:/b"])];
        assert_eq!(mounts_from_msg(mounts_msg(m.clone())), m);
        let d = Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: Digest::sha256_of(b"x"),
            size: 1,
            annotations: [("a".to_string(), "b".to_string())].into(),
        };
        assert_eq!(descriptor_from_msg(descriptor_msg(d.clone())).unwrap(), d);
        let mut bad = descriptor_msg(d);
        bad.digest = "sha256:nothex".into();
        assert!(descriptor_from_msg(bad).is_err());
    }
}
