//! The image's defaults for running it: the `config` object of an OCI (or Docker) image config.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::error::{OciError, Result};

/// What an image says about running it (the OCI image config's `config` object, written in
/// Docker's PascalCase): the **entrypoint** and **cmd** (the process's arguments are the
/// entrypoint followed by the cmd, or by the arguments given to `run`), the environment, the
/// working directory, the user and the signal that stops it. Absent and `null` fields read as
/// empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageDefaults {
    /// `user`, `uid`, `user:group` or `uid:gid`; empty means root.
    #[serde(default, deserialize_with = "nullable")]
    pub user: String,
    /// `KEY=value` entries.
    #[serde(default, deserialize_with = "nullable")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub entrypoint: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub cmd: Vec<String>,
    /// Absolute; empty means `/`.
    #[serde(default, deserialize_with = "nullable")]
    pub working_dir: String,
    /// The signal `stop` sends first (`SIGTERM` when empty).
    #[serde(default, deserialize_with = "nullable")]
    pub stop_signal: String,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

/// `null` as the type's default (Docker writes `"Entrypoint": null`).
fn nullable<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ImageDefaults {
    /// The defaults in an image config's `config` value (none at all: all empty).
    pub fn from_config(config: Option<&serde_json::Value>) -> Result<ImageDefaults> {
        match config {
            None | Some(serde_json::Value::Null) => Ok(ImageDefaults::default()),
            Some(v) => ImageDefaults::deserialize(v).map_err(|source| OciError::Json {
                what: "image config",
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn docker_nulls_and_absent_fields_read_as_empty() {
        let v = json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
            "Entrypoint": null,
            "WorkingDir": "",
            "Labels": null,
            "OnBuild": null
        });
        let d = ImageDefaults::from_config(Some(&v)).unwrap();
        assert_eq!(d.cmd, ["sh"]);
        assert!(d.entrypoint.is_empty());
        assert_eq!(d.env.len(), 1);
        assert_eq!(d.user, "");
        assert_eq!(
            ImageDefaults::from_config(None).unwrap(),
            ImageDefaults::default()
        );
    }

    #[test]
    fn a_malformed_config_names_itself() {
        let e = ImageDefaults::from_config(Some(&json!({"Cmd": "sh"}))).unwrap_err();
        assert!(e.to_string().starts_with("image config: "), "{e}");
        assert!(e.to_string().ends_with(": invalid argument"), "{e}");
    }
}
