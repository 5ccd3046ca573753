//! berthd: the berth daemon. Serves containerd's v1 gRPC API on a unix socket.

mod config;
mod server;

use std::path::PathBuf;

use clap::Parser;

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
}

fn main() {
    if let Err(e) = run() {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
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
