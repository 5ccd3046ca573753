//! `berth logs`: what a container wrote to stdout and stderr.
//!
//! A detached container's task writes both streams into one file, named to the shim as a
//! `file://` stdio URI (containerd's runc shim and berth's append to it); a foreground `run`
//! copies its output there too. The file is the container's `log` in its directory
//! (`<state>/containers/<namespace>/<id>/log`, see [`crate::container`]), which the CLI, not
//! the daemon, owns: it goes away with `berth rm`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_core::tasks::Status as TaskStatus;

use crate::container::{find, log_path, task_of, Clients};
use crate::Ctx;

/// How often `logs -f` looks for more output.
const POLL: Duration = Duration::from_millis(100);
/// How often `logs -f` asks whether the container still runs.
const CHECK: Duration = Duration::from_millis(500);

fn copy_new(file: &mut Option<std::fs::File>, path: &std::path::Path, pos: &mut u64) -> Result<()> {
    if file.is_none() {
        match std::fs::File::open(path) {
            Ok(f) => *file = Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
        }
    }
    let f = file.as_mut().expect("opened above");
    f.seek(SeekFrom::Start(*pos))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    if !buf.is_empty() {
        *pos += buf.len() as u64;
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)?;
        out.flush()?;
    }
    Ok(())
}

/// Print the log of container `id`; with `follow`, keep printing until its task ends.
pub async fn run(ctx: &Ctx, id: &str, follow: bool) -> Result<()> {
    let c = Clients::new(ctx).await?;
    let ns = ctx.namespace.as_str();
    let container = find(&c, ns, id).await?;
    let path = log_path(ctx, &container).with_context(|| {
        format!(
            "container {} has no log (not made by berth run)",
            container.id
        )
    })?;
    let mut file = None;
    let mut pos = 0u64;
    copy_new(&mut file, &path, &mut pos)?;
    if !follow {
        return Ok(());
    }
    let mut last_check = Instant::now() - CHECK;
    loop {
        if last_check.elapsed() >= CHECK {
            last_check = Instant::now();
            let running = task_of(&c, ns, &container.id)
                .await?
                .is_some_and(|t| t.status != TaskStatus::Stopped);
            if !running {
                // What was written before the exit.
                copy_new(&mut file, &path, &mut pos)?;
                return Ok(());
            }
        }
        tokio::time::sleep(POLL).await;
        copy_new(&mut file, &path, &mut pos)?;
    }
}
