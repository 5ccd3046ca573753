//! `berth content`: list, read, ingest, label and remove blobs; list active ingests.

use std::collections::BTreeMap;
use std::io::{IsTerminal, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use berth_client::RemoteContentStore;
use berth_core::content::{ContentStore, ContentWriter, Info, WriterOptions};
use berth_core::{Digest, ErrorKind};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use crate::output::{self, Table};
use crate::{Ctx, Format};

/// Bytes read from the input, and sent in one Write message, at a time.
const CHUNK: usize = 1 << 20;

/// The content subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List blobs, optionally filtered (e.g. `digest==sha256:…`, `labels.a==b`, `size==3`).
    #[command(alias = "list")]
    Ls {
        /// Print only the digests.
        #[arg(short, long)]
        quiet: bool,
        /// Filters; a blob matching any of them is listed.
        filters: Vec<String>,
    },
    /// Write a blob's bytes to stdout.
    Get {
        /// Digest of the blob.
        digest: String,
    },
    /// Write a blob from a file or stdin under an ingest ref, resuming an interrupted ingest.
    Ingest(IngestArgs),
    /// Remove blobs from the namespace.
    #[command(alias = "remove", alias = "delete", alias = "del")]
    Rm {
        /// Digests of the blobs.
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Set labels on a blob (key= removes the label) and print the resulting labels.
    Label {
        /// Digest of the blob.
        digest: String,
        /// Labels to set, as key=value; an empty value removes the label.
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// List the ingests in progress, optionally filtered (e.g. `ref==x`).
    Active {
        /// Filters; an ingest matching any of them is listed.
        filters: Vec<String>,
    },
}

/// Arguments of `berth content ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Ingest reference: the name under which a partial write is kept and resumed.
    reference: String,
    /// Size the blob must have.
    #[arg(long, value_name = "N")]
    expected_size: Option<i64>,
    /// Digest the blob must have.
    #[arg(long, value_name = "DIGEST")]
    expected_digest: Option<String>,
    /// Label to set on the blob at commit, as key=value (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Lease that holds the ingest and the blob.
    #[arg(long)]
    lease: Option<String>,
    /// File to read (stdin when absent or `-`).
    file: Option<PathBuf>,
}

/// Run a content subcommand.
pub async fn run(ctx: &Ctx, command: Command) -> Result<()> {
    let store = RemoteContentStore::new(ctx.channel().await?);
    let ns = ctx.namespace.as_str();
    match command {
        Command::Ls { quiet, filters } => list(ctx, &store, quiet, &filters).await,
        Command::Get { digest } => get(&store, ns, &digest).await,
        Command::Ingest(args) => ingest(&store, ns, args).await,
        Command::Rm { digests } => {
            crate::for_each_reporting(&digests, |d| {
                let store = store.clone();
                async move {
                    let d = Digest::parse(&d)?;
                    Ok(store.delete(ns, &d).await?)
                }
            })
            .await
        }
        Command::Label { digest, labels } => {
            let digest = Digest::parse(&digest)?;
            let (labels, paths) = crate::label_update(&labels)?;
            let info = Info {
                digest,
                size: 0,
                created_at: SystemTime::UNIX_EPOCH,
                updated_at: SystemTime::UNIX_EPOCH,
                labels,
            };
            let updated = store.update(ns, info, &paths).await?;
            if updated.labels.is_empty() {
                return Ok(());
            }
            output::print_lines([output::labels_string(&updated.labels)])
        }
        Command::Active { filters } => active(ctx, &store, &filters).await,
    }
}

#[derive(Debug, Serialize)]
struct InfoJson {
    digest: String,
    size: i64,
    created_at: String,
    updated_at: String,
    labels: BTreeMap<String, String>,
}

async fn list(
    ctx: &Ctx,
    store: &RemoteContentStore,
    quiet: bool,
    filters: &[String],
) -> Result<()> {
    let infos = store.list(&ctx.namespace, filters).await?;
    if quiet {
        return output::print_lines(infos.iter().map(|i| i.digest.to_string()));
    }
    match ctx.format {
        Format::Table => {
            let mut t = Table::new(&["DIGEST", "SIZE", "AGE", "LABELS"]);
            for i in &infos {
                let labels = output::labels_string(&i.labels);
                t.row(vec![
                    i.digest.to_string(),
                    output::human_size(i.size),
                    output::age(i.created_at),
                    if labels.is_empty() {
                        "-".into()
                    } else {
                        labels
                    },
                ]);
            }
            t.print()
        }
        Format::Json => {
            let items: Vec<InfoJson> = infos
                .into_iter()
                .map(|i| InfoJson {
                    digest: i.digest.to_string(),
                    size: i.size,
                    created_at: output::time_precise(i.created_at),
                    updated_at: output::time_precise(i.updated_at),
                    labels: i.labels,
                })
                .collect();
            output::print_json(&items)
        }
    }
}

#[derive(Debug, Serialize)]
struct StatusJson {
    #[serde(rename = "ref")]
    reference: String,
    offset: i64,
    total: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<String>,
    started_at: String,
    updated_at: String,
}

async fn active(ctx: &Ctx, store: &RemoteContentStore, filters: &[String]) -> Result<()> {
    let mut statuses = store.list_statuses(&ctx.namespace, filters).await?;
    statuses.sort_by(|a, b| a.reference.cmp(&b.reference));
    match ctx.format {
        Format::Table => {
            let mut t = Table::new(&["REF", "SIZE", "TOTAL", "AGE"]);
            for s in &statuses {
                t.row(vec![
                    s.reference.clone(),
                    output::human_size(s.offset),
                    if s.total > 0 {
                        output::human_size(s.total)
                    } else {
                        "-".into()
                    },
                    output::age(s.started_at),
                ]);
            }
            t.print()
        }
        Format::Json => {
            let items: Vec<StatusJson> = statuses
                .into_iter()
                .map(|s| StatusJson {
                    reference: s.reference,
                    offset: s.offset,
                    total: s.total,
                    expected: s.expected.map(|d| d.to_string()),
                    started_at: output::time_precise(s.started_at),
                    updated_at: output::time_precise(s.updated_at),
                })
                .collect();
            output::print_json(&items)
        }
    }
}

async fn get(store: &RemoteContentStore, ns: &str, digest: &str) -> Result<()> {
    let digest = Digest::parse(digest)?;
    let info = store.info(ns, &digest).await?;
    let mut out = std::io::stdout();
    let mut offset = 0i64;
    while offset < info.size {
        let chunk = store.read_at(ns, &digest, offset, CHUNK).await?;
        if chunk.is_empty() {
            bail!(
                "content {digest}: short read at offset {offset} of {}",
                info.size
            );
        }
        out.write_all(&chunk)?;
        offset += chunk.len() as i64;
    }
    out.flush()?;
    Ok(())
}

/// Where ingested bytes come from.
enum Input {
    /// A regular file: it can be sought, so an interrupted ingest resumes where it stopped.
    Seekable { file: tokio::fs::File, len: u64 },
    /// A pipe or a terminal: an interrupted ingest starts over.
    Stream(Box<dyn AsyncRead + Unpin + Send>),
}

impl Input {
    /// Open `path`, or stdin when it is absent or `-` (stdin redirected from a regular file can
    /// be sought as well).
    fn open(path: Option<&Path>) -> Result<Input> {
        let file = match path {
            Some(p) if p != Path::new("-") => std::fs::File::open(p)
                .map_err(|e| anyhow::anyhow!("open {}: {}", p.display(), lower(&e)))?,
            _ => std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map(std::fs::File::from)
                .map_err(|e| anyhow::anyhow!("open stdin: {}", lower(&e)))?,
        };
        let meta = file.metadata()?;
        let file = tokio::fs::File::from_std(file);
        if meta.is_file() {
            Ok(Input::Seekable {
                file,
                len: meta.len(),
            })
        } else {
            Ok(Input::Stream(Box::new(file)))
        }
    }

    fn len(&self) -> Option<u64> {
        match self {
            Input::Seekable { len, .. } => Some(*len),
            Input::Stream(_) => None,
        }
    }

    /// Position the input at `offset` if it can be sought and is long enough; false otherwise.
    async fn resume_at(&mut self, offset: u64) -> Result<bool> {
        match self {
            Input::Seekable { file, len } if *len >= offset => {
                file.seek(SeekFrom::Start(offset)).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn into_reader(self) -> Box<dyn AsyncRead + Unpin + Send> {
        match self {
            Input::Seekable { file, .. } => Box::new(file),
            Input::Stream(r) => r,
        }
    }
}

/// An error's message with its first letter lowercased (OS messages start with a capital).
fn lower(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => s,
    }
}

/// Read until `buf` is full or the input ends; the number of bytes read.
async fn fill(reader: &mut (dyn AsyncRead + Unpin + Send), buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = reader
            .read(&mut buf[n..])
            .await
            .map_err(|e| anyhow::anyhow!("read input: {}", lower(&e)))?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
fn progress_bar(total: Option<u64>, position: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{spinner} {bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_position(position);
    bar
}

async fn ingest(store: &RemoteContentStore, ns: &str, args: IngestArgs) -> Result<()> {
    let expected = args
        .expected_digest
        .as_deref()
        .map(Digest::parse)
        .transpose()?;
    let size = args.expected_size.unwrap_or(0);
    if size < 0 {
        bail!("expected size {size} must not be negative");
    }
    let labels = crate::parse_labels(&args.labels)?;
    let mut input = Input::open(args.file.as_deref())?;

    let options = WriterOptions {
        reference: args.reference.clone(),
        size,
        digest: expected.clone(),
        lease: args.lease.clone(),
    };
    let mut writer = match store.writer(ns, options).await {
        Ok(w) => w,
        // As containerd's content.WriteBlob: content that is already there is a success.
        Err(e) if e.is(ErrorKind::AlreadyExists) && expected.is_some() => {
            return output::print_lines(expected.map(|d| d.to_string()));
        }
        Err(e) => return Err(e.into()),
    };

    // Resume an interrupted ingest where it stopped, as ctr's content.Copy does; an input that
    // cannot be sought there starts the ingest over.
    let mut offset = writer.status().await?.offset;
    if offset > 0 && !input.resume_at(offset as u64).await? {
        writer.truncate(0).await?;
        offset = 0;
    }

    let total = if size > 0 {
        Some(size as u64)
    } else {
        input.len()
    };
    let bar = progress_bar(total, offset as u64);
    let mut reader = input.into_reader();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = fill(reader.as_mut(), &mut buf).await?;
        if n == 0 {
            break;
        }
        writer
            .write(&buf[..n])
            .await
            .with_context(|| format!("write to ref {}", args.reference))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();

    let written = writer.digest();
    match writer.commit(size, expected.clone(), labels).await {
        Ok(d) => output::print_lines([d.to_string()]),
        Err(e) if e.is(ErrorKind::AlreadyExists) => {
            output::print_lines([expected.unwrap_or(written).to_string()])
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("commit ref {}", args.reference))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fill_reads_until_full_or_eof() {
        let data: Vec<u8> = (0..10u8).collect();
        let mut r: Box<dyn AsyncRead + Unpin + Send> = Box::new(std::io::Cursor::new(data));
        let mut buf = [0u8; 4];
        assert_eq!(fill(r.as_mut(), &mut buf).await.unwrap(), 4);
        assert_eq!(buf, [0, 1, 2, 3]);
        assert_eq!(fill(r.as_mut(), &mut buf).await.unwrap(), 4);
        assert_eq!(fill(r.as_mut(), &mut buf).await.unwrap(), 2);
        assert_eq!(fill(r.as_mut(), &mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn regular_files_resume_and_others_do_not() {
        let dir = std::env::temp_dir().join(format!("berth-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("blob");
        std::fs::write(&path, b"0123456789").unwrap();

        let mut input = Input::open(Some(&path)).unwrap();
        assert_eq!(input.len(), Some(10));
        assert!(input.resume_at(4).await.unwrap());
        let mut rest = Vec::new();
        input.into_reader().read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"456789");

        let mut input = Input::open(Some(&path)).unwrap();
        assert!(!input.resume_at(11).await.unwrap(), "beyond the end");

        let mut stream = Input::Stream(Box::new(std::io::Cursor::new(b"abc".to_vec())));
        assert!(!stream.resume_at(1).await.unwrap());
        assert_eq!(stream.len(), None);

        let e = match Input::open(Some(&dir.join("absent"))) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("opened an absent file"),
        };
        assert!(e.contains("absent: no such file or directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
