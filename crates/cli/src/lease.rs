//! `berth lease`: list, create and remove leases.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use berth_client::RemoteLeases;
use berth_core::labels::GC_EXPIRE;
use berth_core::leases::LeaseManager;
use clap::Subcommand;
use serde::Serialize;

use crate::output::{self, Table};
use crate::{Ctx, Format};

/// The lease subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List leases, optionally filtered (e.g. `id==x`, `labels.a==b`).
    #[command(alias = "list")]
    Ls {
        /// Print only the IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Filters; a lease matching any of them is listed.
        filters: Vec<String>,
    },
    /// Create a lease and print its ID.
    Create {
        /// ID of the lease (a random one when not given).
        #[arg(long)]
        id: Option<String>,
        /// Expire the lease after this long (e.g. 30m, 24h); it never expires when not given.
        #[arg(short = 'x', long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// Labels to set, as key=value.
        labels: Vec<String>,
    },
    /// Remove leases.
    #[command(alias = "remove", alias = "delete", alias = "del")]
    Rm {
        /// Wait for garbage collection of what the leases held before returning.
        #[arg(long)]
        sync: bool,
        /// IDs of the leases.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Debug, Serialize)]
struct LeaseJson {
    id: String,
    created_at: String,
    labels: BTreeMap<String, String>,
}

/// A lease ID in the manner of containerd's `leases.WithRandomID`: the current nanoseconds and a
/// random suffix.
fn random_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{nanos}-{}", &suffix[..8])
}

/// The value of the expiry label for a lease that expires `after` from `now`.
fn expiry(now: SystemTime, after: Duration) -> String {
    output::time_seconds(now + after)
}

/// Run a lease subcommand.
pub async fn run(ctx: &Ctx, command: Command) -> Result<()> {
    let leases = RemoteLeases::new(ctx.channel().await?);
    let ns = ctx.namespace.as_str();
    match command {
        Command::Ls { quiet, filters } => {
            let mut list = leases.list(ns, &filters).await?;
            list.sort_by(|a, b| a.id.cmp(&b.id));
            if quiet {
                return output::print_lines(list.iter().map(|l| &l.id));
            }
            match ctx.format {
                Format::Table => {
                    let mut t = Table::new(&["ID", "CREATED AT", "LABELS"]);
                    for l in &list {
                        t.row(vec![
                            l.id.clone(),
                            output::time_seconds(l.created_at),
                            output::labels_string(&l.labels),
                        ]);
                    }
                    t.print()
                }
                Format::Json => {
                    let items: Vec<LeaseJson> = list
                        .into_iter()
                        .map(|l| LeaseJson {
                            id: l.id,
                            created_at: output::time_precise(l.created_at),
                            labels: l.labels,
                        })
                        .collect();
                    output::print_json(&items)
                }
            }
        }
        Command::Create {
            id,
            expires,
            labels,
        } => {
            let mut labels = crate::parse_labels(&labels)?;
            if let Some(after) = expires {
                labels.insert(GC_EXPIRE.to_string(), expiry(SystemTime::now(), after));
            }
            let id = id.unwrap_or_else(random_id);
            let lease = leases.create(ns, &id, labels).await?;
            output::print_lines([lease.id])
        }
        Command::Rm { sync, ids } => {
            crate::for_each_reporting(&ids, |id| {
                let leases = leases.clone();
                async move { Ok(leases.delete(ns, &id, sync).await?) }
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_valid_identifiers() {
        for _ in 0..100 {
            let id = random_id();
            berth_core::identifiers::validate(&id).unwrap();
        }
        assert_ne!(random_id(), random_id());
    }

    #[test]
    fn expiry_is_rfc3339_utc() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let d = humantime::parse_duration("24h").unwrap();
        assert_eq!(expiry(now, d), "2023-11-15T22:13:20Z");
    }
}
