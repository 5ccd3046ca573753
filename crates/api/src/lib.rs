//! Server stubs for containerd's v1 gRPC API.
//!
//! Generated at build time from the .proto files shipped inside the `containerd-client` package;
//! message types are containerd-client's own (re-exported here as [`types`], [`services`],
//! [`events`]), so a berth server and a containerd client share one wire format by construction.

#![allow(clippy::all, missing_debug_implementations)]

pub use containerd_client::{events, google, services, to_any, types};
pub use prost_types;

pub mod convert;

macro_rules! server {
    ($mod:ident, $pkg:literal) => {
        #[allow(missing_docs)]
        pub mod $mod {
            tonic::include_proto!($pkg);
        }
    };
}

server!(containers, "containerd.services.containers.v1");
server!(content, "containerd.services.content.v1");
server!(diff, "containerd.services.diff.v1");
server!(events_service, "containerd.services.events.v1");
server!(images, "containerd.services.images.v1");
server!(introspection, "containerd.services.introspection.v1");
server!(leases, "containerd.services.leases.v1");
server!(namespaces, "containerd.services.namespaces.v1");
server!(snapshots, "containerd.services.snapshots.v1");
server!(tasks, "containerd.services.tasks.v1");
server!(transfer, "containerd.services.transfer.v1");
server!(version, "containerd.services.version.v1");
