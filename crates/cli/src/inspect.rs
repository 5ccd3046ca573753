//! `berth inspect` (a container's record, state and spec) and `berth top` (its processes).

use berth_core::tasks::Tasks;
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use berth_core::containers::Container;
use serde::Serialize;

use berth_ops::containers::{state_of, State};

use crate::container::{dir_of, find, task_of, Clients};
use crate::output::{self, Table};
use crate::{Ctx, Format};

/// A container's state in `inspect --format json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct StateJson {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exited_at: Option<String>,
    pub oom_killed: bool,
}

/// `inspect --format json`, one per container.
#[derive(Debug, Serialize, PartialEq)]
pub struct InspectJson {
    pub id: String,
    pub image: String,
    pub runtime: String,
    pub snapshotter: String,
    pub snapshot_key: String,
    pub created_at: String,
    pub updated_at: String,
    pub labels: BTreeMap<String, String>,
    pub state: StateJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_path: Option<String>,
    /// The OCI runtime spec, as stored.
    pub spec: serde_json::Value,
}

impl InspectJson {
    pub fn new(c: &Container, s: &State, dir: Option<PathBuf>) -> InspectJson {
        let (pid, exit_code, exited_at, oom_killed) = match s {
            State::Running { pid, .. } | State::TaskCreated { pid } => {
                (Some(*pid), None, None, false)
            }
            State::Exited { code, at, oom } => {
                (None, Some(*code), at.map(output::time_precise), *oom)
            }
            State::Created => (None, None, None, false),
        };
        InspectJson {
            id: c.id.clone(),
            image: c.image.clone(),
            runtime: c.runtime.name.clone(),
            snapshotter: c.snapshotter.clone(),
            snapshot_key: c.snapshot_key.clone(),
            created_at: output::time_precise(c.created_at),
            updated_at: output::time_precise(c.updated_at),
            labels: c.labels.clone(),
            state: StateJson {
                status: s.word().to_string(),
                pid,
                exit_code,
                exited_at,
                oom_killed,
            },
            log_path: dir.as_ref().map(|d| d.join("log").display().to_string()),
            dir: dir.map(|d| d.display().to_string()),
            spec: c
                .spec
                .as_ref()
                .and_then(|a| serde_json::from_slice(&a.value).ok())
                .unwrap_or(serde_json::Value::Null),
        }
    }
}

/// `inspect` for people: the record and state, one field a line.
pub fn inspect_text(j: &InspectJson) -> String {
    let command = j.spec["process"]["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let labels = output::labels_string(&j.labels);
    let dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
    let fields = [
        ("ID", j.id.clone()),
        ("Image", j.image.clone()),
        ("Command", command),
        ("Runtime", j.runtime.clone()),
        (
            "Snapshot",
            format!("{} ({})", j.snapshot_key, j.snapshotter),
        ),
        ("Created", j.created_at.clone()),
        ("Status", j.state.status.clone()),
        ("Pid", dash(j.state.pid.map(|p| p.to_string()))),
        ("Exit code", dash(j.state.exit_code.map(|c| c.to_string()))),
        ("Exited at", dash(j.state.exited_at.clone())),
        ("OOM killed", j.state.oom_killed.to_string()),
        ("Log", dash(j.log_path.clone())),
        (
            "Labels",
            if labels.is_empty() {
                "-".into()
            } else {
                labels
            },
        ),
    ];
    fields
        .iter()
        .map(|(k, v)| format!("{:<12}{v}\n", format!("{k}:")))
        .collect()
}

/// Run `inspect` on `ids`.
pub async fn inspect(ctx: &Ctx, c: &Clients, ids: &[String]) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let mut out = Vec::new();
    for id in ids {
        let container = find(c, ns, id).await?;
        let task = task_of(c, ns, &container.id).await?;
        let state = state_of(&container, task.as_ref());
        let dir = dir_of(ctx, &container);
        out.push(InspectJson::new(&container, &state, dir));
    }
    match ctx.format {
        Format::Json => output::print_json(&out),
        Format::Table => {
            output::print_raw(&out.iter().map(inspect_text).collect::<Vec<_>>().join("\n"))
        }
    }
}

/// One process in `top`.
#[derive(Debug, Serialize, PartialEq)]
pub struct TopJson {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
    pub command: String,
}

/// What `/proc` says of host process `pid`: parent, real uid, command line.
fn proc_info(pid: u32) -> (Option<u32>, Option<u32>, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let command = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    (field("PPid:"), field("Uid:"), command)
}

/// Run `top` on `id`: the pids the runtime reports, with what `/proc` says of them.
pub async fn top(ctx: &Ctx, c: &Clients, id: &str) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let container = find(c, ns, id).await?;
    let mut pids = c.tasks.pids(ns, &container.id).await?;
    pids.sort_by_key(|p| p.pid);
    let rows: Vec<TopJson> = pids
        .into_iter()
        .map(|p| {
            let (ppid, uid, command) = proc_info(p.pid);
            TopJson {
                pid: p.pid,
                ppid,
                uid,
                exec_id: p.exec_id,
                command,
            }
        })
        .collect();
    match ctx.format {
        Format::Json => output::print_json(&rows),
        Format::Table => {
            let mut t = Table::new(&["UID", "PID", "PPID", "CMD"]);
            let opt = |v: Option<u32>| v.map_or_else(|| "-".into(), |v| v.to_string());
            for r in &rows {
                t.row(vec![
                    opt(r.uid),
                    r.pid.to_string(),
                    opt(r.ppid),
                    r.command.clone(),
                ]);
            }
            t.print()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::containers::Any;

    #[test]
    fn inspect_shows_record_state_and_spec() {
        let mut c = Container::new("c1");
        c.image = "busybox".into();
        c.snapshotter = "overlayfs".into();
        c.snapshot_key = "c1".into();
        c.spec = Some(Any {
            type_url: berth_oci::SPEC_TYPE_URL.into(),
            value: br#"{"process":{"args":["echo","hi"]}}"#.to_vec(),
        });
        let s = State::Exited {
            code: 137,
            at: None,
            oom: true,
        };
        let j = InspectJson::new(&c, &s, Some("/run/berth/containers/default/c1".into()));
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["state"]["exit_code"], 137);
        assert_eq!(v["state"]["oom_killed"], true);
        assert_eq!(v["spec"]["process"]["args"][1], "hi");
        assert_eq!(v["log_path"], "/run/berth/containers/default/c1/log");
        let text = inspect_text(&j);
        assert!(text.starts_with("ID:         c1\n"), "{text}");
        assert!(text.contains("Command:    echo hi\n"), "{text}");
        assert!(text.contains("OOM killed: true\n"), "{text}");
    }

    #[test]
    fn proc_info_reads_this_process() {
        let (ppid, uid, cmd) = proc_info(std::process::id());
        assert!(ppid.is_some());
        assert!(uid.is_some());
        assert!(!cmd.is_empty());
    }
}
