//! Container records: `containers` table, key (namespace, id), as containerd's
//! `metadata/containers.go`.
//!
//! A record is written in one transaction with the namespace it creates; it names its snapshot
//! (`snapshotter`, `snapshot_key`) and its image by name, and the collector ([`crate::gc`]) keeps
//! both alive for as long as the record exists. Opaque values (spec, runtime options,
//! extensions) are stored as type URL + hex of the bytes.

use std::collections::BTreeMap;

use berth_core::containers::{Any, Container, ContainerStore, Runtime};
use berth_core::filters::Filter;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::db::{
    decode, encode, ensure_namespace, from_nanos, keys_in_ns, now_nanos, to_nanos, Metadata,
    CONTAINERS,
};
use crate::error::{MetadataError, Result};

/// An [`Any`] in a record: the bytes as hex, so the record stays JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AnyRecord {
    pub type_url: String,
    #[serde(default)]
    pub value: String,
}

impl AnyRecord {
    fn from_any(a: &Any) -> AnyRecord {
        AnyRecord {
            type_url: a.type_url.clone(),
            value: hex::encode(&a.value),
        }
    }

    fn into_any(self, key: &str) -> Result<Any> {
        let value = hex::decode(&self.value)
            .map_err(|e| berth_redb::StoreError::corrupt(key, format!("any value: {e}")))?;
        Ok(Any {
            type_url: self.type_url,
            value,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    #[serde(default)]
    pub image: String,
    pub runtime: String,
    #[serde(default)]
    pub runtime_options: Option<AnyRecord>,
    #[serde(default)]
    pub spec: Option<AnyRecord>,
    #[serde(default)]
    pub snapshotter: String,
    #[serde(default)]
    pub snapshot_key: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub extensions: BTreeMap<String, AnyRecord>,
    #[serde(default)]
    pub sandbox: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ContainerRecord {
    fn from_container(c: &Container) -> ContainerRecord {
        ContainerRecord {
            image: c.image.clone(),
            runtime: c.runtime.name.clone(),
            runtime_options: c.runtime.options.as_ref().map(AnyRecord::from_any),
            spec: c.spec.as_ref().map(AnyRecord::from_any),
            snapshotter: c.snapshotter.clone(),
            snapshot_key: c.snapshot_key.clone(),
            labels: c.labels.clone(),
            extensions: c
                .extensions
                .iter()
                .map(|(k, v)| (k.clone(), AnyRecord::from_any(v)))
                .collect(),
            sandbox: c.sandbox.clone(),
            created_at: to_nanos(c.created_at),
            updated_at: to_nanos(c.updated_at),
        }
    }

    fn into_container(self, id: &str) -> Result<Container> {
        let mut extensions = BTreeMap::new();
        for (k, v) in self.extensions {
            extensions.insert(k, v.into_any(id)?);
        }
        Ok(Container {
            id: id.to_string(),
            labels: self.labels,
            image: self.image,
            runtime: Runtime {
                name: self.runtime,
                options: self.runtime_options.map(|a| a.into_any(id)).transpose()?,
            },
            spec: self.spec.map(|a| a.into_any(id)).transpose()?,
            snapshotter: self.snapshotter,
            snapshot_key: self.snapshot_key,
            extensions,
            sandbox: self.sandbox,
            created_at: from_nanos(self.created_at),
            updated_at: from_nanos(self.updated_at),
        })
    }
}

impl Metadata {
    fn container_get(&self, ns: &str, id: &str) -> Result<Container> {
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(CONTAINERS)?;
        let v = t
            .get((ns, id))?
            .ok_or_else(|| MetadataError::ContainerNotFound {
                id: id.to_string(),
                namespace: ns.to_string(),
            })?;
        decode::<ContainerRecord>(id, v.value())?.into_container(id)
    }

    fn container_list(&self, ns: &str, filters: &[String]) -> Result<Vec<Container>> {
        let filter = Filter::parse_all(filters)?;
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(CONTAINERS)?;
        let mut out = Vec::new();
        for (id, bytes) in keys_in_ns(&t, ns)? {
            let c = decode::<ContainerRecord>(&id, &bytes)?.into_container(&id)?;
            if filter.matches(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn container_create(&self, ns: &str, mut c: Container) -> Result<Container> {
        c.validate()
            .map_err(|e| e.context("create container failed validation"))?;
        let now = from_nanos(now_nanos());
        c.created_at = now;
        c.updated_at = now;
        let txn = self.inner.db.begin_write()?;
        {
            ensure_namespace(&txn, ns)?;
            let mut t = txn.open_table(CONTAINERS)?;
            if t.get((ns, c.id.as_str()))?.is_some() {
                return Err(MetadataError::ContainerExists(c.id));
            }
            let rec = ContainerRecord::from_container(&c);
            t.insert((ns, c.id.as_str()), encode(&rec).as_slice())?;
        }
        txn.commit()?;
        Ok(c)
    }

    fn container_update(&self, ns: &str, c: Container, fieldpaths: &[String]) -> Result<Container> {
        if c.id.is_empty() {
            return Err(berth_core::Error::invalid_argument("must specify a container id").into());
        }
        let id = c.id.as_str();
        let txn = self.inner.db.begin_write()?;
        let updated = {
            let mut t = txn.open_table(CONTAINERS)?;
            let mut stored = match t.get((ns, id))? {
                Some(v) => decode::<ContainerRecord>(id, v.value())?.into_container(id)?,
                None => {
                    return Err(berth_core::Error::not_found(format!("container {id:?}")).into())
                }
            };
            stored.apply_update(&c, fieldpaths)?;
            stored.updated_at = from_nanos(now_nanos());
            t.insert(
                (ns, id),
                encode(&ContainerRecord::from_container(&stored)).as_slice(),
            )?;
            stored
        };
        txn.commit()?;
        Ok(updated)
    }

    fn container_delete(&self, ns: &str, id: &str) -> Result<()> {
        let txn = self.inner.db.begin_write()?;
        if txn.open_table(CONTAINERS)?.remove((ns, id))?.is_none() {
            return Err(berth_core::Error::not_found(format!("container {id}")).into());
        }
        txn.commit()?;
        self.mark_dirty();
        Ok(())
    }
}

impl ContainerStore for Metadata {
    async fn get(&self, ns: &str, id: &str) -> berth_core::Result<Container> {
        Ok(self.container_get(ns, id)?)
    }

    async fn list(&self, ns: &str, filters: &[String]) -> berth_core::Result<Vec<Container>> {
        Ok(self.container_list(ns, filters)?)
    }

    async fn create(&self, ns: &str, container: Container) -> berth_core::Result<Container> {
        Ok(self.container_create(ns, container)?)
    }

    async fn update(
        &self,
        ns: &str,
        container: Container,
        fieldpaths: &[String],
    ) -> berth_core::Result<Container> {
        Ok(self.container_update(ns, container, fieldpaths)?)
    }

    async fn delete(&self, ns: &str, id: &str) -> berth_core::Result<()> {
        Ok(self.container_delete(ns, id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::ErrorKind;

    fn meta() -> (tempfile::TempDir, Metadata) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = berth_content::LocalStore::open(dir.path().join("content")).unwrap();
        let m = Metadata::open(dir.path().join("meta.redb"), blobs).unwrap();
        (dir, m)
    }

    fn container(id: &str) -> Container {
        let mut c = Container::new(id);
        c.runtime.name = "io.containerd.runc.v2".into();
        c.runtime.options = Some(Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: vec![0, 1, 2],
        });
        c.spec = Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: br#"{"ociVersion":"1.0.2"}"#.to_vec(),
        });
        c.snapshotter = "overlayfs".into();
        c.snapshot_key = id.into();
        c.image = "docker.io/library/busybox:latest".into();
        c
    }

    #[tokio::test]
    async fn create_get_list_update_delete() {
        let (_d, m) = meta();
        let created = ContainerStore::create(&m, "ns1", container("c1"))
            .await
            .unwrap();
        assert!(created.created_at > std::time::SystemTime::UNIX_EPOCH);
        let got = ContainerStore::get(&m, "ns1", "c1").await.unwrap();
        assert_eq!(got, created);
        let err = ContainerStore::create(&m, "ns1", container("c1"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(err.message(), "container \"c1\": already exists");
        // Namespaced.
        let err = ContainerStore::get(&m, "ns2", "c1").await.unwrap_err();
        assert_eq!(
            err.message(),
            "container \"c1\" in namespace \"ns2\": not found"
        );
        ContainerStore::create(&m, "ns1", container("c2"))
            .await
            .unwrap();
        let all = ContainerStore::list(&m, "ns1", &[]).await.unwrap();
        assert_eq!(all.len(), 2);
        let one = ContainerStore::list(&m, "ns1", &["id==c2".to_string()])
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        // Field-masked update.
        let mut upd = Container::new("c1");
        upd.labels.insert("a".into(), "b".into());
        let u = ContainerStore::update(&m, "ns1", upd, &["labels".to_string()])
            .await
            .unwrap();
        assert_eq!(u.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(u.image, "docker.io/library/busybox:latest");
        assert_eq!(u.created_at, created.created_at);
        assert!(u.updated_at >= created.updated_at);
        // Invalid create.
        let mut bad = container("c3");
        bad.spec = None;
        let err = ContainerStore::create(&m, "ns1", bad).await.unwrap_err();
        assert_eq!(
            err.message(),
            "create container failed validation: container.Spec must be set: invalid argument"
        );
        ContainerStore::delete(&m, "ns1", "c1").await.unwrap();
        let err = ContainerStore::delete(&m, "ns1", "c1").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn containers_keep_their_snapshot_through_gc() {
        use berth_core::leases::LeaseManager;
        use berth_core::snapshots::Snapshotter;
        let (d, m) = meta();
        let backend = berth_snapshots::NativeSnapshotter::open(d.path().join("native")).unwrap();
        m.register_snapshotter("native", std::sync::Arc::new(backend));
        LeaseManager::create(&m, "ns", "l1", BTreeMap::new())
            .await
            .unwrap();
        let leased = m.snapshotter("ns", "native", Some("l1")).unwrap();
        leased.prepare("c1", None, BTreeMap::new()).await.unwrap();
        leased
            .prepare("loose", None, BTreeMap::new())
            .await
            .unwrap();
        let mut c = container("c1");
        c.snapshotter = "native".into();
        ContainerStore::create(&m, "ns", c).await.unwrap();
        // The lease goes (as at the end of `ctr run`): the container still holds its rootfs.
        LeaseManager::delete(&m, "ns", "l1", true).await.unwrap();
        let plain = m.snapshotter("ns", "native", None).unwrap();
        plain.stat("c1").await.unwrap();
        assert_eq!(
            plain.stat("loose").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        ContainerStore::delete(&m, "ns", "c1").await.unwrap();
        m.collect_garbage_async().await.unwrap();
        assert_eq!(
            plain.stat("c1").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
