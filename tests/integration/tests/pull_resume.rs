//! `berth pull` resumes an interrupted download: an ingest left under the layer's ref
//! (`layer-<digest>`, containerd's ref naming) is continued with an HTTP range request to the
//! real registry, so only the missing bytes travel; a resumed ingest whose first part is wrong
//! fails verification, is discarded, and the next pull starts over and succeeds.

use std::process::Output;

use berth_client::RemoteContentStore;
use berth_core::content::{ContentStore, ContentWriter, WriterOptions};
use berth_core::Digest;
use berth_integration_tests::cli::{berth, setup_registry};
use berth_integration_tests::registry::TestImages;
use berth_integration_tests::{ok, Berthd};

/// The manifest, config and layer of the busybox layout: (digest, bytes) each.
fn busybox_blobs(images: &TestImages, manifest: &str) -> Vec<(String, Vec<u8>)> {
    let blob = |d: &str| {
        let hex = d.strip_prefix("sha256:").unwrap();
        std::fs::read(images.layout("busybox").join("blobs/sha256").join(hex)).unwrap()
    };
    let m: serde_json::Value = serde_json::from_slice(&blob(manifest)).unwrap();
    let mut out = vec![(manifest.to_string(), blob(manifest))];
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    out.push((config.clone(), blob(&config)));
    for l in m["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap().to_string();
        out.push((d.clone(), blob(&d)));
    }
    out
}

/// Leave an ingest of `digest` holding `prefix`, as a pull killed half-way leaves it.
async fn leave_partial_ingest(b: &Berthd, ns: &str, digest: &str, size: usize, prefix: &[u8]) {
    let store = RemoteContentStore::new(b.channel().await);
    let mut w = store
        .writer(
            ns,
            WriterOptions {
                reference: format!("layer-{digest}"),
                size: size as i64,
                digest: Some(Digest::parse(digest).unwrap()),
                lease: None,
            },
        )
        .await
        .expect("open the layer's ingest");
    w.write(prefix).await.expect("write the prefix");
    assert_eq!(w.status().await.unwrap().offset, prefix.len() as i64);
    // Dropped without a commit: the ingest stays, as after a kill.
}

fn pulled_bytes(out: Output, what: &str) -> i64 {
    let text = ok(out, what);
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not json ({e}): {text}"));
    v["bytes"].as_i64().expect("bytes in the pull's json")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_layer_download_resumes_where_it_stopped() {
    let ns = "berth-pull-resume";
    let Some((reg, images)) = setup_registry(
        "an_interrupted_layer_download_resumes_where_it_stopped",
        &["ctr"],
    ) else {
        return;
    };
    reg.push_oci_layout(&images.layout("busybox"), "busybox:latest");
    let name = reg.reference("busybox:latest");
    let manifest = reg.manifest_digest("busybox", "latest").unwrap();
    let blobs = busybox_blobs(images, &manifest);
    let (layer, layer_bytes) = blobs.last().unwrap().clone();
    let total: usize = blobs.iter().map(|(_, d)| d.len()).sum();
    assert!(layer_bytes.len() > 1000, "a layer worth resuming");
    let b = Berthd::start();

    // The right first 60 %: the pull fetches only the rest of the layer.
    let cut = layer_bytes.len() * 6 / 10;
    leave_partial_ingest(&b, ns, &layer, layer_bytes.len(), &layer_bytes[..cut]).await;
    let pull = ["pull", "--no-unpack", "--format", "json", &name];
    let bytes = pulled_bytes(berth(&b, ns, &pull), "resumed berth pull");
    assert_eq!(
        bytes,
        (total - cut) as i64,
        "bytes downloaded by the resumed pull (all blobs {total}, layer prefix {cut} already here)"
    );
    let got = b.ctr(ns, &["content", "get", &layer]);
    assert_eq!(
        sha256_of(&got.stdout),
        layer,
        "the stored layer is the registry's"
    );
    let active = ok(b.ctr(ns, &["content", "active"]), "ctr content active");
    assert!(!active.contains("layer-"), "no ingest left: {active}");

    // A wrong prefix: the resumed blob fails verification; the ingest goes, and the next
    // pull downloads the whole layer and succeeds.
    ok(
        b.ctr(ns, &["images", "rm", "--sync", &name]),
        "ctr images rm",
    );
    leave_partial_ingest(
        &b,
        ns,
        &layer,
        layer_bytes.len(),
        &vec![0u8; layer_bytes.len() / 2],
    )
    .await;
    let out = berth(&b, ns, &pull);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a corrupt resume must fail");
    assert!(
        stderr.contains(&layer),
        "the error names the layer: {stderr}"
    );
    let left = ok(b.ctr(ns, &["content", "ls", "-q"]), "ctr content ls");
    assert_eq!(left.trim(), "", "a failed pull leaves no blobs behind");
    let bytes = pulled_bytes(berth(&b, ns, &pull), "berth pull after the failed resume");
    assert_eq!(bytes, total as i64, "everything downloaded again");
    let got = b.ctr(ns, &["content", "get", &layer]);
    assert_eq!(sha256_of(&got.stdout), layer);
}

fn sha256_of(data: &[u8]) -> String {
    berth_integration_tests::registry::sha256_digest(data)
}
