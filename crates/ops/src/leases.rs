//! Leases around a workflow.
//!
//! A workflow that makes several objects (content, snapshots) before one of them is referenced
//! from a root (an image or container record) runs **under a lease**: the lease holds what is
//! made so the garbage collector leaves it alone, and is deleted when the workflow is done,
//! whether it succeeded or not. The lease carries `containerd.io/gc.expire`, so if the process
//! dies before deleting it, the collector frees its resources once it expires.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use berth_core::labels::GC_EXPIRE;
use berth_core::leases::LeaseManager;

use crate::error::OpsError;

/// How long a workflow's lease lives if it is never deleted (containerd's client default).
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// The `containerd.io/gc.expire` label of a lease made at `now` that lives `expiry`.
pub fn expire_label(now: SystemTime, expiry: Duration) -> (String, String) {
    let at = now.checked_add(expiry).unwrap_or(now);
    (
        GC_EXPIRE.to_string(),
        humantime::format_rfc3339_seconds(at).to_string(),
    )
}

/// A fresh, unique lease id for a workflow: `berth-<what>-<random>`.
pub fn temporary_id(what: &str) -> String {
    format!("berth-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// Run `f` under a new lease `id` in namespace `ns` that expires after `expiry`, then delete
/// the lease, whatever `f` returned. `f` receives the lease id (to pass to the snapshotter, the
/// unpacker or the content writer). When `f` failed, the deletion waits for a collection, so
/// what it left (blobs, snapshots; ingests stay for a resume) is gone before this returns. A
/// failure to delete the lease is logged, not returned: the lease expires anyway.
pub async fn with_lease<L, T, E, F, Fut>(
    leases: &L,
    ns: &str,
    id: &str,
    expiry: Duration,
    f: F,
) -> Result<T, E>
where
    L: LeaseManager,
    E: From<OpsError>,
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let labels = BTreeMap::from([expire_label(SystemTime::now(), expiry)]);
    leases
        .create(ns, id, labels)
        .await
        .map_err(|e| OpsError::from(e).context(format!("create lease {id}")))?;
    let out = f(id.to_string()).await;
    if let Err(e) = leases.delete(ns, id, out.is_err()).await {
        tracing::warn!(lease = id, namespace = ns, error = %e, "delete lease");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::leases::{Lease, Resource};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl LeaseManager for Log {
        async fn create(
            &self,
            _ns: &str,
            id: &str,
            labels: BTreeMap<String, String>,
        ) -> berth_core::Result<Lease> {
            assert!(labels.contains_key(GC_EXPIRE));
            self.0.lock().unwrap().push(format!("create {id}"));
            Ok(Lease {
                id: id.to_string(),
                created_at: SystemTime::now(),
                labels,
            })
        }
        async fn delete(&self, _ns: &str, id: &str, _sync: bool) -> berth_core::Result<()> {
            self.0.lock().unwrap().push(format!("delete {id}"));
            Ok(())
        }
        async fn list(&self, _ns: &str, _f: &[String]) -> berth_core::Result<Vec<Lease>> {
            Ok(vec![])
        }
        async fn add_resource(&self, _: &str, _: &str, _: Resource) -> berth_core::Result<()> {
            Ok(())
        }
        async fn delete_resource(&self, _: &str, _: &str, _: Resource) -> berth_core::Result<()> {
            Ok(())
        }
        async fn list_resources(&self, _: &str, _: &str) -> berth_core::Result<Vec<Resource>> {
            Ok(vec![])
        }
    }

    #[tokio::test]
    async fn lease_is_deleted_after_failure() {
        let log = Log::default();
        let r: Result<(), OpsError> =
            with_lease(&log, "ns", "l1", DEFAULT_EXPIRY, |id| async move {
                assert_eq!(id, "l1");
                Err(OpsError::from(berth_core::Error::not_found("boom")))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(*log.0.lock().unwrap(), vec!["create l1", "delete l1"]);
    }

    #[test]
    fn expiry_label_is_rfc3339() {
        let (k, v) = expire_label(SystemTime::UNIX_EPOCH, Duration::from_secs(3600));
        assert_eq!(k, GC_EXPIRE);
        assert_eq!(v, "1970-01-01T01:00:00Z");
    }
}
