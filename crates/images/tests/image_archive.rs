//! Exporting images from an in-memory content store as an archive: an OCI layout (with
//! containerd's name annotations) plus a Docker manifest.json, readable by any tar reader; an
//! index keeps only the host platform's blobs unless all are asked for.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod fakes;

use std::collections::BTreeMap;
use std::io::Read;

use berth_images::image_archive::{export, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use berth_images::Platform;
use fakes::*;

const NS: &str = "default";

/// The files of a tar, by path.
fn files(tar_bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(tar_bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(path, data);
    }
    out
}

fn blob(d: &berth_core::Digest) -> String {
    format!(
        "blobs/sha256/{}",
        d.to_string().trim_start_matches("sha256:")
    )
}

#[tokio::test]
async fn a_manifest_exports_as_an_oci_layout_and_a_docker_archive() {
    let content = FakeContent::default();
    let m = manifest(
        &content,
        "linux",
        "amd64",
        &[b"layer zero", b"layer one"],
        None,
    );
    let name = "docker.io/library/app:v1".to_string();
    let mut out = Vec::new();
    export(&content, NS, &[(name.clone(), m.clone())], None, &mut out)
        .await
        .unwrap();
    let f = files(&out);
    assert!(f.contains_key("oci-layout"));
    assert_eq!(f[&blob(&m.digest)].len() as i64, m.size);
    let config = config_of(&content, &m);
    assert!(f.contains_key(&blob(&config)));
    let index: serde_json::Value = serde_json::from_slice(&f["index.json"]).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["digest"].as_str(),
        Some(m.digest.to_string().as_str())
    );
    assert_eq!(
        entry["annotations"][ANNOTATION_IMAGE_NAME].as_str(),
        Some(name.as_str())
    );
    assert_eq!(
        entry["annotations"][ANNOTATION_REF_NAME].as_str(),
        Some("v1")
    );
    let docker: serde_json::Value = serde_json::from_slice(&f["manifest.json"]).unwrap();
    assert_eq!(docker[0]["RepoTags"][0].as_str(), Some("app:v1"));
    assert_eq!(docker[0]["Config"].as_str(), Some(blob(&config).as_str()));
    let layers = docker[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for l in layers {
        assert!(f.contains_key(l.as_str().unwrap()), "{l} in the tar");
    }
    // 2 layers, config, manifest, oci-layout, index.json, manifest.json.
    assert_eq!(f.len(), 7, "{:?}", f.keys().collect::<Vec<_>>());
}

#[tokio::test]
async fn an_index_exports_the_host_platform_unless_all_are_asked_for() {
    let content = FakeContent::default();
    let host = Platform::host();
    let here = manifest(&content, &host.os, &host.architecture, &[b"here"], None);
    let other_arch = if host.architecture == "s390x" {
        "arm64"
    } else {
        "s390x"
    };
    let there = manifest(&content, "linux", other_arch, &[b"there"], None);
    let idx = index(
        &content,
        &[
            (&here, Some((host.os.as_str(), host.architecture.as_str()))),
            (&there, Some(("linux", other_arch))),
        ],
    );
    let images = [("example.com/multi:1".to_string(), idx.clone())];
    let mut out = Vec::new();
    export(&content, NS, &images, Some(&host), &mut out)
        .await
        .unwrap();
    let f = files(&out);
    assert!(f.contains_key(&blob(&idx.digest)));
    assert!(f.contains_key(&blob(&here.digest)));
    assert!(
        !f.contains_key(&blob(&there.digest)),
        "the other platform is left out"
    );
    let docker: serde_json::Value = serde_json::from_slice(&f["manifest.json"]).unwrap();
    assert_eq!(
        docker[0]["RepoTags"][0].as_str(),
        Some("example.com/multi:1")
    );

    let mut all = Vec::new();
    export(&content, NS, &images, None, &mut all).await.unwrap();
    let f = files(&all);
    assert!(f.contains_key(&blob(&there.digest)) && f.contains_key(&blob(&here.digest)));
    assert!(
        !f.contains_key("manifest.json"),
        "no single manifest to name"
    );
}
