//! `berth pull`: fetch an image from its registry into berthd's content store (as `ctr pull`
//! does, the client does the fetching; berthd stores, verifies and collects), record it, and
//! unpack it for this platform, with a progress bar per blob on a terminal. The workflow is
//! berth-ops' `pull`; this file holds the flags, the credentials' sources and the output.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use berth_core::{Descriptor, Digest};
use berth_distribution::{
    CredentialProvider, Credentials, DockerConfig, Fetched, PullProgress, StaticCredentials,
};
use berth_images::Platform;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::{Ctx, Format};
use berth_client::RemoteStores;

/// `berth pull` arguments.
#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Platform to fetch and unpack from a multi-platform image (default: this machine's).
    #[arg(long, value_parser = parse_platform, conflicts_with = "all_platforms")]
    platform: Option<Platform>,
    /// Fetch the manifests of every platform (only this machine's is unpacked).
    #[arg(long)]
    all_platforms: bool,
    /// Fetch only; do not unpack into the snapshotter.
    #[arg(long)]
    no_unpack: bool,
    /// Snapshotter to unpack into.
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = "overlayfs")]
    snapshotter: String,
    /// The image: `busybox`, `registry.example/app:v1`, `localhost:5000/app@sha256:…`.
    reference: String,
}

/// How to reach a registry: the options `pull` and `push` share.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Speak plain HTTP to the registry (automatic for localhost, 127.0.0.0/8 and ::1).
    #[arg(long)]
    pub plain_http: bool,
    /// Registry credentials as USER:PASSWORD, or USER with the password read from stdin
    /// (default: the docker config file's of the user running berth, else none).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Directory of `<host>/hosts.toml` files naming mirrors, as containerd's `config_path`.
    #[arg(long, env = "BERTH_HOSTS_DIR", default_value = "/etc/berth/certs.d")]
    pub hosts_dir: std::path::PathBuf,
}

impl RegistryArgs {
    /// Who gives the credentials: `--user` (reading the password from stdin if needed), else
    /// the docker config file of the user running berth (`$DOCKER_CONFIG`, `~/.docker`).
    pub fn credentials(&self) -> Result<Option<Arc<dyn CredentialProvider>>> {
        Ok(match self.user.as_deref() {
            Some(user) => Some(Arc::new(StaticCredentials(credentials(user)?))),
            None => {
                DockerConfig::of_this_user().map(|c| Arc::new(c) as Arc<dyn CredentialProvider>)
            }
        })
    }
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    s.parse().map_err(|e: berth_core::Error| e.to_string())
}

/// What `berth pull --format json` prints.
#[derive(Debug, Serialize)]
struct PullJson {
    name: String,
    digest: String,
    media_type: String,
    downloaded: usize,
    existed: usize,
    bytes: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    unpacked: Option<UnpackedJson>,
}

#[derive(Debug, Serialize)]
struct UnpackedJson {
    platform: String,
    snapshotter: String,
    layers: usize,
    applied: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain_id: Option<String>,
}

/// Pull `a.reference` into the namespace of `ctx` (berth-ops' pull over berthd's stores).
pub async fn run(ctx: &Ctx, a: PullArgs) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let opts = berth_ops::PullOptions {
        platform: a.platform.clone(),
        all_platforms: a.all_platforms,
        snapshotter: (!a.no_unpack).then(|| a.snapshotter.clone()),
        credentials: a.registry.credentials()?,
        hosts_dir: Some(a.registry.hosts_dir.clone()),
        plain_http: a.registry.plain_http,
        ..berth_ops::PullOptions::default()
    };
    let stores = RemoteStores::new(ctx.channel().await?);
    let progress = Bars::new();
    let pulled = berth_ops::pull(&stores, ns, &a.reference, opts, &progress).await;
    progress.clear();
    let pulled = pulled?;
    let out = PullJson {
        name: pulled.name,
        digest: pulled.fetched.target.digest.to_string(),
        media_type: pulled.fetched.target.media_type.clone(),
        downloaded: pulled.fetched.downloaded,
        existed: pulled.fetched.existed,
        bytes: pulled.fetched.bytes,
        unpacked: pulled.unpacked.map(|u| UnpackedJson {
            platform: u.platform.to_string(),
            snapshotter: u.snapshotter,
            layers: u.unpacked.layers.len(),
            applied: u.unpacked.applied(),
            chain_id: u.unpacked.chain_id.map(|c| c.to_string()),
        }),
    };
    match ctx.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&out)?),
        Format::Table => print!("{}", pull_text(&out)),
    }
    Ok(())
}

fn pull_text(p: &PullJson) -> String {
    let mut s = format!(
        "{}: pulled {} ({} blobs downloaded, {}; {} already present)\n",
        p.name,
        p.digest,
        p.downloaded,
        human_bytes(p.bytes),
        p.existed
    );
    if let Some(u) = &p.unpacked {
        s.push_str(&format!(
            "unpacked {} into {}: {} of {} layers applied{}\n",
            u.platform,
            u.snapshotter,
            u.applied,
            u.layers,
            u.chain_id
                .as_ref()
                .map(|c| format!(", top snapshot {c}"))
                .unwrap_or_default()
        ));
    }
    s
}

pub(crate) fn human_bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n} B"),
    }
}

/// `USER:PASSWORD`, or `USER` with the password on the first line of stdin.
pub(crate) fn credentials(user: &str) -> Result<Credentials> {
    let (username, password) = match user.split_once(':') {
        Some((u, p)) => (u.to_string(), p.to_string()),
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("read the registry password from stdin")?;
            (
                user.to_string(),
                line.trim_end_matches(['\r', '\n']).to_string(),
            )
        }
    };
    anyhow::ensure!(!username.is_empty(), "--user: empty user name");
    Ok(Credentials { username, password })
}

/// Progress of a pull on stderr: a bar per blob on a terminal, a line per finished blob
/// otherwise.
struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Bars {
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }

    fn bar(&self, desc: &Descriptor) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let mut bars = self.bars.lock().expect("progress lock poisoned");
        let bar = bars.entry(desc.digest.clone()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(desc.size.max(0) as u64));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} {bytes:>10}/{total_bytes:<10} [{wide_bar}] {bytes_per_sec:>12} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(short(&desc.digest));
            bar
        });
        Some(bar.clone())
    }
}

/// The first 12 hex digits of a digest, as Docker shows layers.
fn short(d: &Digest) -> String {
    let s = d.to_string();
    let hex = s.split_once(':').map_or(s.as_str(), |(_, h)| h);
    hex.chars().take(12).collect()
}

impl PullProgress for Bars {
    fn resolved(&self, name: &str, target: &Descriptor) {
        let line = format!("{name}: resolved to {}", target.digest);
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn started(&self, desc: &Descriptor, offset: i64) {
        if let Some(bar) = self.bar(desc) {
            bar.set_position(offset.max(0) as u64);
            if offset > 0 {
                bar.set_message("resuming");
            }
        }
    }

    fn advanced(&self, desc: &Descriptor, done: i64) {
        if let Some(bar) = self.bar(desc) {
            bar.set_position(done.max(0) as u64);
        }
    }

    fn finished(&self, desc: &Descriptor, how: Fetched) {
        let word = match how {
            Fetched::Downloaded => "done",
            Fetched::Exists => "exists",
        };
        match self.bar(desc) {
            Some(bar) => {
                bar.set_position(desc.size.max(0) as u64);
                bar.finish_with_message(word);
            }
            None => eprintln!("{}: {word} ({})", desc.digest, human_bytes(desc.size)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_split_at_the_first_colon() {
        let c = credentials("alice:pa:ss").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "pa:ss")
        );
        assert!(credentials(":x").is_err());
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2_500), "2.5 kB");
        assert_eq!(human_bytes(316_000_000), "316.0 MB");
        assert_eq!(human_bytes(-1), "0 B");
    }
}
