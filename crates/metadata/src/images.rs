//! Image records: `images` table, key (namespace, name).

use std::collections::BTreeMap;

use berth_core::filters::Filter;
use berth_core::images::{validate_target, Image, ImageStore};
use berth_core::{labels, Descriptor, Digest};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::db::{
    decode, encode, ensure_namespace, from_nanos, keys_in_ns, now_nanos, Metadata, IMAGES,
};
use crate::error::{MetadataError, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ImageRecord {
    fn into_image(self, name: &str) -> Result<Image> {
        Ok(Image {
            name: name.to_string(),
            labels: self.labels,
            target: Descriptor {
                media_type: self.media_type,
                digest: Digest::parse(&self.digest)?,
                size: self.size,
                annotations: self.annotations,
            },
            created_at: from_nanos(self.created_at),
            updated_at: from_nanos(self.updated_at),
        })
    }

    fn set_target(&mut self, t: &Descriptor) {
        self.media_type = t.media_type.clone();
        self.digest = t.digest.to_string();
        self.size = t.size;
        self.annotations = t.annotations.clone();
    }
}

impl Metadata {
    fn image_get(&self, ns: &str, name: &str) -> Result<Image> {
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(IMAGES)?;
        let v = t
            .get((ns, name))?
            .ok_or_else(|| MetadataError::ImageNotFound(name.to_string()))?;
        decode::<ImageRecord>(name, v.value())?.into_image(name)
    }

    fn image_list(&self, ns: &str, filters: &[String]) -> Result<Vec<Image>> {
        let filter = Filter::parse_all(filters)?;
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(IMAGES)?;
        let mut out = Vec::new();
        for (name, bytes) in keys_in_ns(&t, ns)? {
            let image = decode::<ImageRecord>(&name, &bytes)?.into_image(&name)?;
            if filter.matches(&image) {
                out.push(image);
            }
        }
        Ok(out)
    }

    fn image_create(&self, ns: &str, image: Image) -> Result<Image> {
        image.validate()?;
        let txn = self.inner.db.begin_write()?;
        let now = now_nanos();
        let mut rec = ImageRecord {
            media_type: String::new(),
            digest: String::new(),
            size: 0,
            annotations: BTreeMap::new(),
            labels: image.labels.clone(),
            created_at: now,
            updated_at: now,
        };
        rec.set_target(&image.target);
        {
            ensure_namespace(&txn, ns)?;
            let mut t = txn.open_table(IMAGES)?;
            if t.get((ns, image.name.as_str()))?.is_some() {
                return Err(MetadataError::ImageExists(image.name));
            }
            t.insert((ns, image.name.as_str()), encode(&rec).as_slice())?;
        }
        txn.commit()?;
        rec.into_image(&image.name)
    }

    fn image_update(&self, ns: &str, image: Image, fieldpaths: &[String]) -> Result<Image> {
        if image.name.is_empty() {
            return Err(berth_core::Error::invalid_argument("image name must not be empty").into());
        }
        let name = image.name.as_str();
        let txn = self.inner.db.begin_write()?;
        let rec = {
            let mut t = txn.open_table(IMAGES)?;
            let mut rec: ImageRecord = match t.get((ns, name))? {
                Some(v) => decode(name, v.value())?,
                None => return Err(MetadataError::ImageNotFound(name.to_string())),
            };
            if fieldpaths.is_empty() {
                image.validate()?;
                rec.labels = image.labels.clone();
                rec.set_target(&image.target);
            } else {
                for path in fieldpaths {
                    if path == "target" {
                        validate_target(&image.target)?;
                        rec.set_target(&image.target);
                    } else if path == "annotations" {
                        rec.annotations = image.target.annotations.clone();
                    } else if let Some(key) = path.strip_prefix("annotations.") {
                        match image.target.annotations.get(key) {
                            Some(v) => rec.annotations.insert(key.to_string(), v.clone()),
                            None => rec.annotations.remove(key),
                        };
                    } else if path == "labels" || path.starts_with("labels.") {
                        labels::apply_label_mask(
                            &mut rec.labels,
                            &image.labels,
                            std::slice::from_ref(path),
                            &[],
                        )?;
                    } else {
                        return Err(berth_core::Error::invalid_argument(format!(
                            "cannot update {path:?} field on image {name:?}"
                        ))
                        .into());
                    }
                }
            }
            rec.updated_at = now_nanos();
            t.insert((ns, name), encode(&rec).as_slice())?;
            rec
        };
        txn.commit()?;
        rec.into_image(name)
    }

    fn image_delete(&self, ns: &str, name: &str) -> Result<()> {
        let txn = self.inner.db.begin_write()?;
        if txn.open_table(IMAGES)?.remove((ns, name))?.is_none() {
            return Err(MetadataError::ImageNotFound(name.to_string()));
        }
        txn.commit()?;
        self.mark_dirty();
        Ok(())
    }
}

impl ImageStore for Metadata {
    async fn get(&self, ns: &str, name: &str) -> berth_core::Result<Image> {
        Ok(self.image_get(ns, name)?)
    }

    async fn list(&self, ns: &str, filters: &[String]) -> berth_core::Result<Vec<Image>> {
        Ok(self.image_list(ns, filters)?)
    }

    async fn create(&self, ns: &str, image: Image) -> berth_core::Result<Image> {
        Ok(self.image_create(ns, image)?)
    }

    async fn update(
        &self,
        ns: &str,
        image: Image,
        fieldpaths: &[String],
    ) -> berth_core::Result<Image> {
        Ok(self.image_update(ns, image, fieldpaths)?)
    }

    async fn delete(&self, ns: &str, name: &str, sync: bool) -> berth_core::Result<()> {
        self.image_delete(ns, name)?;
        if sync {
            self.collect_garbage_async().await?;
        }
        Ok(())
    }
}
