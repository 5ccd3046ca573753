//! berth-client: a thin client for berthd over containerd's v1 gRPC API.
//!
//! It speaks the wire protocol of containerd's Go client, so it works against berthd and against
//! containerd itself: the namespace travels in the `containerd-namespace` metadata header, a lease
//! in `containerd-lease`, and gRPC status codes map back onto [`berth_core::ErrorKind`] the way
//! containerd's `errgrpc.ToNative` maps them onto `errdefs`.
//!
//! - [`connect`] opens a channel to a unix socket;
//! - [`RemoteContentStore`] / [`RemoteWriter`] implement [`berth_core::content::ContentStore`] and
//!   [`berth_core::content::ContentWriter`] over the Content service;
//! - [`RemoteLeases`] implements [`berth_core::leases::LeaseManager`] over the Leases service;
//! - [`RemoteImages`] implements [`berth_core::images::ImageStore`] over the Images service;
//! - [`RemoteSnapshotter`] implements [`berth_core::snapshots::Snapshotter`] over the Snapshots
//!   service, for one snapshotter in one namespace;
//! - [`RemoteDiff`] applies layers and computes diffs over the Diff service, and is the
//!   [`berth_images::LayerApplier`] of unpacks run from a client;
//! - [`RemoteContainers`] implements [`berth_core::containers::ContainerStore`] over the
//!   Containers service;
//! - [`RemoteTasks`] creates, starts, signals, waits for and deletes tasks and execs over the
//!   Tasks service;
//! - [`RemoteEvents`] subscribes to the Events service;
//! - [`RemoteNamespaces`] and [`server_version`] cover the Namespaces and Version services.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::SystemTime;

use berth_core::{Error, ErrorKind};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

mod containers;
mod content;
mod diff;
mod events;
mod images;
mod leases;
mod namespaces;
pub mod snapshots;
mod stores;
mod tasks;

pub use containers::RemoteContainers;
pub use content::{RemoteContentStore, RemoteWriter};
pub use diff::{remote_unpacker, DiffOptions, RemoteDiff, RemoteSnapshotters, RemoteUnpacker};
pub use events::{Envelope, EventStream, RemoteEvents};
pub use images::RemoteImages;
pub use leases::RemoteLeases;
pub use namespaces::{server_uuid, server_version, RemoteNamespaces, ServerVersion};
pub use snapshots::RemoteSnapshotter;
pub use stores::RemoteStores;
pub use tasks::RemoteTasks;

/// The generated containerd API types and clients this crate is built on.
pub use containerd_client as api;

/// The gRPC metadata header that carries the namespace (containerd's `namespaces.GRPCHeader`).
pub const NAMESPACE_HEADER: &str = berth_core::namespaces::GRPC_HEADER;
/// The gRPC metadata header that carries the lease (containerd's `leases.GRPCHeader`).
pub const LEASE_HEADER: &str = berth_core::leases::GRPC_HEADER;

/// The largest gRPC message the clients of this crate accept (containerd's default is 16 MiB).
pub(crate) const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// Connect to the daemon's unix socket at `path`.
///
/// Fails with `Unavailable`, naming the socket, when nothing answers there, e.g.
/// `connect to /run/berth/berthd.sock: no such file or directory (os error 2): unavailable`.
pub async fn connect(path: impl AsRef<Path>) -> Result<Channel, Error> {
    let path = path.as_ref();
    containerd_client::connect(path).await.map_err(|e| {
        Error::unavailable(format!(
            "connect to {}: {}",
            path.display(),
            innermost_message(&e)
        ))
    })
}

/// The message of the deepest cause of `e` (transport errors only say "transport error" at the
/// top), with its first letter lowercased as containerd's messages are.
fn innermost_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let msg = cur.to_string();
    let mut chars = msg.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => e.to_string(),
    }
}

/// Map a gRPC status onto a berth [`Error`], keeping its message, as containerd's
/// `errgrpc.ToNative` does.
pub fn status_to_error(s: tonic::Status) -> Error {
    use tonic::Code;
    let kind = match s.code() {
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::InvalidArgument => ErrorKind::InvalidArgument,
        Code::FailedPrecondition => ErrorKind::FailedPrecondition,
        Code::Unavailable => ErrorKind::Unavailable,
        Code::OutOfRange => ErrorKind::OutOfRange,
        Code::Aborted => ErrorKind::Aborted,
        Code::Unimplemented => ErrorKind::NotImplemented,
        Code::Cancelled => ErrorKind::Canceled,
        Code::DataLoss => ErrorKind::DataLoss,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Internal,
    };
    let message = if s.message().is_empty() {
        format!("{}: {}", s.code().description(), kind.as_str())
    } else {
        s.message().to_string()
    };
    Error::new(kind, message)
}

/// Wrap `msg` in a request carrying the namespace header (always) and the lease header (when
/// `lease` is set), exactly as containerd's Go client sends them.
///
/// A namespace or lease that cannot be a header value (non-visible ASCII) is left out; the server
/// then rejects the request, as it would reject such a name anyway.
pub fn request<T>(msg: T, ns: &str, lease: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let md = req.metadata_mut();
    if let Ok(v) = AsciiMetadataValue::try_from(ns) {
        md.insert(NAMESPACE_HEADER, v);
    }
    if let Some(lease) = lease {
        if let Ok(v) = AsciiMetadataValue::try_from(lease) {
            md.insert(LEASE_HEADER, v);
        }
    }
    req
}

/// A protobuf timestamp as a [`SystemTime`]; absent or out-of-range times read as the epoch.
pub(crate) fn to_time(ts: Option<prost_types::Timestamp>) -> SystemTime {
    ts.and_then(|ts| SystemTime::try_from(ts).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A [`SystemTime`] as a protobuf timestamp.
pub(crate) fn from_time(t: SystemTime) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp::from(t))
}

/// A protobuf label map as berth's ordered map.
pub(crate) fn to_labels(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

/// Berth's ordered label map as a protobuf map.
pub(crate) fn from_labels(m: BTreeMap<String, String>) -> HashMap<String, String> {
    m.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tonic::Code;

    #[test]
    fn status_codes_map_to_error_kinds() {
        let cases = [
            (Code::NotFound, ErrorKind::NotFound),
            (Code::AlreadyExists, ErrorKind::AlreadyExists),
            (Code::InvalidArgument, ErrorKind::InvalidArgument),
            (Code::FailedPrecondition, ErrorKind::FailedPrecondition),
            (Code::Unavailable, ErrorKind::Unavailable),
            (Code::OutOfRange, ErrorKind::OutOfRange),
            (Code::Aborted, ErrorKind::Aborted),
            (Code::Unimplemented, ErrorKind::NotImplemented),
            (Code::Cancelled, ErrorKind::Canceled),
            (Code::DataLoss, ErrorKind::DataLoss),
            (Code::PermissionDenied, ErrorKind::PermissionDenied),
            (Code::Unknown, ErrorKind::Internal),
            (Code::Internal, ErrorKind::Internal),
            (Code::DeadlineExceeded, ErrorKind::Internal),
            (Code::ResourceExhausted, ErrorKind::Internal),
            (Code::Unauthenticated, ErrorKind::Internal),
        ];
        for (code, kind) in cases {
            let e = status_to_error(tonic::Status::new(code, "thing x: whatever"));
            assert_eq!(e.kind(), kind, "{code:?}");
            assert_eq!(e.message(), "thing x: whatever");
        }
    }

    #[test]
    fn status_message_is_kept_verbatim() {
        let e = status_to_error(tonic::Status::not_found("content sha256:abc: not found"));
        assert_eq!(e.to_string(), "content sha256:abc: not found");
    }

    #[test]
    fn empty_status_message_gets_a_description() {
        let e = status_to_error(tonic::Status::new(Code::Unavailable, ""));
        assert!(e.is(ErrorKind::Unavailable));
        assert!(e.message().ends_with(": unavailable"), "{}", e.message());
    }

    #[test]
    fn request_carries_namespace_header() {
        let req = request((), "default", None);
        let md = req.metadata();
        assert_eq!(md.get("containerd-namespace").unwrap(), "default");
        assert!(md.get("containerd-lease").is_none());
    }

    #[test]
    fn request_carries_lease_header_when_given() {
        let req = request(7u32, "ns-1", Some("my-lease"));
        assert_eq!(*req.get_ref(), 7);
        let md = req.metadata();
        assert_eq!(md.get("containerd-namespace").unwrap(), "ns-1");
        assert_eq!(md.get("containerd-lease").unwrap(), "my-lease");
        assert_eq!(md.len(), 2);
    }

    #[test]
    fn request_with_unrepresentable_namespace_leaves_header_out() {
        let req = request((), "bad\nname", None);
        assert!(req.metadata().get("containerd-namespace").is_none());
    }

    #[test]
    fn timestamps_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(to_time(from_time(t)), t);
        assert_eq!(to_time(None), SystemTime::UNIX_EPOCH);
    }

    #[tokio::test]
    async fn connect_failure_names_the_socket() {
        let dir = std::env::temp_dir().join(format!("berth-client-test-{}", std::process::id()));
        let sock = dir.join("absent.sock");
        let e = connect(&sock).await.unwrap_err();
        assert!(e.is(ErrorKind::Unavailable));
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("connect to {}: ", sock.display())),
            "{msg}"
        );
        assert!(msg.ends_with(": unavailable"), "{msg}");
    }
}
