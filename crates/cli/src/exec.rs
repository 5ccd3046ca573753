//! `berth exec`: run another process in a running container, with its exit code.
//!
//! The process is the container's own (user, capabilities, environment from its spec) with
//! other arguments; it runs as an **exec** of the container's task, named by an exec id, with
//! stdio through FIFOs (or a terminal) as for a foreground `run`.

use berth_core::tasks::Tasks;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_core::containers::Any;
use clap::Args;

use crate::container::{find, log_path, Clients};
use crate::stdio::{follow_terminal_size, forward_signals, Copies, Fifos, RawTerminal};
use crate::Ctx;

/// `berth exec` arguments.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open and pass it to the process.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the process a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Do not wait: the process's output goes to the container's log.
    #[arg(short, long)]
    pub detach: bool,
    /// Set environment variables (KEY=value).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory in the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// The container.
    pub id: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Run `exec`; exits with the process's exit code.
pub async fn run(ctx: &Ctx, a: ExecArgs) -> Result<()> {
    if a.detach && (a.tty || a.interactive) {
        bail!("-d cannot be combined with -i or -t");
    }
    let c = Clients::new(ctx).await?;
    let ns = ctx.namespace.as_str();
    let container = find(&c, ns, &a.id).await?;
    let spec = container
        .spec
        .as_ref()
        .with_context(|| format!("container {} has no spec", container.id))?;
    let spec = berth_oci::spec_from_json(&spec.value)?;
    let env = crate::run::resolve_env(&a.env, &[])?;
    let process =
        berth_oci::exec_process(&spec, a.command.clone(), a.tty, &env, a.workdir.as_deref())?;
    let process = Any {
        type_url: berth_oci::PROCESS_TYPE_URL.to_string(),
        value: berth_oci::process_to_json(&process),
    };
    let exec_id = format!("exec-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let id = container.id.clone();

    if a.detach {
        let mut io = berth_core::tasks::Stdio::default();
        if let Some(log) = log_path(ctx, &container) {
            io.stdout = format!("file://{}", log.display());
            io.stderr = io.stdout.clone();
        }
        c.tasks.exec(ns, &id, &exec_id, &io, process).await?;
        c.tasks.start(ns, &id, &exec_id).await?;
        return crate::output::print_lines([&exec_id]);
    }

    let fifos = Fifos::new(
        &ctx.state_dir().join("fifo"),
        &exec_id,
        a.interactive,
        a.tty,
    )?;
    let mut copies = Copies::start(&fifos, None);
    c.tasks
        .exec(ns, &id, &exec_id, &fifos.io(a.tty), process)
        .await?;
    let raw = if a.tty { RawTerminal::enable() } else { None };
    if let Err(e) = c.tasks.start(ns, &id, &exec_id).await {
        drop(raw);
        let _ = c.tasks.delete_process(ns, &id, &exec_id).await;
        return Err(e.into());
    }
    let (ns_s, id_s) = (ns.to_string(), id.clone());
    let helper = if a.tty {
        follow_terminal_size(c.tasks.clone(), ns_s.clone(), id_s.clone(), exec_id.clone()).await
    } else {
        forward_signals(c.tasks.clone(), ns_s.clone(), id_s.clone(), exec_id.clone())
    };
    let closer = copies.stdin_done.take().map(|done| {
        let (tasks, exec_id) = (c.tasks.clone(), exec_id.clone());
        tokio::spawn(async move {
            if done.await.is_ok() {
                let _ = tasks.close_stdin(&ns_s, &id_s, &exec_id).await;
            }
        })
    });
    let waited = c.tasks.wait(ns, &id, &exec_id).await;
    helper.abort();
    if let Some(h) = closer {
        h.abort();
    }
    tokio::task::spawn_blocking(move || copies.wait_outputs(Duration::from_secs(5))).await?;
    drop(raw);
    drop(fifos);
    let exit = c.tasks.delete_process(ns, &id, &exec_id).await;
    let code = match (waited, exit) {
        (_, Ok(e)) => e.code,
        (Ok(w), Err(_)) => w.code,
        (Err(e), Err(_)) => return Err(e.into()),
    };
    crate::exit_with(code)
}
