//! Content.Read with offsets and sizes from the client: containerd reads to the end of the blob
//! when the size is 0 or less, or reaches past the end, whatever the sum of offset and size.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use berth_api::content::content_server::Content;
use berth_api::services::v1::ReadContentRequest;
use berth_content::LocalStore;
use berth_core::content::{ContentStore, ContentWriter, WriterOptions};
use berth_core::Digest;
use berth_metadata::Metadata;
use berth_services::content::ContentService;
use berth_services::events::Exchange;
use tokio_stream::StreamExt;

const NS: &str = "read";
const BLOB: &[u8] = b"0123456789";

async fn service(dir: &tempfile::TempDir) -> (ContentService<Metadata>, Digest) {
    let blobs = LocalStore::open(dir.path().join("content")).unwrap();
    let m = Metadata::open(dir.path().join("meta.redb"), blobs).unwrap();
    let digest = Digest::sha256_of(BLOB);
    let mut w = m
        .writer(
            NS,
            WriterOptions {
                reference: "blob".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.write(BLOB).await.unwrap();
    w.commit(BLOB.len() as i64, Some(digest.clone()), Default::default())
        .await
        .unwrap();
    let svc = ContentService {
        store: Arc::new(m),
        exchange: Exchange::new(),
    };
    (svc, digest)
}

async fn read(
    svc: &ContentService<Metadata>,
    digest: &Digest,
    offset: i64,
    size: i64,
) -> Result<Vec<u8>, tonic::Status> {
    let mut req = tonic::Request::new(ReadContentRequest {
        digest: digest.to_string(),
        offset,
        size,
    });
    req.metadata_mut()
        .insert(berth_core::namespaces::GRPC_HEADER, NS.parse().unwrap());
    let mut stream = svc.read(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        out.extend(msg?.data);
    }
    Ok(out)
}

#[tokio::test]
async fn sizes_past_the_end_read_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, d) = service(&dir).await;
    assert_eq!(read(&svc, &d, 4, 3).await.unwrap(), b"456");
    assert_eq!(read(&svc, &d, 4, 100).await.unwrap(), b"456789");
    // offset + size overflows i64.
    assert_eq!(read(&svc, &d, 4, i64::MAX).await.unwrap(), b"456789");
    assert_eq!(read(&svc, &d, 10, i64::MAX).await.unwrap(), b"");
}

#[tokio::test]
async fn sizes_of_zero_or_less_read_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, d) = service(&dir).await;
    assert_eq!(read(&svc, &d, 7, 0).await.unwrap(), b"789");
    assert_eq!(read(&svc, &d, 7, -1).await.unwrap(), b"789");
    assert_eq!(read(&svc, &d, 7, i64::MIN).await.unwrap(), b"789");
}

#[tokio::test]
async fn negative_offsets_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, d) = service(&dir).await;
    assert_eq!(read(&svc, &d, -5, 2).await.unwrap(), b"01");
    assert_eq!(read(&svc, &d, i64::MIN, i64::MAX).await.unwrap(), BLOB);
}

#[tokio::test]
async fn offsets_past_the_end_are_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, d) = service(&dir).await;
    let e = read(&svc, &d, 11, 1).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e}");
    let e = read(&svc, &d, i64::MAX, i64::MAX).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e}");
}
