//! A task's resource usage, from its metrics.
//!
//! A shim reports a task's cgroup statistics as containerd's metrics messages, typed by the
//! cgroup version of the host: `io.containerd.cgroups.v1.Metrics` (one hierarchy per
//! controller: memory usage and limit in `memory.usage`, CPU time in nanoseconds, OOM kills in
//! `memory.oom_control`) or `io.containerd.cgroups.v2.Metrics` (the unified hierarchy: CPU
//! time in microseconds, OOM kills in `memory.events`). This module reads either into one
//! [`Usage`].

use berth_core::containers::Any;
use berth_core::tasks::Tasks;
use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::Message;
use serde::Serialize;

use crate::error::{OpsError, Result};

/// The type URL of cgroup v1 metrics.
pub const V1_METRICS: &str = berth_core::type_urls::CGROUPS_V1_METRICS;
/// The type URL of cgroup v2 metrics.
pub const V2_METRICS: &str = berth_core::type_urls::CGROUPS_V2_METRICS;

/// A limit this large (or zero) means none (cgroup v1 writes `PAGE_COUNTER_MAX` pages).
const UNLIMITED: u64 = 1 << 62;

/// What `stats` shows of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub id: String,
    /// CPU time used, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, in bytes, without the inactive file cache (as Docker counts it).
    pub memory: u64,
    /// The memory limit in bytes, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    pub pids: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
    /// Processes the kernel's OOM killer killed in the container.
    pub oom_kills: u64,
}

fn limit(v: u64) -> Option<u64> {
    (v != 0 && v < UNLIMITED).then_some(v)
}

/// Read a metrics `Any` of either cgroup version.
pub fn decode(id: &str, data: &Any) -> Result<Usage> {
    let bad = |e: containerd_shim_protos::protobuf::Error| {
        OpsError::from(berth_core::Error::invalid_argument(format!(
            "metrics of container {id}: {e}"
        )))
    };
    let url = data.type_url.trim_start_matches('/');
    let url = url.rsplit('/').next().unwrap_or(url);
    match url {
        V1_METRICS => {
            let m = v1::Metrics::parse_from_bytes(&data.value).map_err(bad)?;
            let usage = m.memory.usage.usage;
            Ok(Usage {
                id: id.to_string(),
                cpu_ns: m.cpu.usage.total,
                memory: usage.saturating_sub(m.memory.total_inactive_file),
                memory_limit: limit(m.memory.usage.limit),
                pids: m.pids.current,
                pids_limit: limit(m.pids.limit),
                oom_kills: m.memory_oom_control.oom_kill,
            })
        }
        V2_METRICS => {
            let m = v2::Metrics::parse_from_bytes(&data.value).map_err(bad)?;
            Ok(Usage {
                id: id.to_string(),
                cpu_ns: m.cpu.usage_usec.saturating_mul(1000),
                memory: m.memory.usage.saturating_sub(m.memory.inactive_file),
                memory_limit: limit(m.memory.usage_limit),
                pids: m.pids.current,
                pids_limit: limit(m.pids.limit),
                oom_kills: m.memory_events.oom_kill,
            })
        }
        other => Err(OpsError::from(berth_core::Error::invalid_argument(
            format!("metrics of container {id}: unknown type {other:?}"),
        ))),
    }
}

/// The OOM kills in container `id`'s cgroup so far, if its metrics can be read.
pub async fn oom_kills<T: Tasks>(tasks: &T, ns: &str, id: &str) -> Option<u64> {
    let metrics = tasks.metrics(ns, &[format!("id=={id}")]).await.ok()?;
    let m = metrics.into_iter().find(|m| m.id == id)?;
    decode(id, m.data.as_ref()?).ok().map(|u| u.oom_kills)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_metrics_decode() {
        let mut m = v1::Metrics::new();
        m.cpu
            .mut_or_insert_default()
            .usage
            .mut_or_insert_default()
            .total = 2_500_000_000;
        let mem = m.memory.mut_or_insert_default();
        mem.total_inactive_file = 1 << 20;
        let entry = mem.usage.mut_or_insert_default();
        entry.usage = 11 << 20;
        entry.limit = 20 << 20;
        m.pids.mut_or_insert_default().current = 3;
        m.memory_oom_control.mut_or_insert_default().oom_kill = 1;
        let any = Any {
            type_url: V1_METRICS.into(),
            value: m.write_to_bytes().unwrap(),
        };
        let u = decode("c1", &any).unwrap();
        assert_eq!(u.cpu_ns, 2_500_000_000);
        assert_eq!(u.memory, 10 << 20);
        assert_eq!(u.memory_limit, Some(20 << 20));
        assert_eq!((u.pids, u.pids_limit), (3, None));
        assert_eq!(u.oom_kills, 1);
    }

    #[test]
    fn v2_metrics_decode_and_unlimited_reads_as_none() {
        let mut m = v2::Metrics::new();
        m.cpu.mut_or_insert_default().usage_usec = 1500;
        let mem = m.memory.mut_or_insert_default();
        mem.usage = 4096;
        mem.usage_limit = u64::MAX;
        let pids = m.pids.mut_or_insert_default();
        pids.current = 2;
        pids.limit = 64;
        m.memory_events.mut_or_insert_default().oom_kill = 2;
        let any = Any {
            type_url: format!("types.containerd.io/{V2_METRICS}"),
            value: m.write_to_bytes().unwrap(),
        };
        let u = decode("c2", &any).unwrap();
        assert_eq!(u.cpu_ns, 1_500_000);
        assert_eq!(u.memory_limit, None);
        assert_eq!(u.pids_limit, Some(64));
        assert_eq!(u.oom_kills, 2);
        let bad = Any {
            type_url: "x.Y".into(),
            value: vec![],
        };
        assert!(decode("c3", &bad).is_err());
    }
}
