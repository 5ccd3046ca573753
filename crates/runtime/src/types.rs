//! What goes in and out of the runtime, in berth's own types, and their conversions to and from
//! the shim protocol's protobuf messages (rust-protobuf, as `containerd-shim-protos` generates).
//!
//! The task types are berth-core's ([`berth_core::tasks`]). Callers (the Tasks service) never see protobuf: opaque payloads are [`Any`], root filesystems
//! are [`Mount`]s, times are [`SystemTime`].

use std::time::{Duration, SystemTime};

use berth_core::containers::Any;
use berth_core::mount::Mount;
use berth_core::tasks::{Status, Stdio};
use containerd_shim_protos::protobuf::well_known_types::any::Any as PbAny;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageField;

/// What is needed to create a task: everything the container record says, and the request's
/// own parts.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// The container (and task) id.
    pub id: String,
    /// The runtime name (`io.containerd.runc.v2`) or absolute path of the shim binary.
    pub runtime: String,
    /// The container's runtime options; given to the shim's `start` on stdin, and in the task
    /// create request when `task_options` is `None`.
    pub runtime_options: Option<Any>,
    /// Options of this create request (override `runtime_options` for the task).
    pub task_options: Option<Any>,
    /// The OCI spec; its bytes (JSON) become the bundle's `config.json`.
    pub spec: Any,
    /// The root filesystem as mounts; the shim mounts them on the bundle's `rootfs`.
    pub rootfs: Vec<Mount>,
    pub stdio: Stdio,
}

/// An event in a namespace on a topic (`/tasks/exit`), as the daemon's event exchange takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub namespace: String,
    pub topic: String,
    pub timestamp: SystemTime,
    /// The event message (`containerd.events.TaskExit`, …).
    pub event: Any,
}

/// Where the runtime sends events: the shims' (forwarded through the ttrpc Events service) and
/// its own (`/tasks/exit` and `/tasks/delete` for a shim that died).
pub trait Publisher: Send + Sync + std::fmt::Debug + 'static {
    /// Publish `event`; an invalid topic or namespace is an `InvalidArgument` error.
    fn publish(&self, event: Event) -> berth_core::Result<()>;
}

pub(crate) fn pb_any(a: &Any) -> PbAny {
    let mut p = PbAny::new();
    p.type_url = a.type_url.clone();
    p.value = a.value.clone();
    p
}

pub(crate) fn pb_any_field(a: Option<&Any>) -> MessageField<PbAny> {
    a.map(pb_any).into()
}

pub(crate) fn any_from_pb(a: &MessageField<PbAny>) -> Option<Any> {
    a.as_ref().map(|p| Any {
        type_url: p.type_url.clone(),
        value: p.value.clone(),
    })
}

pub(crate) fn time_from_pb(t: &MessageField<Timestamp>) -> Option<SystemTime> {
    let t = t.as_ref()?;
    if t.seconds <= 0 && t.nanos <= 0 {
        return None;
    }
    Some(
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(t.seconds.max(0) as u64)
            + Duration::from_nanos(t.nanos.max(0) as u64),
    )
}

pub(crate) fn pb_time(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

pub(crate) fn pb_mount(m: &Mount) -> containerd_shim_protos::api::Mount {
    let mut p = containerd_shim_protos::api::Mount::new();
    p.type_ = m.kind.clone();
    p.source = m.source.clone();
    // As containerd: the rootfs mounts all go on the bundle's rootfs; targets are not passed.
    p.options = m.options.clone();
    p
}

pub(crate) fn status_from_pb(s: containerd_shim_protos::api::Status) -> Status {
    use containerd_shim_protos::api::Status as S;
    match s {
        S::UNKNOWN => Status::Unknown,
        S::CREATED => Status::Created,
        S::RUNNING => Status::Running,
        S::STOPPED => Status::Stopped,
        S::PAUSED => Status::Paused,
        S::PAUSING => Status::Pausing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_zero_is_none() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        assert_eq!(time_from_pb(&MessageField::some(pb_time(t))), Some(t));
        assert_eq!(time_from_pb(&MessageField::some(Timestamp::new())), None);
        assert_eq!(time_from_pb(&MessageField::none()), None);
    }

    #[test]
    fn anys_and_mounts_convert() {
        let a = Any {
            type_url: "x".into(),
            value: vec![1],
        };
        assert_eq!(any_from_pb(&pb_any_field(Some(&a))), Some(a));
        let m = pb_mount(&Mount::new("overlay", "overlay", ["lowerdir=/a"]));
        assert_eq!(m.type_, "overlay");
        assert_eq!(m.options, vec!["lowerdir=/a".to_string()]);
    }
}
