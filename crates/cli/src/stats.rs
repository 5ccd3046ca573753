//! `berth stats`: a container's resource usage, from the Tasks service's metrics, read by
//! berth-ops ([`berth_ops::stats`]).

use anyhow::{bail, Result};
use berth_core::tasks::Tasks;

use crate::container::{find, Clients};
use crate::output::{self, Table};
use crate::{Ctx, Format};

pub use berth_ops::stats::{decode, Usage};

/// Bytes in binary units, as `docker stats` prints them (`1.5MiB`).
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", UNITS[unit])
    }
}

/// `stats`' table: ID, CPU TIME, MEM USAGE / LIMIT, MEM %, PIDS, OOM KILLS.
pub fn stats_table(rows: &[Usage]) -> Table {
    let mut t = Table::new(&[
        "CONTAINER ID",
        "CPU TIME",
        "MEM USAGE / LIMIT",
        "MEM %",
        "PIDS",
        "OOM KILLS",
    ]);
    for u in rows {
        let cpu = std::time::Duration::from_millis(u.cpu_ns / 1_000_000);
        let (limit, pct) = match u.memory_limit {
            Some(l) => (
                binary_size(l),
                format!("{:.2}%", u.memory as f64 * 100.0 / l as f64),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        let pids = match u.pids_limit {
            Some(l) => format!("{} / {l}", u.pids),
            None => u.pids.to_string(),
        };
        t.row(vec![
            u.id.clone(),
            humantime::format_duration(cpu).to_string(),
            format!("{} / {limit}", binary_size(u.memory)),
            pct,
            pids,
            u.oom_kills.to_string(),
        ]);
    }
    t
}

/// Run `stats` for `ids` (none: every container with a task).
pub async fn run(ctx: &Ctx, ids: &[String]) -> Result<()> {
    let c = Clients::new(ctx).await?;
    let ns = ctx.namespace.as_str();
    let mut filters = Vec::new();
    for id in ids {
        filters.push(format!("id=={}", find(&c, ns, id).await?.id));
    }
    let metrics = c.tasks.metrics(ns, &filters).await?;
    let mut rows = Vec::new();
    for m in metrics {
        if let Some(data) = &m.data {
            rows.push(decode(&m.id, data)?);
        }
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    if !ids.is_empty() && rows.is_empty() {
        bail!("no metrics: the containers have no running task");
    }
    match ctx.format {
        Format::Table => stats_table(&rows).print(),
        Format::Json => output::print_json(&rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reads_like_docker_stats() {
        let u = Usage {
            id: "c1".into(),
            cpu_ns: 2_500_000_000,
            memory: 10 << 20,
            memory_limit: Some(20 << 20),
            pids: 3,
            pids_limit: None,
            oom_kills: 1,
        };
        let text = stats_table(&[u]).render();
        assert!(text.contains("10.00MiB / 20.00MiB"), "{text}");
        assert!(text.contains("50.00%"), "{text}");
        assert!(text.contains("2s 500ms"), "{text}");
    }

    #[test]
    fn sizes_are_binary() {
        assert_eq!(binary_size(512), "512B");
        assert_eq!(binary_size(1536), "1.50KiB");
        assert_eq!(binary_size(20 << 20), "20.00MiB");
    }
}
