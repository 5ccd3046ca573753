//! `berth`: the command-line client of berthd, in the manner of `ctr` and `nerdctl`.
//!
//! It talks containerd's v1 gRPC API over a unix socket, so it also works against containerd.

mod container;
mod content;
mod events;
mod exec;
mod image;
mod image_archive;
mod image_mount;
mod inspect;
mod lease;
mod logs;
mod namespace;
mod output;
mod pull;
mod push;
mod run;
mod snapshot;
mod stats;
mod stdio;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use tonic::transport::Channel;

/// Command-line client for berthd, the containerd-compatible daemon.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
struct Cli {
    /// Address of the daemon's socket (no short form: `-a` is `ps -a`'s).
    #[arg(
        long,
        global = true,
        env = "BERTH_ADDRESS",
        default_value = "/run/berth/berthd.sock"
    )]
    address: PathBuf,
    /// Namespace to work in.
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "BERTH_NAMESPACE",
        default_value = "default"
    )]
    namespace: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Where the CLI keeps containers' files (their /etc files and logs, under
    /// `containers/<namespace>/<id>/`) and stdio FIFOs; default: the directory of the socket.
    #[arg(long, global = true, env = "BERTH_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// How listings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with a header.
    Table,
    /// One JSON array of objects.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the client and server versions.
    Version,
    /// Manage namespaces.
    #[command(alias = "ns", alias = "namespaces")]
    Namespace {
        #[command(subcommand)]
        command: namespace::Command,
    },
    /// Manage content: blobs and ingests.
    Content {
        #[command(subcommand)]
        command: content::Command,
    },
    /// Manage leases.
    #[command(alias = "leases")]
    Lease {
        #[command(subcommand)]
        command: lease::Command,
    },
    /// Pull an image from its registry and unpack it.
    Pull(pull::PullArgs),
    /// Push an image to a registry.
    Push(push::PushArgs),
    /// Give an image another name.
    Tag(push::TagArgs),
    /// Manage images: list, inspect, remove, unpack, mount, import, export.
    #[command(alias = "images", alias = "i")]
    Image(SnapshotterArgs<image::Command>),
    /// Manage snapshots of a snapshotter.
    #[command(alias = "snapshots", alias = "snap")]
    Snapshot(SnapshotterArgs<snapshot::Command>),
    /// Run a command in a new container (the image is unpacked first if needed).
    Run(Box<run::RunArgs>),
    /// Run a command in a running container.
    Exec(exec::ExecArgs),
    /// Print what a container wrote to stdout and stderr.
    Logs {
        /// Keep printing output as it comes, until the container stops.
        #[arg(short, long)]
        follow: bool,
        id: String,
    },
    /// Show containers' resource usage (CPU time, memory, pids, OOM kills).
    Stats {
        /// Containers (default: all with a task).
        ids: Vec<String>,
    },
    /// Print events as they happen (all namespaces), optionally filtered (e.g.
    /// `namespace==default`, `topic~=/tasks/`).
    Events { filters: Vec<String> },
    #[command(flatten)]
    Container(container::Command),
}

/// A command group that works on one snapshotter.
#[derive(Debug, Args)]
struct SnapshotterArgs<C: Subcommand> {
    /// Snapshotter to use.
    #[arg(
        long,
        global = true,
        env = "BERTH_SNAPSHOTTER",
        default_value = "overlayfs"
    )]
    snapshotter: String,
    #[command(subcommand)]
    command: C,
}

/// What every command needs: where the daemon is, the namespace, the output format.
#[derive(Debug)]
pub struct Ctx {
    address: PathBuf,
    /// The namespace from `--namespace`.
    pub namespace: String,
    /// The output format from `--format`.
    pub format: Format,
    state_dir: Option<PathBuf>,
}

impl Ctx {
    /// Connect to the daemon.
    pub async fn channel(&self) -> Result<Channel> {
        Ok(berth_client::connect(&self.address).await?)
    }

    /// The daemon's socket.
    pub fn address(&self) -> &std::path::Path {
        &self.address
    }

    /// Where the CLI keeps containers' files: `--state-dir`, else the socket's directory
    /// (`/run/berth` for the default socket), made absolute.
    pub fn state_dir(&self) -> PathBuf {
        let dir = self.state_dir.clone().unwrap_or_else(|| {
            self.address
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        });
        std::path::absolute(&dir).unwrap_or(dir)
    }
}

/// The command ran to its end and `berth` exits with this code: a container's or an exec's exit
/// code, already reported where it needed reporting.
#[derive(Debug)]
pub struct ExitWith(pub u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

/// Exit with a process's exit `code` (0 to 255, as a shell sees it): `Ok` for 0.
pub fn exit_with(code: u32) -> Result<()> {
    match (code % 256) as u8 {
        0 => Ok(()),
        c => Err(ExitWith(c).into()),
    }
}

/// An error already reported on stderr: the process exits 1 without printing more.
#[derive(Debug)]
pub struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("errors were reported")
    }
}

impl std::error::Error for AlreadyReported {}

/// Print an error the way berth prints every error.
pub fn report(e: &anyhow::Error) {
    eprintln!("berth: {e:#}");
}

/// Run `op` on each of `items`, printing each item that succeeded on stdout and each failure on
/// stderr; fails (already reported) when any did.
pub async fn for_each_reporting<F, Fut>(items: &[String], mut op: F) -> Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for item in items {
        match op(item.clone()).await {
            Ok(()) => output::print_lines([item])?,
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// Parse `key=value` arguments into labels; `key` alone (or `key=`) gives an empty value.
pub fn parse_labels(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for arg in args {
        let (k, v) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
        if k.is_empty() {
            bail!("invalid label {arg:?}: empty key");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

/// The field paths and labels of a label update: `labels.<key>` for each argument, with the keys
/// whose value is empty left out of the labels (so the server removes them).
pub fn label_update(args: &[String]) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    let parsed = parse_labels(args)?;
    let paths = parsed.keys().map(|k| format!("labels.{k}")).collect();
    let labels = parsed.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    Ok((labels, paths))
}

#[derive(Debug, Serialize)]
struct VersionJson {
    client: ClientVersion,
    server: ServerVersionJson,
}

#[derive(Debug, Serialize)]
struct ClientVersion {
    version: &'static str,
}

#[derive(Debug, Serialize)]
struct ServerVersionJson {
    version: String,
    revision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<String>,
}

async fn version(ctx: &Ctx) -> Result<()> {
    let client = env!("CARGO_PKG_VERSION");
    if ctx.format == Format::Table {
        output::print_raw(&format!("Client:\n  Version:  {client}\n\n"))?;
    }
    let channel = ctx.channel().await?;
    let server = berth_client::server_version(channel.clone()).await?;
    // The UUID is a bonus: older servers (and containerd 1.x) may not answer.
    let uuid = berth_client::server_uuid(channel)
        .await
        .ok()
        .filter(|u| !u.is_empty());
    match ctx.format {
        Format::Table => {
            let mut text = format!(
                "Server:\n  Version:  {}\n  Revision: {}\n",
                server.version, server.revision
            );
            if let Some(uuid) = &uuid {
                text.push_str(&format!("  UUID:     {uuid}\n"));
            }
            output::print_raw(&text)
        }
        Format::Json => {
            let v = VersionJson {
                client: ClientVersion { version: client },
                server: ServerVersionJson {
                    version: server.version,
                    revision: server.revision,
                    uuid,
                },
            };
            output::print_raw(&format!("{}\n", serde_json::to_string_pretty(&v)?))
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx {
        address: cli.address,
        namespace: cli.namespace,
        format: cli.format,
        state_dir: cli.state_dir,
    };
    match cli.command {
        Command::Version => version(&ctx).await,
        Command::Namespace { command } => namespace::run(&ctx, command).await,
        Command::Content { command } => content::run(&ctx, command).await,
        Command::Lease { command } => lease::run(&ctx, command).await,
        Command::Pull(a) => pull::run(&ctx, a).await,
        Command::Push(a) => push::push(&ctx, a).await,
        Command::Tag(a) => push::tag(&ctx, a).await,
        Command::Image(a) => image::run(&ctx, &a.snapshotter, a.command).await,
        Command::Snapshot(a) => snapshot::run(&ctx, &a.snapshotter, a.command).await,
        // As Docker: 125 when run itself fails, 126 when exec does.
        Command::Run(a) => run::run(&ctx, *a).await.map_err(|e| failed_with(e, 125)),
        Command::Exec(a) => exec::run(&ctx, a).await.map_err(|e| failed_with(e, 126)),
        Command::Logs { follow, id } => logs::run(&ctx, &id, follow).await,
        Command::Stats { ids } => stats::run(&ctx, &ids).await,
        Command::Events { filters } => events::run(&ctx, &filters).await,
        Command::Container(c) => container::run(&ctx, c).await,
    }
}

/// Report `e` and turn it into an exit with `code`, unless it already is an exit. As Docker's,
/// a command that cannot be found exits 127 and one that cannot be run 126.
fn failed_with(e: anyhow::Error, code: u8) -> anyhow::Error {
    if e.is::<ExitWith>() || e.is::<AlreadyReported>() {
        return e;
    }
    report(&e);
    let msg = format!("{e:#}");
    let code = if !msg.contains("exec:") && !msg.contains("executable file") {
        code
    } else if msg.contains("no such file or directory") || msg.contains("not found in $PATH") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        code
    };
    ExitWith(code).into()
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    // Registry TLS (berth-distribution) is rustls with ring, chosen here once for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ExitWith(code)) = e.downcast_ref::<ExitWith>() {
                return ExitCode::from(*code);
            }
            if !e.is::<AlreadyReported>() && !is_broken_pipe(&e) {
                report(&e);
            }
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn labels_parse_with_empty_values() {
        let l = parse_labels(&args(&["a=1", "b=", "c", "d=x=y"])).unwrap();
        assert_eq!(l["a"], "1");
        assert_eq!(l["b"], "");
        assert_eq!(l["c"], "");
        assert_eq!(l["d"], "x=y");
        assert!(parse_labels(&args(&["=v"])).is_err());
    }

    #[test]
    fn label_update_removes_empty_values() {
        let (labels, paths) = label_update(&args(&["keep=1", "drop="])).unwrap();
        assert_eq!(paths, vec!["labels.drop", "labels.keep"]);
        assert_eq!(labels.len(), 1);
        assert_eq!(labels["keep"], "1");
    }

    #[test]
    fn globals_parse_anywhere() {
        let cli = Cli::try_parse_from([
            "berth",
            "content",
            "ls",
            "-n",
            "other",
            "--format",
            "json",
            "--address",
            "/tmp/x.sock",
        ])
        .unwrap();
        assert_eq!(cli.namespace, "other");
        assert_eq!(cli.format, Format::Json);
        assert_eq!(cli.address, PathBuf::from("/tmp/x.sock"));
    }

    #[test]
    fn snapshotter_defaults_and_is_accepted_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from(["berth", "snapshot", "ls"]).unwrap();
        let Command::Snapshot(a) = cli.command else {
            panic!("not a snapshot command")
        };
        if std::env::var_os("BERTH_SNAPSHOTTER").is_none() {
            assert_eq!(a.snapshotter, "overlayfs");
        }
        for args in [
            &["berth", "snapshot", "--snapshotter", "native", "ls"][..],
            &["berth", "snapshots", "ls", "--snapshotter", "native"][..],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Snapshot(a) = cli.command else {
                panic!("not a snapshot command")
            };
            assert_eq!(a.snapshotter, "native", "{args:?}");
        }
        use clap::CommandFactory;
        let cmd = Cli::command();
        let sub = cmd.find_subcommand("snapshot").unwrap();
        let arg = sub
            .get_arguments()
            .find(|a| a.get_id() == "snapshotter")
            .unwrap();
        assert_eq!(
            arg.get_env(),
            Some(std::ffi::OsStr::new("BERTH_SNAPSHOTTER"))
        );
    }

    #[test]
    fn snapshot_subcommands_parse() {
        let parse = |args: &[&str]| {
            let mut full = vec!["berth", "snapshot"];
            full.extend_from_slice(args);
            match Cli::try_parse_from(full).unwrap().command {
                Command::Snapshot(a) => a.command,
                other => panic!("{other:?}"),
            }
        };
        assert!(matches!(
            parse(&["prepare", "k", "p", "--target", "/mnt", "--label", "a=b"]),
            snapshot::Command::Prepare { key, parent: Some(p), target: Some(t), labels }
                if key == "k" && p == "p" && t == "/mnt" && labels == ["a=b"]
        ));
        assert!(matches!(
            parse(&["prepare", "k"]),
            snapshot::Command::Prepare { parent: None, .. }
        ));
        assert!(matches!(
            parse(&["view", "v", "p"]),
            snapshot::Command::View { key, parent, .. } if key == "v" && parent == "p"
        ));
        assert!(matches!(
            parse(&["commit", "name", "key"]),
            snapshot::Command::Commit { name, key, .. } if name == "name" && key == "key"
        ));
        assert!(matches!(
            parse(&["mounts", "/mnt", "k"]),
            snapshot::Command::Mounts { target, key } if target == "/mnt" && key == "k"
        ));
        assert!(matches!(
            parse(&["rm", "a", "b"]),
            snapshot::Command::Rm { keys } if keys == ["a", "b"]
        ));
        assert!(matches!(
            parse(&["usage"]),
            snapshot::Command::Usage {
                key: None,
                bytes: false
            }
        ));
        assert!(matches!(
            parse(&["usage", "-b", "k"]),
            snapshot::Command::Usage {
                key: Some(_),
                bytes: true
            }
        ));
        assert!(matches!(parse(&["tree"]), snapshot::Command::Tree));
        assert!(matches!(
            parse(&["info", "k"]),
            snapshot::Command::Info { .. }
        ));
        let missing = Cli::try_parse_from(["berth", "snapshot", "view", "v"]);
        assert!(missing.is_err(), "view needs a parent");
        assert!(Cli::try_parse_from(["berth", "snapshot", "rm"]).is_err());
    }

    #[test]
    fn image_subcommands_parse() {
        let parse = |args: &[&str]| {
            let mut full = vec!["berth", "image"];
            full.extend_from_slice(args);
            match Cli::try_parse_from(full).unwrap().command {
                Command::Image(a) => (a.snapshotter, a.command),
                other => panic!("{other:?}"),
            }
        };
        let (sn, cmd) = parse(&[
            "mount",
            "busybox",
            "/mnt",
            "--rw",
            "--snapshotter",
            "native",
        ]);
        assert_eq!(sn, "native");
        assert!(matches!(
            cmd,
            image::Command::Mount { name, target, rw: true, platform: None }
                if name == "busybox" && target == std::path::Path::new("/mnt")
        ));
        let (_, cmd) = parse(&["unpack", "busybox", "--platform", "linux/arm64/v8"]);
        assert!(matches!(
            cmd,
            image::Command::Unpack { platform: Some(p), .. } if p.to_string() == "linux/arm64"
        ));
        assert!(matches!(
            parse(&["rm", "--sync", "a", "b"]).1,
            image::Command::Rm { sync: true, names } if names == ["a", "b"]
        ));
        assert!(matches!(
            parse(&["unmount", "/mnt"]).1,
            image::Command::Unmount { .. }
        ));
        assert!(matches!(
            parse(&["inspect", "x"]).1,
            image::Command::Inspect { .. }
        ));
        assert!(matches!(
            parse(&["ls", "-q"]).1,
            image::Command::Ls { quiet: true, .. }
        ));
        assert!(
            Cli::try_parse_from(["berth", "images", "unpack", "x", "--platform", "a//b"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["berth", "i", "mount", "x"]).is_err(),
            "mount needs a target"
        );
    }

    #[test]
    fn run_takes_its_options_before_the_image_and_the_command_after() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Run(a) => a,
            other => panic!("{other:?}"),
        };
        let a = parse(&["berth", "run", "--rm", "busybox", "sh", "-c", "exit 7"]);
        assert!(a.rm && !a.detach);
        assert_eq!(a.image, "busybox");
        assert_eq!(a.command, ["sh", "-c", "exit 7"]);
        let a = parse(&[
            "berth",
            "run",
            "-it",
            "--name",
            "c1",
            "-e",
            "A=1",
            "-v",
            "/a:/b:ro",
            "-m",
            "20m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "10",
            "--read-only",
            "--net",
            "host",
            "--cap-add",
            "NET_ADMIN",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "--runtime",
            "io.containerd.berth.v2",
            "busybox",
            "id",
            "-u",
            "--rm",
        ]);
        assert!(a.interactive && a.tty && a.read_only && !a.rm);
        assert_eq!(a.name.as_deref(), Some("c1"));
        assert_eq!(a.memory, Some(20 << 20));
        assert_eq!(a.cpus, Some(0.5));
        assert_eq!(a.pids_limit, Some(10));
        assert_eq!(a.net, berth_oci::NetworkMode::Host);
        assert_eq!(a.runtime, "io.containerd.berth.v2");
        assert_eq!(
            a.command,
            ["id", "-u", "--rm"],
            "after the image, all is the command"
        );
        assert!(Cli::try_parse_from(["berth", "run", "--memory", "lots", "busybox"]).is_err());
        assert!(Cli::try_parse_from(["berth", "run", "--net", "bridge", "busybox"]).is_err());
        if std::env::var_os("BERTH_RUNTIME").is_none() {
            assert_eq!(
                parse(&["berth", "run", "x"]).runtime,
                "io.containerd.runc.v2"
            );
        }
    }

    #[test]
    fn container_commands_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().command;
        assert!(matches!(
            parse(&["berth", "ps", "-a", "-q"]),
            Command::Container(container::Command::Ps {
                all: true,
                quiet: true
            })
        ));
        assert!(matches!(
            parse(&["berth", "stop", "-t", "3", "a", "b"]),
            Command::Container(container::Command::Stop { time: 3, ids }) if ids.len() == 2
        ));
        assert!(matches!(
            parse(&["berth", "kill", "-s", "TERM", "a"]),
            Command::Container(container::Command::Kill { signal, .. }) if signal == "TERM"
        ));
        assert!(matches!(
            parse(&["berth", "rm", "-f", "a"]),
            Command::Container(container::Command::Rm { force: true, .. })
        ));
        match parse(&["berth", "exec", "-it", "c1", "sh", "-c", "exit 3"]) {
            Command::Exec(e) => {
                assert!(e.interactive && e.tty);
                assert_eq!(e.id, "c1");
                assert_eq!(e.command, ["sh", "-c", "exit 3"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["berth", "logs", "-f", "c1"]),
            Command::Logs { follow: true, .. }
        ));
        assert!(matches!(
            parse(&["berth", "events"]),
            Command::Events { .. }
        ));
        assert!(matches!(parse(&["berth", "stats"]), Command::Stats { .. }));
        for cmd in ["start", "pause", "unpause", "inspect", "top"] {
            assert!(
                Cli::try_parse_from(["berth", cmd]).is_err(),
                "{cmd} needs an id"
            );
        }
        assert!(Cli::try_parse_from(["berth", "exec", "c1"]).is_err());
    }

    #[test]
    fn runtime_failures_exit_like_docker() {
        let code = |msg: &str| {
            let e = failed_with(anyhow::anyhow!(msg.to_string()), 125);
            e.downcast_ref::<ExitWith>().unwrap().0
        };
        assert_eq!(code("image \"x\": not found"), 125);
        assert_eq!(
            code("runc create failed: exec: \"/no\": stat /no: no such file or directory"),
            127
        );
        assert_eq!(
            code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(code("exec: \"/etc\": permission denied"), 126);
    }

    #[test]
    fn exit_codes_wrap_like_a_shell() {
        assert!(exit_with(0).is_ok());
        assert!(exit_with(256).is_ok());
        let e = exit_with(137).unwrap_err();
        assert_eq!(e.downcast_ref::<ExitWith>().unwrap().0, 137);
    }

    #[test]
    fn state_dir_defaults_to_the_sockets_directory() {
        let ctx = Ctx {
            address: "/run/berth/berthd.sock".into(),
            namespace: "default".into(),
            format: Format::Table,
            state_dir: None,
        };
        assert_eq!(ctx.state_dir(), std::path::Path::new("/run/berth"));
    }

    #[test]
    fn namespace_alias_works() {
        let cli = Cli::try_parse_from(["berth", "ns", "ls"]).unwrap();
        assert!(matches!(cli.command, Command::Namespace { .. }));
    }
}
