//! The garbage collector: mark from roots, sweep the rest, as containerd's `docs/garbage-collection.md`.
//!
//! **Nodes** are content records (by digest) and snapshot records (by snapshotter and key), per
//! namespace. **Roots**: every lease that has not expired (its resources, and what its labels
//! reference), every image that has not expired (its target, and what its labels reference), every
//! container (its snapshot `snapshots/<snapshotter>/<snapshot key>`, the target of the image it
//! names if that image record exists, and what its labels reference), and every record labelled
//! `containerd.io/gc.root`. **References**: labels
//! `containerd.io/gc.ref.content.*` name blobs and `containerd.io/gc.ref.snapshot.<snapshotter>`
//! name snapshots of the same namespace; a snapshot references its parent. A lease labelled
//! `containerd.io/gc.flat` keeps its resources (and a snapshot's parents) but not what they
//! reference. **Sweep**: records not reached are removed, expired leases are removed, then blob
//! files that no namespace records any more are deleted from disk, and backend snapshots that no
//! record names are removed (leaves first).
//!
//! Collections run when a deletion made garbage (debounced so that collection pauses stay under
//! `pause_threshold` of the time), on a fixed schedule, and synchronously when a client deletes a
//! lease with `sync`. Each run logs one line (`garbage collected`) and updates [`GcStats`], which
//! berthd exposes through the Introspection service and its Prometheus metrics.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use berth_core::{labels, Digest};
use redb::ReadableTable;
use serde::Serialize;

use crate::containers::ContainerRecord;
use crate::db::{
    decode, ContentRecord, LeaseRecord, Metadata, CONTAINERS, CONTENT, IMAGES, LEASES,
    LEASE_RESOURCES, SNAPSHOTS,
};
use crate::error::Result;
use crate::images::ImageRecord;
use crate::leases::{remove_lease, resources_of};
use crate::snapshots::SnapshotRecord;

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub content_removed: usize,
    pub leases_expired: usize,
    pub blobs_removed: usize,
    /// Bytes of the blob files removed (their sizes on record just before deletion).
    pub bytes_freed: u64,
    pub snapshots_removed: usize,
    pub duration: Duration,
}

/// Running totals, for introspection and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcStats {
    pub runs: u64,
    pub last_run: Option<SystemTime>,
    pub last: GcReport,
    pub total_content_removed: u64,
    pub total_blobs_removed: u64,
    pub total_bytes_freed: u64,
    pub total_leases_expired: u64,
    pub total_snapshots_removed: u64,
}

/// When collections run.
#[derive(Debug, Clone)]
pub struct GcConfig {
    /// Collect at least this often, garbage or not.
    pub schedule_interval: Duration,
    /// Wait this long after a deletion before collecting (coalesces bursts).
    pub schedule_delay: Duration,
    /// After startup, wait this long before the first collection.
    pub startup_delay: Duration,
    /// Keep collection pauses under this fraction of wall time (containerd's default 0.02).
    pub pause_threshold: f64,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            schedule_interval: Duration::from_secs(600),
            schedule_delay: Duration::ZERO,
            startup_delay: Duration::from_millis(100),
            pause_threshold: 0.02,
        }
    }
}

/// Parse an RFC 3339 time with `Z` or a numeric offset (Go's `time.RFC3339`, which ctr writes).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Some(base) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        return humantime::parse_rfc3339_weak(base).ok();
    }
    let (base, sign, offset) = match s.rfind(['+', '-']) {
        Some(i) if i > 10 => (&s[..i], &s[i..i + 1], &s[i + 1..]),
        _ => return humantime::parse_rfc3339_weak(s).ok(),
    };
    let (h, m) = offset.split_once(':')?;
    // The offset comes from a client's label: out of Go's ranges (hours up to 24, minutes up
    // to 59) it is no time at all, and the arithmetic below cannot overflow.
    let (h, m) = (h.parse::<u64>().ok()?, m.parse::<u64>().ok()?);
    if h > 24 || m > 59 {
        return None;
    }
    let secs = h * 3600 + m * 60;
    let local = humantime::parse_rfc3339_weak(base).ok()?;
    let off = Duration::from_secs(secs);
    // local = utc + offset  =>  utc = local - offset
    if sign == "+" {
        local.checked_sub(off)
    } else {
        local.checked_add(off)
    }
}

fn label_expired(l: &BTreeMap<String, String>, now: SystemTime) -> bool {
    l.get(labels::GC_EXPIRE)
        .and_then(|v| parse_rfc3339(v))
        .is_some_and(|t| t <= now)
}

/// A node of the reference graph: (namespace, kind, id), kind `content` (id a digest) or
/// `snapshots/<snapshotter>` (id a snapshot key or name), as lease resources name them.
type Node = (String, String, String);

/// The nodes that labels reference: `containerd.io/gc.ref.content[.*]` name digests and
/// `containerd.io/gc.ref.snapshot.<snapshotter>[/*]` name snapshots of that snapshotter.
fn label_refs<'a>(ns: &'a str, l: &'a BTreeMap<String, String>) -> impl Iterator<Item = Node> + 'a {
    l.iter().filter_map(move |(k, v)| {
        if k.starts_with(labels::GC_REF_CONTENT_PREFIX) {
            let d = Digest::parse(v).ok()?;
            Some((ns.to_string(), "content".to_string(), d.to_string()))
        } else if let Some(rest) = k.strip_prefix(labels::GC_REF_SNAPSHOT_PREFIX) {
            let sn = rest.split('/').next().filter(|s| !s.is_empty())?;
            Some((ns.to_string(), format!("snapshots/{sn}"), v.clone()))
        } else {
            None
        }
    })
}

fn content_node(ns: &str, digest: &str) -> Node {
    (ns.to_string(), "content".to_string(), digest.to_string())
}

impl Metadata {
    /// Run one collection of records and blobs now (blocking). Backend snapshots that lost
    /// their records are removed by [`Metadata::collect_garbage_async`], which also runs this.
    pub fn collect_garbage(&self) -> Result<GcReport> {
        let started = Instant::now();
        let _exclusive = self.inner.gc_lock.write().expect("gc lock poisoned");
        let now = SystemTime::now();
        let mut report = GcReport::default();
        let txn = self.inner.db.begin_write()?;
        let referenced: BTreeSet<String> = {
            let mut roots: VecDeque<Node> = VecDeque::new();
            // Kept but not walked (resources of flat leases).
            let mut marked: BTreeSet<Node> = BTreeSet::new();
            // Leases: drop expired ones; the rest's resources and label references are roots.
            let leases: Vec<((String, String), LeaseRecord)> = {
                let t = txn.open_table(LEASES)?;
                let mut v = Vec::new();
                for e in t.iter()? {
                    let (k, val) = e?;
                    let (ns, id) = k.value();
                    v.push(((ns.to_string(), id.to_string()), decode(id, val.value())?));
                }
                v
            };
            for ((ns, id), rec) in &leases {
                if label_expired(&rec.labels, now) {
                    remove_lease(&txn, ns, id)?;
                    report.leases_expired += 1;
                    continue;
                }
                let flat = rec.labels.contains_key(labels::GC_FLAT);
                let res = resources_of(&txn.open_table(LEASE_RESOURCES)?, ns, id)?;
                for r in res.into_iter().filter(|r| r.kind != "ingests") {
                    let node = (ns.clone(), r.kind, r.id);
                    if flat {
                        marked.insert(node);
                    } else {
                        roots.push_back(node);
                    }
                }
                roots.extend(label_refs(ns, &rec.labels));
            }
            // Images: each one's target and what its labels reference, unless expired.
            {
                let t = txn.open_table(IMAGES)?;
                for e in t.iter()? {
                    let (k, v) = e?;
                    let (ns, name) = k.value();
                    let rec: ImageRecord = decode(name, v.value())?;
                    if label_expired(&rec.labels, now) {
                        continue;
                    }
                    roots.push_back(content_node(ns, &rec.digest));
                    roots.extend(label_refs(ns, &rec.labels));
                }
            }
            // Containers: their snapshot, their image's target (expired or not: a container in
            // use keeps what it was made from) and what their labels reference.
            {
                let t = txn.open_table(CONTAINERS)?;
                let images = txn.open_table(IMAGES)?;
                for e in t.iter()? {
                    let (k, v) = e?;
                    let (ns, id) = k.value();
                    let rec: ContainerRecord = decode(id, v.value())?;
                    if !rec.snapshotter.is_empty() && !rec.snapshot_key.is_empty() {
                        roots.push_back((
                            ns.to_string(),
                            format!("snapshots/{}", rec.snapshotter),
                            rec.snapshot_key.clone(),
                        ));
                    }
                    if !rec.image.is_empty() {
                        if let Some(iv) = images.get((ns, rec.image.as_str()))? {
                            let image: ImageRecord = decode(&rec.image, iv.value())?;
                            roots.push_back(content_node(ns, &image.digest));
                        }
                    }
                    roots.extend(label_refs(ns, &rec.labels));
                }
            }
            // Every content and snapshot record with its outgoing references; gc.root ones are
            // roots.
            let mut edges: BTreeMap<Node, Vec<Node>> = BTreeMap::new();
            {
                let t = txn.open_table(CONTENT)?;
                for e in t.iter()? {
                    let (k, v) = e?;
                    let (ns, dgst) = k.value();
                    let rec: ContentRecord = decode(dgst, v.value())?;
                    let node = content_node(ns, dgst);
                    if rec.labels.contains_key(labels::GC_ROOT) {
                        roots.push_back(node.clone());
                    }
                    edges.insert(node, label_refs(ns, &rec.labels).collect());
                }
            }
            {
                let t = txn.open_table(SNAPSHOTS)?;
                for e in t.iter()? {
                    let (k, v) = e?;
                    let (ns, sn, key) = k.value();
                    let rec: SnapshotRecord = decode(key, v.value())?;
                    let kind = format!("snapshots/{sn}");
                    let node = (ns.to_string(), kind.clone(), key.to_string());
                    if rec.labels.contains_key(labels::GC_ROOT) {
                        roots.push_back(node.clone());
                    }
                    let mut out: Vec<Node> = label_refs(ns, &rec.labels).collect();
                    if let Some(p) = rec.parent {
                        out.push((ns.to_string(), kind, p));
                    }
                    edges.insert(node, out);
                }
            }
            // Mark.
            let mut visited: BTreeSet<Node> = BTreeSet::new();
            while let Some(node) = roots.pop_front() {
                if visited.contains(&node) {
                    continue;
                }
                if let Some(out) = edges.get(&node) {
                    roots.extend(out.iter().cloned());
                }
                visited.insert(node);
            }
            // Flat-leased snapshots still need their parents to exist.
            let flat_parents: Vec<Node> = marked
                .iter()
                .flat_map(|n| edges.get(n).into_iter().flatten())
                .filter(|n| n.1.starts_with("snapshots/"))
                .cloned()
                .collect();
            let mut chain: VecDeque<Node> = flat_parents.into();
            while let Some(n) = chain.pop_front() {
                if let Some(out) = edges.get(&n) {
                    chain.extend(out.iter().filter(|o| o.1 == n.1).cloned());
                }
                marked.insert(n);
            }
            marked.extend(visited);
            // Sweep records.
            let mut content = txn.open_table(CONTENT)?;
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            let mut keep = BTreeSet::new();
            for node in edges.keys() {
                let (ns, kind, id) = node;
                if kind == "content" {
                    if marked.contains(node) {
                        keep.insert(id.clone());
                    } else {
                        content.remove((ns.as_str(), id.as_str()))?;
                        report.content_removed += 1;
                    }
                } else if !marked.contains(node) {
                    let sn = kind.trim_start_matches("snapshots/");
                    snapshots.remove((ns.as_str(), sn, id.as_str()))?;
                    report.snapshots_removed += 1;
                }
            }
            keep
        };
        txn.commit()?;
        // Sweep blobs no namespace records any more.
        for d in self.inner.blobs.walk()? {
            if !referenced.contains(&d.to_string()) {
                let size = self.inner.blobs.info(&d).map(|i| i.size).unwrap_or(0);
                match self.inner.blobs.delete(&d) {
                    Ok(()) => {
                        report.blobs_removed += 1;
                        report.bytes_freed += u64::try_from(size).unwrap_or(0);
                    }
                    Err(e) => tracing::warn!(digest = %d, error = %e, "gc: remove blob"),
                }
            }
        }
        report.duration = started.elapsed();
        {
            let mut stats = self.inner.gc_stats.lock().expect("gc stats poisoned");
            stats.runs += 1;
            stats.last_run = Some(now);
            stats.last = report.clone();
            stats.total_content_removed += report.content_removed as u64;
            stats.total_blobs_removed += report.blobs_removed as u64;
            stats.total_bytes_freed += report.bytes_freed;
            stats.total_leases_expired += report.leases_expired as u64;
            stats.total_snapshots_removed += report.snapshots_removed as u64;
        }
        tracing::info!(
            content_removed = report.content_removed,
            blobs_removed = report.blobs_removed,
            bytes_freed = report.bytes_freed,
            leases_expired = report.leases_expired,
            snapshots_removed = report.snapshots_removed,
            duration_us = report.duration.as_micros() as u64,
            "garbage collected"
        );
        Ok(report)
    }

    /// Run one collection on a blocking thread.
    pub async fn collect_garbage_async(&self) -> berth_core::Result<GcReport> {
        let me = self.clone();
        let report = tokio::task::spawn_blocking(move || me.collect_garbage())
            .await
            .map_err(|e| berth_core::Error::internal(format!("gc task: {e}")))??;
        if report.snapshots_removed > 0 || !self.snapshotter_names().is_empty() {
            let removed = self.sweep_snapshotters().await?;
            if removed > 0 {
                tracing::info!(
                    backend_snapshots_removed = removed,
                    "garbage collected snapshots"
                );
            }
        }
        Ok(report)
    }

    /// Totals of every collection so far.
    pub fn gc_stats(&self) -> GcStats {
        self.inner
            .gc_stats
            .lock()
            .expect("gc stats poisoned")
            .clone()
    }

    /// Run the collector's schedule until the task is dropped: after deletions (debounced by
    /// `pause_threshold`) and every `schedule_interval`.
    pub async fn run_gc_scheduler(self, config: GcConfig) {
        tokio::time::sleep(config.startup_delay).await;
        let mut last_pause = Duration::ZERO;
        loop {
            let woke_by_deletion = tokio::select! {
                _ = self.inner.dirty.notified() => true,
                _ = tokio::time::sleep(config.schedule_interval) => false,
            };
            if woke_by_deletion {
                tokio::time::sleep(config.schedule_delay).await;
            }
            match self.collect_garbage_async().await {
                Ok(r) => last_pause = r.duration,
                Err(e) => tracing::error!(error = %e, "garbage collection failed"),
            }
            if config.pause_threshold > 0.0 {
                // Space collections so pauses stay under the threshold of wall time.
                let spacing = last_pause.div_f64(config.pause_threshold);
                tokio::time::sleep(spacing.min(Duration::from_secs(5))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_rfc3339_with_offsets() {
        let z = parse_rfc3339("2026-11-23T10:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2026-11-23T11:00:00+01:00").unwrap(), z);
        assert_eq!(parse_rfc3339("2026-11-23T05:30:00-04:30").unwrap(), z);
        assert_eq!(
            parse_rfc3339("2026-11-23T10:00:00.5Z").unwrap(),
            z + Duration::from_millis(500)
        );
        assert!(parse_rfc3339("tomorrow").is_none());
    }

    /// Offsets come from clients' labels: a huge hour count is an invalid time (containerd
    /// ignores an expiry it cannot parse), never an arithmetic overflow.
    #[test]
    fn huge_offsets_are_invalid_not_overflows() {
        let huge = format!("2026-11-23T10:00:00+{}:00", u64::MAX / 3600 + 1);
        assert_eq!(parse_rfc3339(&huge), None);
        assert_eq!(
            parse_rfc3339("2026-11-23T10:00:00-0:99999999999999999999"),
            None
        );
        assert_eq!(parse_rfc3339("2026-11-23T10:00:00+25:00"), None);
        assert_eq!(parse_rfc3339("2026-11-23T10:00:00+01:60"), None);
        let expiry = BTreeMap::from([(labels::GC_EXPIRE.to_string(), huge)]);
        assert!(!label_expired(&expiry, SystemTime::now()));
    }
}
