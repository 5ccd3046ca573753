//! berthd: the berth daemon. Serves containerd's v1 gRPC API on a unix socket.

mod authority;
mod config;
mod metrics;
mod publish;
mod server;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// berth's container runtime daemon (containerd-compatible gRPC over a unix socket).
#[derive(Debug, Parser)]
#[command(name = "berthd", version = concat!(env!("CARGO_PKG_VERSION"), " ", env!("BERTH_REVISION")))]
pub struct Args {
    /// Path to the TOML configuration file.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Directory for persistent data (content, metadata).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Directory for runtime state (sockets, bundles); usually on tmpfs.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Unix socket the gRPC API listens on.
    #[arg(short, long)]
    pub address: Option<PathBuf>,
    /// Log filter (tracing's env-filter syntax, e.g. `debug`), overriding the config.
    #[arg(short, long)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish one event to the berthd at --address: the event (a protobuf `Any`) is read from
    /// stdin. Shims given `-publish-binary` call this, as containerd's `containerd publish`.
    Publish {
        /// The event's topic, e.g. `/tasks/exit`.
        #[arg(long)]
        topic: String,
        /// The namespace the event belongs to.
        #[arg(long)]
        namespace: String,
    },
}

fn main() {
    // Registry TLS (berth-distribution, for berthd's own pulls) is rustls with ring, chosen here
    // once for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Err(e) = run() {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Publish { topic, namespace }) = &args.command {
        let address = args
            .address
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_ADDRESS));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(publish::publish(&address, topic, namespace));
    }
    let explicit = args.config.is_some();
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    let cfg = config::Config::load(&path, explicit)?;
    server::init_logging(&args, &cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berthd")
        .build()?;
    rt.block_on(server::run(args, cfg))
}
