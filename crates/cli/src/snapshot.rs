//! `berth snapshot`: list, inspect, create, commit and remove snapshots of one snapshotter, and
//! print the mount commands that assemble them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use berth_client::RemoteSnapshotter;
use berth_core::snapshots::{Info, Mount, Snapshotter, Usage};
use clap::Subcommand;
use serde::Serialize;

use crate::output::{self, Table};
use crate::{Ctx, Format};

/// The snapshot subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List snapshots, optionally filtered (e.g. `kind==committed`, `parent==sha256:…`,
    /// `labels.a==b`).
    #[command(alias = "list")]
    Ls {
        /// Print only the keys.
        #[arg(short, long)]
        quiet: bool,
        /// Filters; a snapshot matching any of them is listed.
        filters: Vec<String>,
    },
    /// Show what is known of a snapshot.
    Info {
        /// Key (active, view) or name (committed) of the snapshot.
        key: String,
    },
    /// Show the snapshots as a tree, each under its parent.
    Tree,
    /// Remove snapshots (children first: a snapshot with children cannot be removed).
    #[command(alias = "remove", alias = "delete", alias = "del")]
    Rm {
        /// Keys of the snapshots.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Print the `mount` commands that assemble the active snapshot or view KEY at TARGET.
    Mounts {
        /// Where the snapshot would be mounted.
        target: String,
        /// Key of the snapshot.
        key: String,
    },
    /// Create the active (writable) snapshot KEY on the committed snapshot PARENT (or empty).
    Prepare {
        /// Key of the new snapshot.
        key: String,
        /// Committed snapshot it starts from.
        parent: Option<String>,
        /// Print the mount commands for this target.
        #[arg(long)]
        target: Option<String>,
        /// Label to set, as key=value (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Create the read-only view KEY of the committed snapshot PARENT.
    View {
        /// Key of the new view.
        key: String,
        /// Committed snapshot to look at.
        parent: String,
        /// Print the mount commands for this target.
        #[arg(long)]
        target: Option<String>,
        /// Label to set, as key=value (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Commit the active snapshot KEY as the committed snapshot NAME.
    Commit {
        /// Name of the committed snapshot.
        name: String,
        /// Key of the active snapshot.
        key: String,
        /// Label to set, as key=value (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Show the disk usage of one snapshot, or of each.
    Usage {
        /// Key of the snapshot (all when absent).
        key: Option<String>,
        /// Sizes in bytes.
        #[arg(short, long)]
        bytes: bool,
    },
    /// Set labels on a snapshot (key= removes the label) and print the resulting labels.
    Label {
        /// Key of the snapshot.
        key: String,
        /// Labels to set, as key=value; an empty value removes the label.
        #[arg(required = true)]
        labels: Vec<String>,
    },
}

/// A snapshot as `--format json` prints it.
#[derive(Debug, Serialize, PartialEq)]
pub struct SnapshotJson {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub kind: &'static str,
    pub created_at: String,
    pub updated_at: String,
    pub labels: BTreeMap<String, String>,
}

impl From<&Info> for SnapshotJson {
    fn from(i: &Info) -> Self {
        SnapshotJson {
            key: i.name.clone(),
            parent: i.parent.clone(),
            kind: i.kind.as_str(),
            created_at: output::time_precise(i.created),
            updated_at: output::time_precise(i.updated),
            labels: i.labels.clone(),
        }
    }
}

/// `ctr snapshots ls`'s table: KEY, PARENT, KIND.
pub fn ls_table(infos: &[Info]) -> Table {
    let mut t = Table::new(&["KEY", "PARENT", "KIND"]);
    for i in infos {
        t.row(vec![
            i.name.clone(),
            i.parent.clone().unwrap_or_default(),
            i.kind.to_string(),
        ]);
    }
    t
}

/// One snapshot as aligned `Field: value` lines.
pub fn info_text(i: &Info) -> String {
    let labels = output::labels_string(&i.labels);
    let fields = [
        ("Key", i.name.clone()),
        ("Parent", i.parent.clone().unwrap_or_else(|| "-".into())),
        ("Kind", i.kind.to_string()),
        ("Created", output::time_seconds(i.created)),
        ("Updated", output::time_seconds(i.updated)),
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
        .map(|(k, v)| format!("{:<9}{v}\n", format!("{k}:")))
        .collect()
}

/// A node of `snapshot tree --format json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct TreeJson {
    pub key: String,
    pub kind: &'static str,
    pub children: Vec<TreeJson>,
}

/// Children of each key, in name order; roots are the snapshots without a parent, and also
/// those whose parent is not listed (so nothing is lost from view).
fn children_of(infos: &[Info]) -> (Vec<&Info>, BTreeMap<&str, Vec<&Info>>) {
    let names: std::collections::BTreeSet<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let mut roots = Vec::new();
    let mut children: BTreeMap<&str, Vec<&Info>> = BTreeMap::new();
    for i in infos {
        match i.parent.as_deref() {
            Some(p) if names.contains(p) => children.entry(p).or_default().push(i),
            _ => roots.push(i),
        }
    }
    roots.sort_by(|a, b| a.name.cmp(&b.name));
    for list in children.values_mut() {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    (roots, children)
}

/// The tree as `ctr snapshots tree` prints it: a root as ` name`, each level below indented by
/// two spaces and marked `\_`.
pub fn tree_text(infos: &[Info]) -> String {
    fn walk(i: &Info, level: usize, children: &BTreeMap<&str, Vec<&Info>>, out: &mut String) {
        let mut prefix = "  ".repeat(level);
        if level > 0 {
            prefix.push_str("\\_");
        }
        out.push_str(&format!("{prefix} {}\n", i.name));
        for c in children.get(i.name.as_str()).into_iter().flatten() {
            walk(c, level + 1, children, out);
        }
    }
    let (roots, children) = children_of(infos);
    let mut out = String::new();
    for r in roots {
        walk(r, 0, &children, &mut out);
    }
    out
}

/// The tree as nested JSON objects.
pub fn tree_json(infos: &[Info]) -> Vec<TreeJson> {
    fn node(i: &Info, children: &BTreeMap<&str, Vec<&Info>>) -> TreeJson {
        TreeJson {
            key: i.name.clone(),
            kind: i.kind.as_str(),
            children: children
                .get(i.name.as_str())
                .into_iter()
                .flatten()
                .map(|c| node(c, children))
                .collect(),
        }
    }
    let (roots, children) = children_of(infos);
    roots.into_iter().map(|r| node(r, &children)).collect()
}

/// The `mount` commands that assemble `mounts` at `target`, one per line, as
/// `ctr snapshots mounts` prints them.
pub fn mount_commands(target: &str, mounts: &[Mount]) -> String {
    mounts
        .iter()
        .map(|m| {
            let at = match m.target.as_deref() {
                Some(sub) if !sub.is_empty() => Path::new(target).join(sub),
                _ => Path::new(target).to_path_buf(),
            };
            let mut line = format!("mount -t {} {} {}", m.kind, m.source, at.display());
            if !m.options.is_empty() {
                line.push_str(&format!(" -o {}", m.options.join(",")));
            }
            line.push('\n');
            line
        })
        .collect()
}

/// A usage row as `--format json` prints it.
#[derive(Debug, Serialize, PartialEq)]
pub struct UsageJson {
    pub key: String,
    pub size: i64,
    pub inodes: i64,
}

/// `ctr snapshots usage`'s table: KEY, SIZE, INODES.
pub fn usage_table(rows: &[(String, Usage)], bytes: bool) -> Table {
    let mut t = Table::new(&["KEY", "SIZE", "INODES"]);
    for (key, u) in rows {
        let size = if bytes {
            u.size.to_string()
        } else {
            output::human_size(u.size)
        };
        t.row(vec![key.clone(), size, u.inodes.to_string()]);
    }
    t
}

fn print_mounts(ctx: &Ctx, target: Option<&str>, mounts: &[Mount]) -> Result<()> {
    match (ctx.format, target) {
        (Format::Json, _) => {
            output::print_raw(&format!("{}\n", serde_json::to_string_pretty(mounts)?))
        }
        (Format::Table, Some(target)) => output::print_raw(&mount_commands(target, mounts)),
        (Format::Table, None) => Ok(()),
    }
}

/// Run a snapshot subcommand on `snapshotter`.
pub async fn run(ctx: &Ctx, snapshotter: &str, command: Command) -> Result<()> {
    let sn = RemoteSnapshotter::new(ctx.channel().await?, &ctx.namespace, snapshotter);
    match command {
        Command::Ls { quiet, filters } => {
            let mut infos = sn.walk(&filters).await?;
            infos.sort_by(|a, b| a.name.cmp(&b.name));
            if quiet {
                return output::print_lines(infos.iter().map(|i| &i.name));
            }
            match ctx.format {
                Format::Table => ls_table(&infos).print(),
                Format::Json => {
                    output::print_json(&infos.iter().map(SnapshotJson::from).collect::<Vec<_>>())
                }
            }
        }
        Command::Info { key } => {
            let info = sn.stat(&key).await?;
            match ctx.format {
                Format::Table => output::print_raw(&info_text(&info)),
                Format::Json => output::print_raw(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&SnapshotJson::from(&info))?
                )),
            }
        }
        Command::Tree => {
            let infos = sn.walk(&[]).await?;
            match ctx.format {
                Format::Table => output::print_raw(&tree_text(&infos)),
                Format::Json => output::print_json(&tree_json(&infos)),
            }
        }
        Command::Rm { keys } => {
            crate::for_each_reporting(&keys, |key| {
                let sn = sn.clone();
                async move { Ok(sn.remove(&key).await?) }
            })
            .await
        }
        Command::Mounts { target, key } => {
            let mounts = sn.mounts(&key).await?;
            print_mounts(ctx, Some(&target), &mounts)
        }
        Command::Prepare {
            key,
            parent,
            target,
            labels,
        } => {
            let labels = crate::parse_labels(&labels)?;
            let mounts = sn.prepare(&key, parent.as_deref(), labels).await?;
            print_mounts(ctx, target.as_deref(), &mounts)
        }
        Command::View {
            key,
            parent,
            target,
            labels,
        } => {
            let labels = crate::parse_labels(&labels)?;
            let mounts = sn.view(&key, Some(&parent), labels).await?;
            print_mounts(ctx, target.as_deref(), &mounts)
        }
        Command::Commit { name, key, labels } => {
            let labels = crate::parse_labels(&labels)?;
            Ok(sn.commit(&name, &key, labels).await?)
        }
        Command::Usage { key, bytes } => {
            let keys = match key {
                Some(k) => vec![k],
                None => {
                    let mut infos = sn.walk(&[]).await?;
                    infos.sort_by(|a, b| a.name.cmp(&b.name));
                    infos.into_iter().map(|i| i.name).collect()
                }
            };
            let mut rows = Vec::with_capacity(keys.len());
            for k in keys {
                let u = sn.usage(&k).await?;
                rows.push((k, u));
            }
            match ctx.format {
                Format::Table => usage_table(&rows, bytes).print(),
                Format::Json => output::print_json(
                    &rows
                        .into_iter()
                        .map(|(key, u)| UsageJson {
                            key,
                            size: u.size,
                            inodes: u.inodes,
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        Command::Label { key, labels } => {
            let (labels, paths) = crate::label_update(&labels)?;
            let updated = sn.update(Info::named(key, labels), &paths).await?;
            if updated.labels.is_empty() {
                return Ok(());
            }
            output::print_lines([output::labels_string(&updated.labels)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::snapshots::Kind;
    use std::time::{Duration, SystemTime};

    fn info(name: &str, parent: Option<&str>, kind: Kind) -> Info {
        Info {
            kind,
            name: name.into(),
            parent: parent.map(str::to_string),
            labels: BTreeMap::new(),
            created: SystemTime::UNIX_EPOCH + Duration::from_secs(86400),
            updated: SystemTime::UNIX_EPOCH + Duration::from_secs(86400),
        }
    }

    fn chain() -> Vec<Info> {
        vec![
            info("c1", Some("b"), Kind::Active),
            info("a", None, Kind::Committed),
            info("b", Some("a"), Kind::Committed),
            info("v", Some("a"), Kind::View),
            info("orphan", Some("gone"), Kind::Active),
        ]
    }

    #[test]
    fn ls_is_ctrs_table() {
        let t = ls_table(&chain()[1..3]).render();
        assert_eq!(
            t,
            "KEY   PARENT   KIND\na              Committed\nb     a        Committed\n"
        );
    }

    #[test]
    fn json_names_kinds_in_lowercase() {
        let j = serde_json::to_value(SnapshotJson::from(&chain()[0])).unwrap();
        assert_eq!(j["key"], "c1");
        assert_eq!(j["parent"], "b");
        assert_eq!(j["kind"], "active");
        assert_eq!(j["created_at"], "1970-01-02T00:00:00Z");
        let root = serde_json::to_value(SnapshotJson::from(&chain()[1])).unwrap();
        assert!(root.get("parent").is_none());
    }

    #[test]
    fn info_is_aligned_fields() {
        let mut i = info("b", Some("a"), Kind::Committed);
        i.labels.insert("x".into(), "1".into());
        assert_eq!(
            info_text(&i),
            "Key:     b\nParent:  a\nKind:    Committed\nCreated: 1970-01-02T00:00:00Z\n\
             Updated: 1970-01-02T00:00:00Z\nLabels:  x=1\n"
        );
    }

    #[test]
    fn tree_is_ctrs_tree_and_keeps_orphans() {
        assert_eq!(
            tree_text(&chain()),
            " a\n  \\_ b\n    \\_ c1\n  \\_ v\n orphan\n"
        );
        let j = serde_json::to_value(tree_json(&chain())).unwrap();
        assert_eq!(j[0]["key"], "a");
        assert_eq!(j[0]["children"][0]["children"][0]["key"], "c1");
        assert_eq!(j[0]["children"][1]["kind"], "view");
        assert_eq!(j[1]["key"], "orphan");
    }

    #[test]
    fn mounts_print_as_mount_commands() {
        let overlay = Mount::new(
            "overlay",
            "overlay",
            [
                "index=off",
                "workdir=/s/2/work",
                "upperdir=/s/2/fs",
                "lowerdir=/s/1/fs",
            ],
        );
        let mut sub = Mount::new("tmpfs", "tmpfs", Vec::<String>::new());
        sub.target = Some("run".into());
        assert_eq!(
            mount_commands("/mnt/x", &[overlay, sub]),
            "mount -t overlay overlay /mnt/x -o index=off,workdir=/s/2/work,upperdir=/s/2/fs,lowerdir=/s/1/fs\n\
             mount -t tmpfs tmpfs /mnt/x/run\n"
        );
    }

    #[test]
    fn usage_in_human_units_or_bytes() {
        let rows = vec![(
            "a".to_string(),
            Usage {
                size: 1_234_567,
                inodes: 12,
            },
        )];
        assert_eq!(
            usage_table(&rows, false).render(),
            "KEY   SIZE      INODES\na     1.235MB   12\n"
        );
        assert_eq!(
            usage_table(&rows, true).render(),
            "KEY   SIZE      INODES\na     1234567   12\n"
        );
    }
}
