//! containerd API fidelity (issue #14): berthd driven through the same RPCs that containerd's Go
//! client (v1.6) sends, each expectation written beside the test, and where practical the same
//! test run against Debian's containerd 1.6.20 (started beside berthd) to prove the expectation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_client::api::services::v1 as api;
use berth_client::api::services::v1::container::Runtime;
use berth_core::Digest;
use berth_integration_tests::{enabled, Berthd, Containerd};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

const NS: &str = "fidelity";

/// `req` with containerd's namespace header and, if given, its lease header.
fn request<T>(msg: T, lease: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("containerd-namespace", NS.parse().unwrap());
    if let Some(l) = lease {
        req.metadata_mut()
            .insert("containerd-lease", l.parse().unwrap());
    }
    req
}

/// berthd, and containerd beside it when installed.
async fn daemons(test: &str) -> Option<(Berthd, Option<Containerd>)> {
    if !enabled(test) {
        return None;
    }
    Some((Berthd::start(), Containerd::start()))
}

async fn channel_to(address: &Path) -> Channel {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match berth_client::connect(address).await {
            Ok(c) => return c,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("connect to {}: {e}", address.display()),
        }
    }
}

/// Each daemon under test, by name: berthd first, then containerd when it is installed.
async fn endpoints(b: &Berthd, c: &Option<Containerd>) -> Vec<(&'static str, PathBuf, Channel)> {
    let mut v = vec![("berthd", b.address(), b.channel().await)];
    if let Some(c) = c {
        v.push(("containerd", c.address(), channel_to(&c.address()).await));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Item 1: the gRPC health service.

/// containerd's `client.IsServing` sends `grpc.health.v1.Health/Check` with an empty service
/// name and needs `SERVING`; containerd registers the standard health server at start-up.
#[tokio::test]
async fn health_check_answers_serving() {
    let Some((b, c)) = daemons("health_check_answers_serving").await else {
        return;
    };
    for (who, _, ch) in endpoints(&b, &c).await {
        let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
        let resp = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{who}: Health/Check: {e}"));
        assert_eq!(
            resp.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{who}: Health/Check status"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Item 3: Namespaces.Update on a missing namespace.

/// The Go client's `NamespaceStore.SetLabel` sends Update with mask `labels.<key>`; containerd's
/// namespace store sets the label with `createBucketIfNotExists`, so a missing namespace is
/// created carrying that label (no NotFound).
#[tokio::test]
async fn namespace_set_label_creates_a_missing_namespace() {
    let Some((b, c)) = daemons("namespace_set_label_creates_a_missing_namespace").await else {
        return;
    };
    for (who, _, ch) in endpoints(&b, &c).await {
        let mut ns = api::namespaces_client::NamespacesClient::new(ch);
        let name = "set-label-here".to_string();
        // The client's context carries a namespace (containerd needs one to publish the event).
        ns.update(request(
            api::UpdateNamespaceRequest {
                namespace: Some(api::Namespace {
                    name: name.clone(),
                    labels: HashMap::from([("team".into(), "berth".into())]),
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["labels.team".into()],
                }),
            },
            None,
        ))
        .await
        .unwrap_or_else(|e| panic!("{who}: SetLabel on a missing namespace: {e}"));
        let got = ns
            .get(api::GetNamespaceRequest { name })
            .await
            .unwrap_or_else(|e| panic!("{who}: Get after SetLabel: {e}"))
            .into_inner()
            .namespace
            .unwrap();
        assert_eq!(
            got.labels.get("team").map(String::as_str),
            Some("berth"),
            "{who}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Item 4: Content.Write semantics.

/// One Content.Write stream, driven message by message as the Go client's remote writer does.
struct WriteStream {
    tx: mpsc::Sender<api::WriteContentRequest>,
    rx: tonic::Streaming<api::WriteContentResponse>,
}

impl WriteStream {
    async fn open(
        ch: &Channel,
        lease: Option<&str>,
        first: api::WriteContentRequest,
    ) -> Result<(WriteStream, api::WriteContentResponse), tonic::Status> {
        let (tx, rx) = mpsc::channel(4);
        tx.send(first).await.unwrap();
        let mut client = api::content_client::ContentClient::new(ch.clone());
        let mut rx = client
            .write(request(ReceiverStream::new(rx), lease))
            .await?
            .into_inner();
        let resp = rx
            .message()
            .await?
            .ok_or_else(|| tonic::Status::internal("write stream closed"))?;
        Ok((WriteStream { tx, rx }, resp))
    }

    async fn send(
        &mut self,
        req: api::WriteContentRequest,
    ) -> Result<api::WriteContentResponse, tonic::Status> {
        self.tx
            .send(req)
            .await
            .map_err(|_| tonic::Status::internal("write stream closed"))?;
        self.rx
            .message()
            .await?
            .ok_or_else(|| tonic::Status::internal("write stream closed"))
    }
}

fn stat(reference: &str) -> api::WriteContentRequest {
    api::WriteContentRequest {
        action: api::WriteAction::Stat as i32,
        r#ref: reference.into(),
        ..Default::default()
    }
}

fn write_at(reference: &str, offset: i64, data: &[u8]) -> api::WriteContentRequest {
    api::WriteContentRequest {
        action: api::WriteAction::Write as i32,
        r#ref: reference.into(),
        offset,
        data: data.to_vec(),
        ..Default::default()
    }
}

fn commit_at(
    reference: &str,
    offset: i64,
    total: i64,
    expected: &Digest,
) -> api::WriteContentRequest {
    api::WriteContentRequest {
        action: api::WriteAction::Commit as i32,
        r#ref: reference.into(),
        offset,
        total,
        expected: expected.to_string(),
        ..Default::default()
    }
}

fn time_of(ts: Option<prost_types::Timestamp>) -> SystemTime {
    let ts = ts.expect("timestamp present");
    SystemTime::UNIX_EPOCH + Duration::new(ts.seconds as u64, ts.nanos as u32)
}

/// containerd's local writer records `updatedAt = time.Now()` in each Write and its Status
/// reports that time; the Write stream's Stat answers `ws.UpdatedAt` from it. So the time
/// reported for an ingest in progress is that of its last write, not of the question.
#[tokio::test]
async fn ingest_updated_at_is_the_time_of_its_last_write() {
    let Some((b, c)) = daemons("ingest_updated_at_is_the_time_of_its_last_write").await else {
        return;
    };
    for (who, _, ch) in endpoints(&b, &c).await {
        let r = "updated-at-ref";
        let (mut w, _) = WriteStream::open(&ch, None, stat(r)).await.unwrap();
        w.send(write_at(r, 0, b"first bytes")).await.unwrap();
        let after_write = SystemTime::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let st = w.send(stat(r)).await.unwrap();
        let updated = time_of(st.updated_at);
        assert!(
            updated <= after_write,
            "{who}: updated_at {updated:?} is later than the last write ({after_write:?})"
        );
        // Status (the unary call) agrees within the file system's time resolution.
        let mut client = api::content_client::ContentClient::new(ch.clone());
        let s = client
            .status(request(api::StatusRequest { r#ref: r.into() }, None))
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        let listed = time_of(s.updated_at);
        assert!(
            listed <= after_write + Duration::from_millis(20),
            "{who}: Status updated_at {listed:?} after the last write ({after_write:?})"
        );
    }
}

/// containerd's local writer's Commit returns FailedPrecondition on a wrong size or digest and
/// leaves the ingest where it is (only the writer is closed), so reopening the same ref resumes
/// at the bytes written so far and the commit can be retried.
#[tokio::test]
async fn failed_commit_keeps_the_ingest_for_a_retry() {
    let Some((b, c)) = daemons("failed_commit_keeps_the_ingest_for_a_retry").await else {
        return;
    };
    for (who, _, ch) in endpoints(&b, &c).await {
        let r = "retry-ref";
        let whole = b"hello world";
        let d = Digest::sha256_of(whole);
        let (mut w, _) = WriteStream::open(&ch, None, stat(r)).await.unwrap();
        w.send(write_at(r, 0, &whole[..9])).await.unwrap();
        let err = w
            .send(commit_at(r, 9, whole.len() as i64, &d))
            .await
            .expect_err("commit of 9 of 11 bytes must fail");
        assert_eq!(err.code(), Code::FailedPrecondition, "{who}: {err}");
        drop(w);
        // Reopen: containerd resumes at offset 9.
        let mut reopened = None;
        for _ in 0..50 {
            match WriteStream::open(&ch, None, stat(r)).await {
                Ok(x) => {
                    reopened = Some(x);
                    break;
                }
                Err(e) if e.code() == Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("{who}: reopen {r}: {e}"),
            }
        }
        let (mut w, st) = reopened.unwrap_or_else(|| panic!("{who}: {r} stayed locked"));
        assert_eq!(st.offset, 9, "{who}: reopened ingest offset");
        let mut last = write_at(r, 9, &whole[9..]);
        last.action = api::WriteAction::Commit as i32;
        last.total = whole.len() as i64;
        last.expected = d.to_string();
        let done = w
            .send(last)
            .await
            .unwrap_or_else(|e| panic!("{who}: retried commit: {e}"));
        assert_eq!(done.digest, d.to_string(), "{who}");
    }
}

/// containerd's metadata Abort deletes the ingest record and the local store's Abort removes the
/// ingest directory without asking for the writer's lock, so Abort of a ref that a live
/// writer (an open Write stream) still holds succeeds and the ingest is gone.
#[tokio::test]
async fn abort_of_a_held_ref_aborts_it() {
    let Some((b, c)) = daemons("abort_of_a_held_ref_aborts_it").await else {
        return;
    };
    for (who, _, ch) in endpoints(&b, &c).await {
        let r = "held-ref";
        let (mut w, _) = WriteStream::open(&ch, None, stat(r)).await.unwrap();
        w.send(write_at(r, 0, b"partial")).await.unwrap();
        let mut client = api::content_client::ContentClient::new(ch.clone());
        client
            .abort(request(api::AbortRequest { r#ref: r.into() }, None))
            .await
            .unwrap_or_else(|e| panic!("{who}: Abort of a held ref: {e}"));
        let err = client
            .status(request(api::StatusRequest { r#ref: r.into() }, None))
            .await
            .expect_err("status after abort");
        assert_eq!(err.code(), Code::NotFound, "{who}: {err}");
        drop(w);
    }
}

// ---------------------------------------------------------------------------------------------
// Item 5: import under a lease while the collector runs.

/// Write `data` as the Go client's importer does (`content.WriteBlob` with a `tar-` ref and, for
/// some blobs, the descriptor), under `lease`; AlreadyExists counts as written, as in
/// `content.Copy`.
async fn write_blob(
    ch: &Channel,
    lease: &str,
    reference: &str,
    data: &[u8],
    with_digest: bool,
    labels: HashMap<String, String>,
) -> Digest {
    let d = Digest::sha256_of(data);
    let mut first = stat(reference);
    if with_digest {
        first.total = data.len() as i64;
        first.expected = d.to_string();
    }
    let (mut w, st) = match WriteStream::open(ch, Some(lease), first).await {
        Ok(x) => x,
        Err(e) if e.code() == Code::AlreadyExists => return d,
        Err(e) => panic!("open writer {reference}: {e}"),
    };
    let mut commit = write_at(reference, 0, data);
    if st.offset == data.len() as i64 {
        commit.data.clear();
        commit.offset = st.offset;
    }
    commit.action = api::WriteAction::Commit as i32;
    commit.total = data.len() as i64;
    // `content.WriteBlob` commits with the descriptor's digest: none for the importer's
    // `tar-` blobs (containerd's service answers AlreadyExists for an expected digest it has
    // without leasing it; the metadata store's Commit leases it on its AlreadyExists path).
    if with_digest {
        commit.expected = d.to_string();
    }
    commit.labels = labels;
    match w.send(commit).await {
        Ok(_) => {}
        Err(e) if e.code() == Code::AlreadyExists => {}
        Err(e) => panic!("commit {reference}: {e}"),
    }
    d
}

/// Run a collection now, as a client can: delete a scratch lease with `sync`.
async fn collect(ch: &Channel, n: u64) {
    let mut leases = api::leases_client::LeasesClient::new(ch.clone());
    let id = format!("gc-trigger-{n}");
    leases
        .create(request(
            api::CreateRequest {
                id: id.clone(),
                labels: HashMap::new(),
            },
            None,
        ))
        .await
        .unwrap();
    leases
        .delete(request(api::DeleteRequest { id, sync: true }, None))
        .await
        .unwrap();
}

fn layer(iteration: usize, i: usize) -> Vec<u8> {
    (0..64 * 1024 + i * 1000)
        .map(|n| ((n * (i + 3) + iteration * 7) % 251) as u8)
        .collect()
}

/// One import of a four-layer image in the Go client's order (blobs, manifest with its
/// `gc.ref.content` labels, image record, lease deleted), of layers that are already in the
/// store, held by something that goes (with a collection) between the layers and the manifest,
/// while another task runs collections continuously.
async fn import_while_collecting(who: &str, ch: &Channel, iteration: usize) {
    let layers: Vec<Vec<u8>> = (0..4).map(|i| layer(iteration, i)).collect();
    // The layers are already here, unreferenced (an image exported, then deleted): the records
    // exist until a collection takes them.
    let scratch = format!("pre-{iteration}");
    let mut leases = api::leases_client::LeasesClient::new(ch.clone());
    leases
        .create(request(
            api::CreateRequest {
                id: scratch.clone(),
                labels: HashMap::new(),
            },
            None,
        ))
        .await
        .unwrap();
    for (i, l) in layers.iter().enumerate() {
        write_blob(
            ch,
            &scratch,
            &format!("pre-{iteration}-{i}"),
            l,
            true,
            HashMap::new(),
        )
        .await;
    }

    // The import, under its lease (the Go client's WithLease: 24h expiry).
    let lease = format!("import-{iteration}");
    leases
        .create(request(
            api::CreateRequest {
                id: lease.clone(),
                labels: HashMap::from([(
                    "containerd.io/gc.expire".into(),
                    "2099-01-01T00:00:00Z".into(),
                )]),
            },
            None,
        ))
        .await
        .unwrap();
    let mut digests = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let with_digest = i % 2 == 1;
        digests.push(
            write_blob(
                ch,
                &lease,
                &format!("tar-{iteration}-{i}"),
                l,
                with_digest,
                HashMap::new(),
            )
            .await,
        );
    }
    // What held the layers before goes while the import runs (the exported image deleted), and
    // the collector runs: now only the import's lease holds them.
    leases
        .delete(request(
            api::DeleteRequest {
                id: scratch,
                sync: true,
            },
            None,
        ))
        .await
        .unwrap();
    let config = format!("{{\"iteration\":{iteration}}}").into_bytes();
    let config_d = write_blob(
        ch,
        &lease,
        &format!("tar-cfg-{iteration}"),
        &config,
        false,
        HashMap::new(),
    )
    .await;
    let manifest = format!(
        "{{\"schemaVersion\":2,\"config\":\"{config_d}\",\"layers\":[{}]}}",
        digests
            .iter()
            .map(|d| format!("\"{d}\""))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes();
    let mut labels: HashMap<String, String> = HashMap::from([(
        "containerd.io/gc.ref.content.config".into(),
        config_d.to_string(),
    )]);
    for (i, d) in digests.iter().enumerate() {
        labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), d.to_string());
    }
    let manifest_d = write_blob(
        ch,
        &lease,
        &format!("tar-manifest-{iteration}"),
        &manifest,
        false,
        labels,
    )
    .await;
    let mut images = api::images_client::ImagesClient::new(ch.clone());
    let name = format!("import.test/fidelity:{iteration}");
    images
        .create(request(
            api::CreateImageRequest {
                image: Some(api::Image {
                    name: name.clone(),
                    target: Some(berth_client::api::types::Descriptor {
                        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                        digest: manifest_d.to_string(),
                        size: manifest.len() as i64,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap();
    leases
        .delete(request(
            api::DeleteRequest {
                id: lease,
                sync: false,
            },
            None,
        ))
        .await
        .unwrap();
    collect(ch, iteration as u64 * 1000 + 1).await;
    let mut content = api::content_client::ContentClient::new(ch.clone());
    for d in digests.iter().chain([&config_d, &manifest_d]) {
        if let Err(e) = content
            .info(request(
                api::InfoRequest {
                    digest: d.to_string(),
                },
                None,
            ))
            .await
        {
            panic!("{who}: iteration {iteration}: content {d} of the imported image: {e}");
        }
    }
    // Leave nothing for the next iteration: the image goes, and with it its blobs.
    images
        .delete(request(
            api::DeleteImageRequest {
                name,
                sync: true,
                ..Default::default()
            },
            None,
        ))
        .await
        .unwrap();
}

/// containerd's metadata content store adds content to the writer's lease in the same
/// transaction that finds it (`addContentLease`, in `Writer` when the digest is recorded, and in
/// `Commit` also on the AlreadyExists path), under the collector's shared lock; so nothing an
/// import wrote under its lease can be collected before the image record holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_under_a_lease_survives_concurrent_collections() {
    let Some((b, c)) = daemons("import_under_a_lease_survives_concurrent_collections").await else {
        return;
    };
    for (who, _, ch) in endpoints(&b, &c).await {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hammer = {
            let ch = ch.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 1;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    collect(&ch, n).await;
                    n += 1;
                }
            })
        };
        let iterations = if who == "berthd" { 20 } else { 5 };
        for i in 0..iterations {
            import_while_collecting(who, &ch, i).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        hammer.await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Item 2: the ttrpc API socket.

/// containerd serves its ttrpc services at `<grpc address>.ttrpc` (in 1.6 the events service,
/// `containerd.services.events.ttrpc.v1.Events/Forward`, used by shims and ttrpc clients), with
/// the gRPC socket's permissions. An envelope forwarded there reaches gRPC subscribers.
#[tokio::test]
async fn ttrpc_api_socket_forwards_events() {
    use containerd_shim_protos::protobuf::well_known_types::any::Any;
    use containerd_shim_protos::shim::event::Envelope;
    use containerd_shim_protos::shim::events::ForwardRequest;
    use std::os::unix::fs::PermissionsExt;
    let Some((b, c)) = daemons("ttrpc_api_socket_forwards_events").await else {
        return;
    };
    for (who, address, ch) in endpoints(&b, &c).await {
        let ttrpc_path = PathBuf::from(format!("{}.ttrpc", address.display()));
        // The gRPC socket accepts connections from its bind, a moment before the ttrpc one.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !ttrpc_path.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(
            mode(&ttrpc_path).unwrap_or_else(|e| panic!("{who}: {}: {e}", ttrpc_path.display())),
            mode(&address).unwrap(),
            "{who}: the ttrpc socket has the gRPC socket's mode"
        );
        let path = ttrpc_path.clone();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let forwarder = std::thread::spawn(move || {
            let client = containerd_shim_protos::EventsClient::new(
                ttrpc::Client::connect(&format!("unix://{}", path.display()))
                    .expect("connect to the ttrpc socket"),
            );
            for _ in 0..100 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let mut any = Any::new();
                any.type_url = "containerd.events.ContainerDelete".into();
                let mut env = Envelope::new();
                env.namespace = NS.into();
                env.topic = "/fidelity/ttrpc".into();
                env.timestamp = Some(
                    containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp::now(),
                )
                .into();
                env.event = Some(any).into();
                let mut req = ForwardRequest::new();
                req.envelope = Some(env).into();
                client
                    .forward(ttrpc::context::with_duration(Duration::from_secs(5)), &req)
                    .expect("Events/Forward over ttrpc");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // Subscribe while the forwarder runs: containerd sends the stream's headers with its
        // first event, so the call returns only then.
        let mut events = api::events_client::EventsClient::new(ch.clone());
        let mut sub = tokio::time::timeout(
            Duration::from_secs(10),
            events.subscribe(api::SubscribeRequest {
                filters: vec!["topic==\"/fidelity/ttrpc\"".into()],
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("{who}: no event from the ttrpc socket"))
        .unwrap()
        .into_inner();
        let got = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap_or_else(|_| panic!("{who}: no event from the ttrpc socket"))
            .unwrap()
            .unwrap();
        assert_eq!(got.topic, "/fidelity/ttrpc", "{who}");
        assert_eq!(got.namespace, NS, "{who}");
        drop(sub);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        forwarder.join().expect("forwarder");
    }
}

// ---------------------------------------------------------------------------------------------
// Item 7: the legacy v1 runtime name.

/// containerd 1.6 still runs containers created with `io.containerd.runtime.v1.linux` (its v1
/// shim). berthd has no v1 shim and refuses such a task with FailedPrecondition naming the
/// runtimes it serves (the choice is in ARCHITECTURE.md), instead of looking for a
/// `containerd-shim-v1-linux` binary.
#[tokio::test]
async fn legacy_v1_runtime_is_refused_naming_the_supported_ones() {
    if !enabled("legacy_v1_runtime_is_refused_naming_the_supported_ones") {
        return;
    }
    let b = Berthd::start();
    let ch = b.channel().await;
    let mut containers = api::containers_client::ContainersClient::new(ch.clone());
    containers
        .create(request(
            api::CreateContainerRequest {
                container: Some(api::Container {
                    id: "legacy".into(),
                    runtime: Some(Runtime {
                        name: "io.containerd.runtime.v1.linux".into(),
                        options: None,
                    }),
                    spec: Some(prost_types::Any {
                        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                        value: br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"}}"#.to_vec(),
                    }),
                    ..Default::default()
                }),
            },
            None,
        ))
        .await
        .expect("containerd stores a container of any runtime name");
    let mut tasks = api::tasks_client::TasksClient::new(ch);
    let err = tasks
        .create(request(
            api::CreateTaskRequest {
                container_id: "legacy".into(),
                ..Default::default()
            },
            None,
        ))
        .await
        .expect_err("no v1 runtime in berthd");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    for name in ["io.containerd.runtime.v1.linux", "io.containerd.runc.v2"] {
        assert!(
            err.message().contains(name),
            "{name} not named in: {}",
            err.message()
        );
    }
}
