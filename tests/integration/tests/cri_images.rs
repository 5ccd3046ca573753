//! The Kubernetes CRI of a real berthd, driven as a kubelet drives it: a tonic client of the
//! `k8s-cri` crate's `runtime.v1` services on berthd's own socket.
//!
//! - `cri_serves_images_through_a_mirror`: Version and Status (runtime ready, network not:
//!   no CNI yet); PullImage of the `busybox` test image under a fake upstream name
//!   (`registry.k8s.io/busybox:latest`) that only berthd's `[registry] config_path` hosts.toml
//!   maps to a real local registry; ListImages and ImageStatus with containerd's identity (id =
//!   config digest, repo tags, repo digests at the registry's manifest digest, size = the
//!   layers'); a second pull answers the same id, quickly; ImageFsInfo; an RPC not built yet
//!   answers Unimplemented; a missing image fails naming it; RemoveImage removes every name,
//!   and removing again is not an error.
//!
//! Root tests: the harness's gate decides (skips recorded, `BERTH_ROOT_TESTS=require` fails).

use std::time::{Duration, Instant};

use berth_integration_tests::cli::{blob_path, manifest_parts, read_json};
use berth_integration_tests::{setup, Berthd};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest, ListImagesRequest,
    ListPodSandboxRequest, PullImageRequest, RemoveImageRequest, StatusRequest, VersionRequest,
};

/// The fake upstream host, reached only through its mirror.
const UPSTREAM: &str = "registry.k8s.io";

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

fn pull_request(image: &str) -> PullImageRequest {
    PullImageRequest {
        image: spec(image),
        auth: None,
        sandbox_config: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_serves_images_through_a_mirror() {
    let Some(s) = setup(
        "cri_serves_images_through_a_mirror",
        &["docker-registry", "skopeo"],
    ) else {
        return;
    };
    let registry = s.registry();
    let layout = s.images.layout("busybox");
    registry.push_oci_layout(&layout, "busybox:latest");
    let manifest = registry
        .manifest_digest("busybox", "latest")
        .expect("the registry has busybox:latest");
    let (config, _) = manifest_parts(&layout, &manifest);
    let layers_size: u64 = read_json(&blob_path(&layout, &manifest))["layers"]
        .as_array()
        .expect("manifest layers")
        .iter()
        .map(|l| l["size"].as_u64().expect("layer size"))
        .sum();

    let hosts = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(hosts.path().join(UPSTREAM)).unwrap();
    std::fs::write(
        hosts.path().join(UPSTREAM).join("hosts.toml"),
        format!(
            "server = \"https://{UPSTREAM}\"\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            registry.host()
        ),
    )
    .unwrap();
    let b = Berthd::start_with_config(&format!(
        "[registry]\nconfig_path = \"{}\"\n",
        hosts.path().display()
    ));
    let channel = b.channel().await;
    let mut runtime = RuntimeServiceClient::new(channel.clone());
    let mut images = ImageServiceClient::new(channel);

    // Version and Status, as a kubelet asks first.
    let v = runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(v.runtime_version.starts_with('v'), "{v:?}");
    let st = runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conditions = st.status.expect("a runtime status").conditions;
    let cond = |t: &str| {
        conditions
            .iter()
            .find(|c| c.r#type == t)
            .unwrap_or_else(|| panic!("condition {t} in {conditions:?}"))
    };
    assert!(cond("RuntimeReady").status);
    assert!(!cond("NetworkReady").status);
    assert_eq!(cond("NetworkReady").reason, "NetworkPluginNotReady");
    assert!(!cond("NetworkReady").message.is_empty());
    assert!(st.info.contains_key("config"), "{:?}", st.info);

    // Pull through the mirror: the image id (the config digest) comes back.
    let name = format!("{UPSTREAM}/busybox:latest");
    let started = Instant::now();
    let id = images
        .pull_image(pull_request(&name))
        .await
        .unwrap_or_else(|e| panic!("pull {name}: {e}\nberthd log:\n{}", b.log()))
        .into_inner()
        .image_ref;
    let first_pull = started.elapsed();
    assert_eq!(id, config);

    // Listed with containerd's identity.
    let listed = images
        .list_images(ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let image = &listed[0];
    assert_eq!(image.id, config);
    assert_eq!(image.repo_tags, vec![name.clone()]);
    assert_eq!(
        image.repo_digests,
        [format!("{UPSTREAM}/busybox@{manifest}")]
    );
    assert_eq!(image.size, layers_size);
    // The test image's config sets no user: neither a uid nor a name.
    assert_eq!(image.uid, None);
    assert_eq!(image.username, "");
    // A filter by reference (normalized) finds it; by another reference nothing.
    let filtered = |image: &str| ListImagesRequest {
        filter: Some(ImageFilter { image: spec(image) }),
    };
    let by_ref = images
        .list_images(filtered(&format!("{UPSTREAM}/busybox")))
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(by_ref.len(), 1);
    let none = images
        .list_images(filtered("docker.io/library/other:1"))
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(none.is_empty(), "{none:?}");

    // ImageStatus by name, by id and by repo digest; verbose info as containerd's.
    for by in [
        name.clone(),
        config.clone(),
        format!("{UPSTREAM}/busybox@{manifest}"),
    ] {
        let st = images
            .image_status(ImageStatusRequest {
                image: spec(&by),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.image.as_ref(), Some(image), "status of {by}");
        let info: serde_json::Value =
            serde_json::from_str(st.info.get("info").expect("verbose info")).unwrap();
        assert!(info["chainID"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(info["manifestDigest"].as_str(), Some(manifest.as_str()));
    }

    // Pulling again: the same id, with nothing to download.
    let started = Instant::now();
    let again = images
        .pull_image(pull_request(&name))
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    let second_pull = started.elapsed();
    assert_eq!(again, id);
    eprintln!("first pull {first_pull:?}, second pull {second_pull:?}");
    assert!(
        second_pull < Duration::from_secs(5),
        "second pull took {second_pull:?}"
    );

    // The image filesystem: the overlayfs snapshotter's root, with the unpacked layers in it.
    let fs = images
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let usage = &fs.image_filesystems[0];
    assert!(usage
        .fs_id
        .as_ref()
        .unwrap()
        .mountpoint
        .ends_with("io.containerd.snapshotter.v1.overlayfs"));
    assert!(usage.used_bytes.as_ref().unwrap().value > 0);
    assert!(usage.inodes_used.as_ref().unwrap().value > 10);
    assert!(usage.timestamp > 0);

    // Not built yet: said so, with the right code.
    let e = runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e:?}");
    assert!(
        e.message().contains("ListPodSandbox is not built yet"),
        "{e:?}"
    );

    // A missing image: a clear error naming it.
    let missing = format!("{UPSTREAM}/nonexistent:latest");
    let e = images.pull_image(pull_request(&missing)).await.unwrap_err();
    assert_ne!(e.code(), tonic::Code::Ok);
    assert!(e.message().contains(&missing), "{e:?}");

    // RemoveImage: every name goes; the image is gone; removing again is not an error.
    images
        .remove_image(RemoveImageRequest { image: spec(&name) })
        .await
        .unwrap();
    for by in [name.clone(), config.clone()] {
        let st = images
            .image_status(ImageStatusRequest {
                image: spec(&by),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.image, None, "status of {by} after removal");
    }
    let left = images
        .list_images(ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(left.is_empty(), "{left:?}");
    images
        .remove_image(RemoveImageRequest { image: spec(&name) })
        .await
        .unwrap();
}

/// An HPACK integer with an `n`-bit prefix whose other bits are `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// What crictl and critest v1.26.1 (Go gRPC of Kubernetes 1.26) send: the socket's path as
/// the HTTP/2 `:authority`. hyper's h2 alone resets such a stream (PROTOCOL_ERROR); berthd
/// answers it. The request is written frame by frame, as those clients' HPACK encoder does
/// (a literal `:authority` value), and the answer must be response headers, not a reset.
#[test]
fn cri_answers_a_request_whose_authority_is_the_socket_path() {
    use std::io::{Read, Write};
    let Some(_s) = setup(
        "cri_answers_a_request_whose_authority_is_the_socket_path",
        &[],
    ) else {
        return;
    };
    let b = Berthd::start();
    let sock = b.address();
    let path = sock.to_str().unwrap().as_bytes().to_vec();
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    let literal = |block: &mut Vec<u8>, index: usize, value: &[u8]| {
        hpack_int(block, 0x00, 4, index); // literal without indexing, indexed name
        hpack_int(block, 0x00, 7, value.len());
        block.extend_from_slice(value);
    };
    literal(&mut block, 4, b"/runtime.v1.RuntimeService/Version");
    literal(&mut block, 1, &path); // :authority
    literal(&mut block, 31, b"application/grpc");
    block.extend_from_slice(&[0x00, 2, b't', b'e', 8]);
    block.extend_from_slice(b"trailers");

    let mut conn = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[])); // SETTINGS
    out.extend(frame(1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    out.extend(frame(0, 0x1, 1, &[0, 0, 0, 0, 0])); // an empty VersionRequest, END_STREAM
    conn.write_all(&out).unwrap();

    let mut answer = None;
    for _ in 0..20 {
        let mut h = [0u8; 9];
        conn.read_exact(&mut h).unwrap();
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).unwrap();
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        if stream == 1 && (h[3] == 1 || h[3] == 3) {
            answer = Some((h[3], payload));
            break;
        }
    }
    let (kind, payload) = answer.expect("an answer on stream 1");
    assert_eq!(
        kind, 1,
        "stream 1 reset (error code {payload:?}) instead of answered"
    );
}
