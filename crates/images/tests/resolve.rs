//! Resolving images held in an in-memory content store: platform selection in indexes, configs,
//! chain IDs, and the errors of malformed or unsupported images.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod fakes;

use berth_core::ErrorKind;
use berth_images::spec::*;
use berth_images::{chain_ids, platforms, resolve, Platform};
use fakes::*;

const NS: &str = "default";

fn plat(s: &str) -> Platform {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_manifest_target_resolves_whatever_its_platform() {
    let content = FakeContent::default();
    let m = manifest(&content, "linux", "arm64", &[b"l0", b"l1"], None);
    let r = resolve(&content, NS, &m, &plat("linux/amd64"))
        .await
        .unwrap();
    assert!(r.indexes.is_empty());
    assert_eq!(r.manifest_desc, m);
    assert_eq!(r.platform().to_string(), "linux/arm64");
    let diff_ids = vec![fake_diff_id(b"l0"), fake_diff_id(b"l1")];
    assert_eq!(r.diff_ids(), diff_ids);
    let chains = chain_ids(&diff_ids);
    assert_eq!(r.layers[1].chain_id, chains[1]);
    assert_eq!(r.chain_id(), Some(&chains[1]));
    assert_eq!(r.layers[0].blob.media_type, LAYER_GZIP);
    let expected_size = m.size + r.config_desc.size + 4;
    assert_eq!(r.size(), expected_size);
}

#[tokio::test]
async fn an_index_picks_the_manifest_of_the_platform() {
    let content = FakeContent::default();
    let arm = manifest(&content, "linux", "arm64", &[b"arm"], None);
    let amd = manifest(&content, "linux", "amd64", &[b"amd"], None);
    let win = manifest(&content, "windows", "amd64", &[b"win"], None);
    let idx = index(
        &content,
        &[
            (&arm, Some(("linux", "arm64"))),
            (&win, Some(("windows", "amd64"))),
            (&amd, Some(("linux", "amd64"))),
        ],
    );
    let r = resolve(&content, NS, &idx, &plat("linux/amd64"))
        .await
        .unwrap();
    assert_eq!(r.manifest_desc.digest, amd.digest);
    assert_eq!(r.indexes, vec![idx.clone()]);
    assert_eq!(r.size(), idx.size + amd.size + r.config_desc.size + 3);
    let r = resolve(&content, NS, &idx, &plat("linux/aarch64"))
        .await
        .unwrap();
    assert_eq!(r.manifest_desc.digest, arm.digest);

    let e = resolve(&content, NS, &idx, &plat("linux/s390x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        format!(
            "no match for platform linux/s390x in manifest {}: not found",
            idx.digest
        )
    );

    let all = platforms(&content, NS, &idx).await.unwrap();
    let all: Vec<String> = all.iter().map(ToString::to_string).collect();
    assert_eq!(all, ["linux/amd64", "linux/arm64", "windows/amd64"]);
}

#[tokio::test]
async fn descriptors_without_platform_are_matched_by_their_config() {
    let content = FakeContent::default();
    let arm = manifest(&content, "linux", "arm64", &[b"arm"], None);
    let amd = manifest(&content, "linux", "amd64", &[b"amd"], None);
    let idx = index(&content, &[(&arm, None), (&amd, None)]);
    let r = resolve(&content, NS, &idx, &plat("linux/amd64"))
        .await
        .unwrap();
    assert_eq!(r.manifest_desc.digest, amd.digest);
    let all = platforms(&content, NS, &idx).await.unwrap();
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn nested_indexes_are_followed_and_attestations_ignored() {
    let content = FakeContent::default();
    let amd = manifest(&content, "linux", "amd64", &[b"amd"], None);
    let attestation = manifest(&content, "unknown", "unknown", &[b"att"], None);
    let inner = index(
        &content,
        &[
            (&attestation, Some(("unknown", "unknown"))),
            (&amd, Some(("linux", "amd64"))),
        ],
    );
    let outer = index(&content, &[(&inner, None)]);
    let r = resolve(&content, NS, &outer, &plat("linux/amd64"))
        .await
        .unwrap();
    assert_eq!(r.manifest_desc.digest, amd.digest);
    assert_eq!(r.indexes.len(), 2);
    let all = platforms(&content, NS, &outer).await.unwrap();
    assert_eq!(all, vec![plat("linux/amd64")]);
}

#[tokio::test]
async fn arm_variants_fall_back_to_the_closest_older_one() {
    let content = FakeContent::default();
    let v5 = manifest(&content, "linux", "arm", &[b"v5"], None);
    let v6 = manifest(&content, "linux", "arm", &[b"v6"], None);
    let entry = |d: &berth_core::Descriptor, variant: &str| {
        serde_json::json!({"mediaType": MEDIA_TYPE_OCI_MANIFEST, "digest": d.digest.to_string(),
            "size": d.size, "platform": {"os": "linux", "architecture": "arm", "variant": variant}})
    };
    let idx = content.put_json(
        MEDIA_TYPE_OCI_INDEX,
        &serde_json::json!({"schemaVersion": 2, "manifests": [entry(&v5, "v5"), entry(&v6, "v6")]}),
    );
    let r = resolve(&content, NS, &idx, &plat("linux/arm/v7"))
        .await
        .unwrap();
    assert_eq!(r.manifest_desc.digest, v6.digest);
}

#[tokio::test]
async fn docker_schema2_images_resolve() {
    let content = FakeContent::default();
    let layer = content.put("application/vnd.docker.image.rootfs.diff.tar.gzip", b"d0");
    let config = content.put_json(
        MEDIA_TYPE_DOCKER_CONFIG,
        &serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [fake_diff_id(b"d0").to_string()]}}),
    );
    let m = content.put_json(
        MEDIA_TYPE_DOCKER_MANIFEST,
        &serde_json::json!({"schemaVersion": 2, "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
            "config": {"mediaType": MEDIA_TYPE_DOCKER_CONFIG, "digest": config.digest.to_string(), "size": config.size},
            "layers": [{"mediaType": layer.media_type, "digest": layer.digest.to_string(), "size": layer.size}]}),
    );
    let list = content.put_json(
        MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        &serde_json::json!({"schemaVersion": 2, "mediaType": MEDIA_TYPE_DOCKER_MANIFEST_LIST,
            "manifests": [{"mediaType": MEDIA_TYPE_DOCKER_MANIFEST, "digest": m.digest.to_string(),
                           "size": m.size, "platform": {"os": "linux", "architecture": "amd64"}}]}),
    );
    let r = resolve(&content, NS, &list, &plat("linux/amd64"))
        .await
        .unwrap();
    assert_eq!(r.config_desc, config);
    assert_eq!(r.layers[0].chain_id, fake_diff_id(b"d0"));
}

#[tokio::test]
async fn unsupported_and_malformed_images_fail_with_their_class() {
    let content = FakeContent::default();
    let schema1 = content.put(MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED, b"{}");
    let e = resolve(&content, NS, &schema1, &Platform::host())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotImplemented, "{e}");

    let odd = content.put("application/octet-stream", b"x");
    let e = resolve(&content, NS, &odd, &Platform::host())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "unexpected media type application/octet-stream for {}: not implemented",
            odd.digest
        )
    );

    let diff_ids = Some(vec![fake_diff_id(b"a")]);
    let two_layers = manifest(&content, "linux", "amd64", &[b"a", b"b"], diff_ids);
    let e = resolve(&content, NS, &two_layers, &Platform::host())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.to_string()
            .starts_with("mismatched image rootfs and manifest layers"),
        "{e}"
    );

    let garbage = content.put(MEDIA_TYPE_OCI_MANIFEST, b"not json");
    let e = resolve(&content, NS, &garbage, &Platform::host())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.to_string()
            .starts_with(&format!("manifest {}: ", garbage.digest)),
        "{e}"
    );

    // An index read through a manifest descriptor is refused by its own media type.
    let m = manifest(&content, "linux", "amd64", &[b"a"], None);
    let idx = index(&content, &[(&m, None)]);
    let mut as_manifest = idx.clone();
    as_manifest.media_type = MEDIA_TYPE_OCI_MANIFEST.into();
    let e = resolve(&content, NS, &as_manifest, &Platform::host())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
}

#[tokio::test]
async fn missing_and_corrupt_blobs_are_reported() {
    let content = FakeContent::default();
    let m = manifest(&content, "linux", "amd64", &[b"a"], None);
    // Corrupt the manifest in place: its bytes no longer match the digest.
    content.blobs.lock().unwrap().get_mut(&m.digest).unwrap().0[0] = b' ';
    let e = resolve(&content, NS, &m, &Platform::host())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DataLoss, "{e}");

    content.blobs.lock().unwrap().remove(&m.digest);
    let e = resolve(&content, NS, &m, &Platform::host())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("read manifest {}: ", m.digest)),
        "{e}"
    );

    let mut huge = m.clone();
    huge.size = berth_images::resolve::MAX_DOCUMENT_SIZE + 1;
    let e = resolve(&content, NS, &huge, &Platform::host())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}
