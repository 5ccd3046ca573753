//! In-memory stores for testing resolution and unpacking without a daemon or root: a content
//! store, a lease manager, a snapshotter (one namespace, with containerd's error classes) and a
//! layer applier whose "diff ID" of a blob is `sha256("applied:" + blob bytes)`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_core::content::{ContentStore, ContentWriter, Info, Status, WriterOptions};
use berth_core::leases::{Lease, LeaseManager, Resource};
use berth_core::snapshots::{Info as SnapInfo, Kind, Mount, Snapshotter, Usage};
use berth_core::{Descriptor, Digest, Error, Result};
use berth_images::spec::*;
use berth_images::LayerApplier;

// ---------------------------------------------------------------------------------------------
// Content

pub type Labels = BTreeMap<String, String>;
type Shared<T> = Arc<Mutex<T>>;

#[derive(Debug, Clone, Default)]
pub struct FakeContent {
    /// Blob bytes and labels by digest.
    pub blobs: Shared<HashMap<Digest, (Vec<u8>, Labels)>>,
}

impl FakeContent {
    /// Store `data` and return its descriptor with `media_type`.
    pub fn put(&self, media_type: &str, data: &[u8]) -> Descriptor {
        let digest = Digest::sha256_of(data);
        self.blobs
            .lock()
            .unwrap()
            .insert(digest.clone(), (data.to_vec(), BTreeMap::new()));
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: data.len() as i64,
            annotations: BTreeMap::new(),
        }
    }

    /// Store `value` as JSON.
    pub fn put_json(&self, media_type: &str, value: &serde_json::Value) -> Descriptor {
        self.put(media_type, &serde_json::to_vec(value).unwrap())
    }

    pub fn labels(&self, digest: &Digest) -> BTreeMap<String, String> {
        self.blobs.lock().unwrap()[digest].1.clone()
    }
}

#[derive(Debug)]
pub struct NoWriter;

impl ContentWriter for NoWriter {
    async fn status(&self) -> Result<Status> {
        Err(Error::internal("no writer"))
    }
    async fn write(&mut self, _: &[u8]) -> Result<()> {
        Err(Error::internal("no writer"))
    }
    async fn truncate(&mut self, _: i64) -> Result<()> {
        Err(Error::internal("no writer"))
    }
    fn digest(&self) -> Digest {
        Digest::sha256_of(b"")
    }
    async fn commit(
        self,
        _: i64,
        _: Option<Digest>,
        _: BTreeMap<String, String>,
    ) -> Result<Digest> {
        Err(Error::internal("no writer"))
    }
}

fn info(digest: &Digest, data: &[u8], labels: &BTreeMap<String, String>) -> Info {
    Info {
        digest: digest.clone(),
        size: data.len() as i64,
        created_at: SystemTime::UNIX_EPOCH,
        updated_at: SystemTime::UNIX_EPOCH,
        labels: labels.clone(),
    }
}

impl ContentStore for FakeContent {
    type Writer = NoWriter;

    async fn info(&self, _ns: &str, digest: &Digest) -> Result<Info> {
        let blobs = self.blobs.lock().unwrap();
        let (data, labels) = blobs
            .get(digest)
            .ok_or_else(|| Error::not_found(format!("content {digest}")))?;
        Ok(info(digest, data, labels))
    }
    async fn update(&self, _ns: &str, update: Info, fieldpaths: &[String]) -> Result<Info> {
        let mut blobs = self.blobs.lock().unwrap();
        let (data, labels) = blobs
            .get_mut(&update.digest)
            .ok_or_else(|| Error::not_found(format!("content {}", update.digest)))?;
        berth_core::labels::apply_label_mask(labels, &update.labels, fieldpaths, &[])?;
        Ok(info(&update.digest, data, labels))
    }
    async fn list(&self, _ns: &str, _filters: &[String]) -> Result<Vec<Info>> {
        Ok(Vec::new())
    }
    async fn delete(&self, _ns: &str, digest: &Digest) -> Result<()> {
        self.blobs.lock().unwrap().remove(digest);
        Ok(())
    }
    async fn read_at(
        &self,
        _ns: &str,
        digest: &Digest,
        offset: i64,
        len: usize,
    ) -> Result<Vec<u8>> {
        let blobs = self.blobs.lock().unwrap();
        let (data, _) = blobs
            .get(digest)
            .ok_or_else(|| Error::not_found(format!("content {digest}")))?;
        let start = (offset as usize).min(data.len());
        let end = (start + len).min(data.len());
        Ok(data[start..end].to_vec())
    }
    async fn status(&self, _ns: &str, reference: &str) -> Result<Status> {
        Err(Error::not_found(reference))
    }
    async fn list_statuses(&self, _ns: &str, _filters: &[String]) -> Result<Vec<Status>> {
        Ok(Vec::new())
    }
    async fn abort(&self, _ns: &str, reference: &str) -> Result<()> {
        Err(Error::not_found(reference))
    }
    async fn writer(&self, _ns: &str, _options: WriterOptions) -> Result<NoWriter> {
        Err(Error::internal("no writer"))
    }
}

// ---------------------------------------------------------------------------------------------
// Leases

#[derive(Debug, Clone, Default)]
pub struct FakeLeases {
    /// Labels and resources of the leases that exist.
    pub leases: Shared<BTreeMap<String, (Labels, Vec<Resource>)>>,
    /// Every lease ever created, with its labels.
    pub created: Arc<Mutex<Vec<(String, Labels)>>>,
}

impl LeaseManager for FakeLeases {
    async fn create(&self, _ns: &str, id: &str, labels: BTreeMap<String, String>) -> Result<Lease> {
        let mut leases = self.leases.lock().unwrap();
        if leases.contains_key(id) {
            return Err(Error::already_exists(format!("lease {id:?}")));
        }
        leases.insert(id.to_string(), (labels.clone(), Vec::new()));
        self.created
            .lock()
            .unwrap()
            .push((id.to_string(), labels.clone()));
        Ok(Lease {
            id: id.to_string(),
            created_at: SystemTime::now(),
            labels,
        })
    }
    async fn delete(&self, _ns: &str, id: &str, _sync: bool) -> Result<()> {
        self.leases
            .lock()
            .unwrap()
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| Error::not_found(format!("lease {id:?}")))
    }
    async fn list(&self, _ns: &str, _filters: &[String]) -> Result<Vec<Lease>> {
        Ok(Vec::new())
    }
    async fn add_resource(&self, _ns: &str, lease: &str, resource: Resource) -> Result<()> {
        resource.validate()?;
        let mut leases = self.leases.lock().unwrap();
        let (_, resources) = leases
            .get_mut(lease)
            .ok_or_else(|| Error::not_found(format!("lease {lease:?}")))?;
        resources.push(resource);
        Ok(())
    }
    async fn delete_resource(&self, _ns: &str, _lease: &str, _resource: Resource) -> Result<()> {
        Ok(())
    }
    async fn list_resources(&self, _ns: &str, lease: &str) -> Result<Vec<Resource>> {
        Ok(self.leases.lock().unwrap()[lease].1.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

#[derive(Debug, Clone)]
pub struct Snap {
    pub kind: Kind,
    pub parent: Option<String>,
    pub lease: Option<String>,
}

/// One snapshotter's state, shared by the per-lease handles.
#[derive(Debug, Clone, Default)]
pub struct FakeSnapshots {
    pub snaps: Arc<Mutex<BTreeMap<String, Snap>>>,
    pub commits: Arc<Mutex<Vec<String>>>,
}

/// A handle on [`FakeSnapshots`] bound to a lease.
#[derive(Debug, Clone)]
pub struct FakeSnapshotter {
    pub state: FakeSnapshots,
    pub lease: Option<String>,
}

impl FakeSnapshots {
    pub fn handle(&self, lease: Option<&str>) -> FakeSnapshotter {
        FakeSnapshotter {
            state: self.clone(),
            lease: lease.map(str::to_string),
        }
    }

    pub fn committed(&self) -> BTreeMap<String, Option<String>> {
        self.snaps
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.kind == Kind::Committed)
            .map(|(k, s)| (k.clone(), s.parent.clone()))
            .collect()
    }

    pub fn keys(&self) -> Vec<String> {
        self.snaps.lock().unwrap().keys().cloned().collect()
    }
}

impl FakeSnapshotter {
    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        let mut snaps = self.state.snaps.lock().unwrap();
        if snaps.contains_key(key) {
            return Err(Error::already_exists(format!("snapshot {key}")));
        }
        if let Some(p) = parent {
            match snaps.get(p) {
                None => return Err(Error::not_found(format!("parent snapshot {p}"))),
                Some(s) if s.kind != Kind::Committed => {
                    return Err(Error::invalid_argument(format!(
                        "parent {p:?} not committed"
                    )))
                }
                _ => {}
            }
        }
        snaps.insert(
            key.to_string(),
            Snap {
                kind,
                parent: parent.map(str::to_string),
                lease: self.lease.clone(),
            },
        );
        Ok(vec![Mount::new(
            "bind",
            format!("/fake/{key}"),
            ["rbind", "rw"],
        )])
    }
}

#[async_trait::async_trait]
impl Snapshotter for FakeSnapshotter {
    async fn stat(&self, key: &str) -> Result<SnapInfo> {
        let snaps = self.state.snaps.lock().unwrap();
        let s = snaps
            .get(key)
            .ok_or_else(|| Error::not_found(format!("snapshot {key}")))?;
        Ok(SnapInfo {
            kind: s.kind,
            name: key.to_string(),
            parent: s.parent.clone(),
            labels: BTreeMap::new(),
            created: SystemTime::UNIX_EPOCH,
            updated: SystemTime::UNIX_EPOCH,
        })
    }
    async fn update(&self, info: SnapInfo, _fieldpaths: &[String]) -> Result<SnapInfo> {
        self.stat(&info.name).await
    }
    async fn usage(&self, _key: &str) -> Result<Usage> {
        Ok(Usage::default())
    }
    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        Ok(vec![Mount::new("bind", format!("/fake/{key}"), ["rbind"])])
    }
    async fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        _labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active)
    }
    async fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        _labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::View)
    }
    async fn commit(&self, name: &str, key: &str, _labels: BTreeMap<String, String>) -> Result<()> {
        let mut snaps = self.state.snaps.lock().unwrap();
        if snaps.contains_key(name) {
            return Err(Error::already_exists(format!("snapshot {name}")));
        }
        let active = match snaps.get(key) {
            Some(s) if s.kind == Kind::Active => snaps.remove(key).unwrap(),
            Some(_) => return Err(Error::failed_precondition(format!("{key} not active"))),
            None => return Err(Error::not_found(format!("snapshot {key}"))),
        };
        snaps.insert(
            name.to_string(),
            Snap {
                kind: Kind::Committed,
                parent: active.parent,
                lease: self.lease.clone(),
            },
        );
        self.state.commits.lock().unwrap().push(name.to_string());
        Ok(())
    }
    async fn remove(&self, key: &str) -> Result<()> {
        let mut snaps = self.state.snaps.lock().unwrap();
        if snaps.values().any(|s| s.parent.as_deref() == Some(key)) {
            return Err(Error::failed_precondition(
                "cannot remove snapshot with child",
            ));
        }
        snaps
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| Error::not_found(format!("snapshot {key}")))
    }
    async fn walk(&self, _filters: &[String]) -> Result<Vec<SnapInfo>> {
        Ok(Vec::new())
    }
    async fn cleanup(&self) -> Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Applier

/// The diff ID the fake applier reports for a layer blob.
pub fn fake_diff_id(blob: &[u8]) -> Digest {
    let mut data = b"applied:".to_vec();
    data.extend_from_slice(blob);
    Digest::sha256_of(&data)
}

#[derive(Debug, Clone)]
pub struct FakeApplier {
    pub content: FakeContent,
    /// Every apply: the layer digest and the mount source.
    pub calls: Arc<Mutex<Vec<(Digest, String)>>>,
    /// How long each apply takes (to let concurrent unpacks interleave).
    pub delay: Duration,
    /// Applies of this layer wait here until as many as the barrier counts have arrived.
    pub race_on: Option<(Digest, Arc<tokio::sync::Barrier>)>,
}

impl FakeApplier {
    pub fn new(content: &FakeContent) -> FakeApplier {
        FakeApplier {
            content: content.clone(),
            calls: Arc::default(),
            delay: Duration::ZERO,
            race_on: None,
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl LayerApplier for FakeApplier {
    async fn apply(&self, _ns: &str, desc: Descriptor, mounts: Vec<Mount>) -> Result<Descriptor> {
        let source = mounts.first().map(|m| m.source.clone()).unwrap_or_default();
        self.calls
            .lock()
            .unwrap()
            .push((desc.digest.clone(), source));
        if let Some((layer, barrier)) = &self.race_on {
            if *layer == desc.digest {
                barrier.wait().await;
            }
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let data = self.content.blobs.lock().unwrap()[&desc.digest].0.clone();
        Ok(Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            digest: fake_diff_id(&data),
            size: data.len() as i64,
            annotations: BTreeMap::new(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Image builders

pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn desc_json(d: &Descriptor) -> serde_json::Value {
    serde_json::json!({"mediaType": d.media_type, "digest": d.digest.to_string(), "size": d.size})
}

/// An OCI image manifest for `os/arch` with layers made of `layers` bytes, and its config. The
/// config's diff IDs are `diff_ids` when given, else the fake applier's.
pub fn manifest(
    content: &FakeContent,
    os: &str,
    arch: &str,
    layers: &[&[u8]],
    diff_ids: Option<Vec<Digest>>,
) -> Descriptor {
    let diff_ids = diff_ids.unwrap_or_else(|| layers.iter().map(|l| fake_diff_id(l)).collect());
    let config = content.put_json(
        MEDIA_TYPE_OCI_CONFIG,
        &serde_json::json!({
            "architecture": arch, "os": os,
            "rootfs": {"type": "layers",
                       "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()}
        }),
    );
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| desc_json(&content.put(LAYER_GZIP, l)))
        .collect();
    content.put_json(
        MEDIA_TYPE_OCI_MANIFEST,
        &serde_json::json!({
            "schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "config": desc_json(&config), "layers": layers
        }),
    )
}

/// An OCI index of `manifests`, each with its platform (`None`: no platform on the descriptor).
pub fn index(
    content: &FakeContent,
    manifests: &[(&Descriptor, Option<(&str, &str)>)],
) -> Descriptor {
    let entries: Vec<serde_json::Value> = manifests
        .iter()
        .map(|(d, p)| {
            let mut v = desc_json(d);
            if let Some((os, arch)) = p {
                v["platform"] = serde_json::json!({"os": os, "architecture": arch});
            }
            v
        })
        .collect();
    content.put_json(
        MEDIA_TYPE_OCI_INDEX,
        &serde_json::json!({"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": entries}),
    )
}

/// The config descriptor of the manifest `m`.
pub fn config_of(content: &FakeContent, m: &Descriptor) -> Digest {
    let data = content.blobs.lock().unwrap()[&m.digest].0.clone();
    let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
    Digest::parse(v["config"]["digest"].as_str().unwrap()).unwrap()
}
