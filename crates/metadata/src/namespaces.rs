use std::collections::BTreeMap;

use berth_core::namespaces::NamespaceStore;
use berth_core::{identifiers, labels};
use redb::ReadableTable;

use crate::db::{
    decode, encode, keys_in_ns, Metadata, NamespaceRecord, CONTAINERS, CONTENT, IMAGES, LEASES,
    NAMESPACES,
};
use crate::error::{MetadataError, Result};

impl Metadata {
    fn ns_create(&self, name: &str, labels: BTreeMap<String, String>) -> Result<()> {
        identifiers::validate(name)?;
        labels::validate_all(&labels)?;
        let txn = self.inner.db.begin_write()?;
        {
            let mut t = txn.open_table(NAMESPACES)?;
            if t.get(name)?.is_some() {
                return Err(MetadataError::NamespaceExists(name.to_string()));
            }
            t.insert(name, encode(&NamespaceRecord { labels }).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn ns_get(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(NAMESPACES)?;
        let v = t
            .get(name)?
            .ok_or_else(|| MetadataError::NamespaceNotFound(name.to_string()))?;
        Ok(decode::<NamespaceRecord>(name, v.value())?.labels)
    }

    fn ns_list(&self) -> Result<Vec<(String, BTreeMap<String, String>)>> {
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(NAMESPACES)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let rec: NamespaceRecord = decode(k.value(), v.value())?;
            out.push((k.value().to_string(), rec.labels));
        }
        Ok(out)
    }

    fn ns_update(
        &self,
        name: &str,
        update: BTreeMap<String, String>,
        fieldpaths: &[String],
    ) -> Result<BTreeMap<String, String>> {
        let txn = self.inner.db.begin_write()?;
        let labels = {
            let mut t = txn.open_table(NAMESPACES)?;
            // As containerd (its `SetLabel` creates the namespace's bucket): setting labels on a
            // missing namespace creates it; an update that sets nothing creates nothing.
            let mut rec: NamespaceRecord = match t.get(name)? {
                Some(v) => decode(name, v.value())?,
                None if fieldpaths.is_empty() && update.is_empty() => {
                    return Ok(BTreeMap::new());
                }
                None => {
                    identifiers::validate(name)?;
                    NamespaceRecord::default()
                }
            };
            labels::apply_label_mask(&mut rec.labels, &update, fieldpaths, &[])?;
            t.insert(name, encode(&rec).as_slice())?;
            rec.labels
        };
        txn.commit()?;
        Ok(labels)
    }

    fn ns_delete(&self, name: &str) -> Result<()> {
        let txn = self.inner.db.begin_write()?;
        {
            let mut t = txn.open_table(NAMESPACES)?;
            if t.get(name)?.is_none() {
                return Err(MetadataError::NamespaceNotFound(name.to_string()));
            }
            let mut left = Vec::new();
            if !keys_in_ns(&txn.open_table(IMAGES)?, name)?.is_empty() {
                left.push("images");
            }
            if !keys_in_ns(&txn.open_table(CONTENT)?, name)?.is_empty() {
                left.push("blobs");
            }
            if !keys_in_ns(&txn.open_table(CONTAINERS)?, name)?.is_empty() {
                left.push("containers");
            }
            if !keys_in_ns(&txn.open_table(LEASES)?, name)?.is_empty() {
                left.push("leases");
            }
            if !left.is_empty() {
                return Err(MetadataError::NamespaceNotEmpty {
                    name: name.to_string(),
                    left: left.join(", "),
                });
            }
            t.remove(name)?;
        }
        txn.commit()?;
        Ok(())
    }
}

impl NamespaceStore for Metadata {
    fn create(&self, name: &str, labels: BTreeMap<String, String>) -> berth_core::Result<()> {
        Ok(self.ns_create(name, labels)?)
    }
    fn get(&self, name: &str) -> berth_core::Result<BTreeMap<String, String>> {
        Ok(self.ns_get(name)?)
    }
    fn list(&self) -> berth_core::Result<Vec<(String, BTreeMap<String, String>)>> {
        Ok(self.ns_list()?)
    }
    fn update(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        fieldpaths: &[String],
    ) -> berth_core::Result<BTreeMap<String, String>> {
        Ok(self.ns_update(name, labels, fieldpaths)?)
    }
    fn delete(&self, name: &str) -> berth_core::Result<()> {
        Ok(self.ns_delete(name)?)
    }
}
