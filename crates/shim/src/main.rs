//! `containerd-shim-berth-v2`: the runtime v2 shim binary (see the `berth_shim` crate docs).
//!
//! containerd resolves the runtime name `io.containerd.berth.v2` to this binary on its `PATH`.

use std::io::Write;

use berth_shim::args::Flags;
use berth_shim::contract;
use berth_shim::stdio::{exec_logger, EXEC_LOGGER};
use containerd_shim_protos::protobuf::Message;

const NAME: &str = "containerd-shim-berth-v2";

fn main() {
    if let Err(e) = run() {
        // containerd shows this (start reads stdout and stderr together).
        eprint!("{NAME}: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let flags = Flags::parse(std::env::args().skip(1))?;
    if flags.version {
        println!("{NAME}:\n  Version:  {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    match flags.action.as_deref() {
        Some("start") => {
            let address = contract::start(&flags)?;
            std::io::stdout().write_all(address.as_bytes())?;
        }
        Some("delete") => {
            let response = contract::delete(&flags)?;
            std::io::stdout().write_all(&response.write_to_bytes()?)?;
        }
        Some(EXEC_LOGGER) => {
            let (program, args) = flags
                .rest
                .split_first()
                .ok_or_else(|| anyhow::anyhow!("{EXEC_LOGGER}: no program"))?;
            return Err(exec_logger(program, args).into());
        }
        Some(other) => anyhow::bail!("unknown action {other:?}"),
        None => contract::serve(&flags)?,
    }
    Ok(())
}
