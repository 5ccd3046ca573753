use std::collections::BTreeMap;

use berth_core::filters::Filter;
use berth_core::labels;
use berth_core::leases::{Lease, LeaseManager, Resource};
use redb::ReadableTable;

use crate::db::{
    decode, encode, ensure_namespace, from_nanos, keys_in_ns, now_nanos, LeaseRecord, Metadata,
    LEASES, LEASE_RESOURCES,
};
use crate::error::{MetadataError, Result};

/// Resources of one lease, read inside any transaction.
pub(crate) fn resources_of<T>(table: &T, ns: &str, lease: &str) -> Result<Vec<Resource>>
where
    T: ReadableTable<(&'static str, &'static str, &'static str, &'static str), ()>,
{
    let mut out = Vec::new();
    for entry in table.range((ns, lease, "", "")..)? {
        let (k, _) = entry?;
        let (kns, klease, kind, id) = k.value();
        if kns != ns || klease != lease {
            break;
        }
        out.push(Resource {
            id: id.to_string(),
            kind: kind.to_string(),
        });
    }
    Ok(out)
}

/// Remove a lease and its resources inside `txn`; false when it did not exist.
pub(crate) fn remove_lease(txn: &redb::WriteTransaction, ns: &str, id: &str) -> Result<bool> {
    if txn.open_table(LEASES)?.remove((ns, id))?.is_none() {
        return Ok(false);
    }
    let mut res = txn.open_table(LEASE_RESOURCES)?;
    for r in resources_of(&res, ns, id)? {
        res.remove((ns, id, r.kind.as_str(), r.id.as_str()))?;
    }
    Ok(true)
}

impl Metadata {
    fn lease_create(&self, ns: &str, id: &str, labels: BTreeMap<String, String>) -> Result<Lease> {
        // containerd checks only that a lease ID is given (ctr's random IDs may end in `-`).
        if id.is_empty() {
            return Err(berth_core::Error::invalid_argument("lease id must be provided").into());
        }
        labels::validate_all(&labels)?;
        if let Some(exp) = labels.get(labels::GC_EXPIRE) {
            if crate::gc::parse_rfc3339(exp).is_none() {
                return Err(berth_core::Error::invalid_argument(format!(
                    "lease {id:?}: label {}={exp:?} is not an RFC 3339 time",
                    labels::GC_EXPIRE
                ))
                .into());
            }
        }
        let txn = self.inner.db.begin_write()?;
        let created_at = now_nanos();
        {
            ensure_namespace(&txn, ns)?;
            let mut t = txn.open_table(LEASES)?;
            if t.get((ns, id))?.is_some() {
                return Err(MetadataError::LeaseExists(id.to_string()));
            }
            let rec = LeaseRecord {
                created_at,
                labels: labels.clone(),
            };
            t.insert((ns, id), encode(&rec).as_slice())?;
        }
        txn.commit()?;
        Ok(Lease {
            id: id.to_string(),
            created_at: from_nanos(created_at),
            labels,
        })
    }

    fn lease_delete(&self, ns: &str, id: &str) -> Result<()> {
        let txn = self.inner.db.begin_write()?;
        if !remove_lease(&txn, ns, id)? {
            return Err(MetadataError::LeaseNotFound(id.to_string()));
        }
        txn.commit()?;
        self.mark_dirty();
        Ok(())
    }

    fn lease_list(&self, ns: &str, filters: &[String]) -> Result<Vec<Lease>> {
        let filter = Filter::parse_all(filters)?;
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(LEASES)?;
        let mut out = Vec::new();
        for (id, bytes) in keys_in_ns(&t, ns)? {
            let rec: LeaseRecord = decode(&id, &bytes)?;
            let lease = Lease {
                id,
                created_at: from_nanos(rec.created_at),
                labels: rec.labels,
            };
            if filter.matches(&lease) {
                out.push(lease);
            }
        }
        Ok(out)
    }

    fn lease_resource(&self, ns: &str, lease: &str, r: &Resource, add: bool) -> Result<()> {
        r.validate()?;
        let txn = self.inner.db.begin_write()?;
        if txn.open_table(LEASES)?.get((ns, lease))?.is_none() {
            return Err(MetadataError::LeaseNotFound(lease.to_string()));
        }
        {
            let mut t = txn.open_table(LEASE_RESOURCES)?;
            let key = (ns, lease, r.kind.as_str(), r.id.as_str());
            if add {
                t.insert(key, ())?;
            } else {
                t.remove(key)?;
            }
        }
        txn.commit()?;
        if !add {
            self.mark_dirty();
        }
        Ok(())
    }

    fn lease_resources(&self, ns: &str, lease: &str) -> Result<Vec<Resource>> {
        let txn = self.inner.db.begin_read()?;
        if txn.open_table(LEASES)?.get((ns, lease))?.is_none() {
            return Err(MetadataError::LeaseNotFound(lease.to_string()));
        }
        resources_of(&txn.open_table(LEASE_RESOURCES)?, ns, lease)
    }
}

impl LeaseManager for Metadata {
    async fn create(
        &self,
        ns: &str,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> berth_core::Result<Lease> {
        Ok(self.lease_create(ns, id, labels)?)
    }

    async fn delete(&self, ns: &str, id: &str, sync: bool) -> berth_core::Result<()> {
        self.lease_delete(ns, id)?;
        if sync {
            self.collect_garbage_async().await?;
        }
        Ok(())
    }

    async fn list(&self, ns: &str, filters: &[String]) -> berth_core::Result<Vec<Lease>> {
        Ok(self.lease_list(ns, filters)?)
    }

    async fn add_resource(&self, ns: &str, lease: &str, r: Resource) -> berth_core::Result<()> {
        Ok(self.lease_resource(ns, lease, &r, true)?)
    }

    async fn delete_resource(&self, ns: &str, lease: &str, r: Resource) -> berth_core::Result<()> {
        Ok(self.lease_resource(ns, lease, &r, false)?)
    }

    async fn list_resources(&self, ns: &str, lease: &str) -> berth_core::Result<Vec<Resource>> {
        Ok(self.lease_resources(ns, lease)?)
    }
}
