//! `berth events`: the daemon's events as they happen, as `ctr events` prints them.
//!
//! An event is an envelope (time, namespace, topic such as `/tasks/exit`) around a protobuf
//! message typed by its URL (`containerd.events.TaskExit`). The messages containerd defines are
//! decoded and printed as JSON with Go's `omitempty` habits (zero fields left out); others are
//! shown by type and size.

use std::collections::HashMap;

use anyhow::Result;
use berth_client::api::events as ev;
use berth_client::api::services::v1 as svc;
use berth_client::{Envelope, RemoteEvents};
use berth_core::containers::Any;
use prost::Message;
use serde_json::{json, Map, Value};

use crate::output;
use crate::{Ctx, Format};

/// A field of an event message as JSON; `None` for a zero value (left out, as Go's
/// `omitempty` does).
trait Field {
    fn json(&self) -> Option<Value>;
}

impl Field for String {
    fn json(&self) -> Option<Value> {
        (!self.is_empty()).then(|| json!(self))
    }
}

impl Field for u32 {
    fn json(&self) -> Option<Value> {
        (*self != 0).then(|| json!(self))
    }
}

impl Field for i64 {
    fn json(&self) -> Option<Value> {
        (*self != 0).then(|| json!(self))
    }
}

impl Field for bool {
    fn json(&self) -> Option<Value> {
        self.then(|| json!(true))
    }
}

impl Field for HashMap<String, String> {
    fn json(&self) -> Option<Value> {
        (!self.is_empty()).then(|| json!(self))
    }
}

impl Field for Option<prost_types::Timestamp> {
    fn json(&self) -> Option<Value> {
        let t = std::time::SystemTime::try_from((*self)?).ok()?;
        Some(json!(output::time_precise(t)))
    }
}

impl Field for Option<prost_types::Any> {
    fn json(&self) -> Option<Value> {
        self.as_ref().map(|a| json!({"type_url": a.type_url}))
    }
}

impl Field for Vec<berth_client::api::types::Mount> {
    fn json(&self) -> Option<Value> {
        (!self.is_empty()).then(|| {
            json!(self
                .iter()
                .map(|m| json!({"type": m.r#type, "source": m.source, "options": m.options}))
                .collect::<Vec<_>>())
        })
    }
}

impl Field for Option<ev::TaskIo> {
    fn json(&self) -> Option<Value> {
        let io = self.as_ref()?;
        Some(object(&[
            ("stdin", io.stdin.json()),
            ("stdout", io.stdout.json()),
            ("stderr", io.stderr.json()),
            ("terminal", io.terminal.json()),
        ]))
    }
}

impl Field for Option<ev::container_create::Runtime> {
    fn json(&self) -> Option<Value> {
        let r = self.as_ref()?;
        Some(object(&[
            ("name", r.name.json()),
            ("options", r.options.json()),
        ]))
    }
}

fn object(fields: &[(&str, Option<Value>)]) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert(k.to_string(), v.clone());
        }
    }
    Value::Object(m)
}

/// `object!(message; field, field…)`: the JSON of a decoded message's fields.
macro_rules! object {
    ($m:expr; $($f:ident),* $(,)?) => {
        object(&[$((stringify!($f), $m.$f.json())),*])
    };
}

fn decode<M: Message + Default>(value: &[u8]) -> Option<M> {
    M::decode(value).ok()
}

/// The JSON of an event message, if its type is one containerd defines.
pub fn event_json(any: &Any) -> Option<Value> {
    let name = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
    let v = any.value.as_slice();
    Some(match name {
        "containerd.events.ContainerCreate" => {
            let m: ev::ContainerCreate = decode(v)?;
            object!(m; id, image, runtime)
        }
        "containerd.events.ContainerUpdate" => {
            let m: ev::ContainerUpdate = decode(v)?;
            object!(m; id, image, labels, snapshot_key)
        }
        "containerd.events.ContainerDelete" => {
            let m: ev::ContainerDelete = decode(v)?;
            object!(m; id)
        }
        "containerd.events.ContentCreate" => {
            let m: ev::ContentCreate = decode(v)?;
            object!(m; digest, size)
        }
        "containerd.events.ContentDelete" => {
            let m: ev::ContentDelete = decode(v)?;
            object!(m; digest)
        }
        "containerd.events.NamespaceCreate" => {
            let m: ev::NamespaceCreate = decode(v)?;
            object!(m; name, labels)
        }
        "containerd.events.NamespaceUpdate" => {
            let m: ev::NamespaceUpdate = decode(v)?;
            object!(m; name, labels)
        }
        "containerd.events.NamespaceDelete" => {
            let m: ev::NamespaceDelete = decode(v)?;
            object!(m; name)
        }
        "containerd.events.SnapshotPrepare" => {
            let m: ev::SnapshotPrepare = decode(v)?;
            object!(m; key, parent, snapshotter)
        }
        "containerd.events.SnapshotCommit" => {
            let m: ev::SnapshotCommit = decode(v)?;
            object!(m; key, name, snapshotter)
        }
        "containerd.events.SnapshotRemove" => {
            let m: ev::SnapshotRemove = decode(v)?;
            object!(m; key, snapshotter)
        }
        "containerd.services.images.v1.ImageCreate" => {
            let m: svc::ImageCreate = decode(v)?;
            object!(m; name, labels)
        }
        "containerd.services.images.v1.ImageUpdate" => {
            let m: svc::ImageUpdate = decode(v)?;
            object!(m; name, labels)
        }
        "containerd.services.images.v1.ImageDelete" => {
            let m: svc::ImageDelete = decode(v)?;
            object!(m; name)
        }
        "containerd.events.TaskCreate" => {
            let m: ev::TaskCreate = decode(v)?;
            object!(m; container_id, bundle, rootfs, io, checkpoint, pid)
        }
        "containerd.events.TaskStart" => {
            let m: ev::TaskStart = decode(v)?;
            object!(m; container_id, pid)
        }
        "containerd.events.TaskDelete" => {
            let m: ev::TaskDelete = decode(v)?;
            object!(m; container_id, pid, exit_status, exited_at, id)
        }
        "containerd.events.TaskExit" => {
            let m: ev::TaskExit = decode(v)?;
            object!(m; container_id, id, pid, exit_status, exited_at)
        }
        "containerd.events.TaskOOM" => {
            let m: ev::TaskOom = decode(v)?;
            object!(m; container_id)
        }
        "containerd.events.TaskExecAdded" => {
            let m: ev::TaskExecAdded = decode(v)?;
            object!(m; container_id, exec_id)
        }
        "containerd.events.TaskExecStarted" => {
            let m: ev::TaskExecStarted = decode(v)?;
            object!(m; container_id, exec_id, pid)
        }
        "containerd.events.TaskPaused" => {
            let m: ev::TaskPaused = decode(v)?;
            object!(m; container_id)
        }
        "containerd.events.TaskResumed" => {
            let m: ev::TaskResumed = decode(v)?;
            object!(m; container_id)
        }
        "containerd.events.TaskCheckpointed" => {
            let m: ev::TaskCheckpointed = decode(v)?;
            object!(m; container_id, checkpoint)
        }
        _ => return None,
    })
}

/// The container an event is about (`container_id`, or `id` for container events), if any.
pub fn container_of(any: &Any) -> Option<String> {
    let v = event_json(any)?;
    v.get("container_id")
        .or_else(|| {
            any.type_url
                .contains("events.Container")
                .then(|| v.get("id"))
                .flatten()
        })
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// One event as a line: `TIME NAMESPACE TOPIC EVENT` (table) or a JSON object (json).
pub fn event_line(e: &Envelope, format: Format) -> String {
    let body = e.event.as_ref().map(|a| {
        event_json(a).unwrap_or_else(|| json!({"type_url": a.type_url, "size": a.value.len()}))
    });
    match format {
        Format::Table => format!(
            "{} {} {} {}",
            output::time_precise(e.timestamp),
            e.namespace,
            e.topic,
            body.map(|b| b.to_string()).unwrap_or_default()
        ),
        Format::Json => json!({
            "timestamp": output::time_precise(e.timestamp),
            "namespace": e.namespace,
            "topic": e.topic,
            "type": e.event.as_ref().map(|a| a.type_url.clone()),
            "event": body,
        })
        .to_string(),
    }
}

/// Print events matching any of `filters` (all namespaces; e.g. `namespace==default`,
/// `topic~=/tasks/`) until interrupted or the daemon goes away.
pub async fn run(ctx: &Ctx, filters: &[String]) -> Result<()> {
    let channel = ctx.channel().await?;
    let mut stream = RemoteEvents::new(channel).subscribe(filters).await?;
    while let Some(e) = stream.next().await? {
        output::print_lines([event_line(&e, ctx.format)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn task_events_print_like_ctr() {
        let exit = ev::TaskExit {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 42,
            exit_status: 137,
            exited_at: Some(prost_types::Timestamp {
                seconds: 86400,
                nanos: 0,
            }),
        };
        let any = Any {
            type_url: "containerd.events.TaskExit".into(),
            value: exit.encode_to_vec(),
        };
        let v = event_json(&any).unwrap();
        assert_eq!(
            v,
            json!({"container_id": "c1", "id": "c1", "pid": 42, "exit_status": 137,
                "exited_at": "1970-01-02T00:00:00Z"})
        );
        let oom = Any {
            type_url: "containerd.events.TaskOOM".into(),
            value: ev::TaskOom {
                container_id: "x1".into(),
            }
            .encode_to_vec(),
        };
        assert_eq!(
            event_json(&oom).unwrap().to_string(),
            r#"{"container_id":"x1"}"#
        );
        assert_eq!(container_of(&oom).as_deref(), Some("x1"));
        let e = Envelope {
            timestamp: SystemTime::UNIX_EPOCH + Duration::from_secs(86400),
            namespace: "default".into(),
            topic: "/tasks/oom".into(),
            event: Some(oom),
        };
        assert_eq!(
            event_line(&e, Format::Table),
            r#"1970-01-02T00:00:00Z default /tasks/oom {"container_id":"x1"}"#
        );
        let j: Value = serde_json::from_str(&event_line(&e, Format::Json)).unwrap();
        assert_eq!(j["topic"], "/tasks/oom");
        assert_eq!(j["event"]["container_id"], "x1");
    }

    #[test]
    fn container_events_name_their_container_and_unknown_types_show_their_size() {
        let any = Any {
            type_url: "containerd.events.ContainerDelete".into(),
            value: ev::ContainerDelete { id: "c9".into() }.encode_to_vec(),
        };
        assert_eq!(container_of(&any).as_deref(), Some("c9"));
        let other = Any {
            type_url: "example.Thing".into(),
            value: vec![1, 2, 3],
        };
        assert!(event_json(&other).is_none());
        let e = Envelope {
            timestamp: SystemTime::UNIX_EPOCH,
            namespace: "n".into(),
            topic: "/x".into(),
            event: Some(other),
        };
        assert!(event_line(&e, Format::Table).ends_with(r#"{"size":3,"type_url":"example.Thing"}"#));
    }
}
