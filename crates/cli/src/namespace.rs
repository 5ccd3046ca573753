//! `berth namespace`: list, create, label and remove namespaces.

use std::collections::BTreeMap;

use anyhow::Result;
use berth_client::RemoteNamespaces;
use clap::Subcommand;
use serde::Serialize;

use crate::output::{self, Table};
use crate::{Ctx, Format};

/// The namespace subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List namespaces.
    #[command(alias = "list")]
    Ls {
        /// Print only the names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create a namespace, with optional labels.
    Create {
        /// Name of the namespace.
        name: String,
        /// Labels to set, as key=value.
        labels: Vec<String>,
    },
    /// Remove empty namespaces.
    #[command(alias = "remove", alias = "delete", alias = "del")]
    Rm {
        /// Names of the namespaces.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Set labels on a namespace (key= removes the label).
    Label {
        /// Name of the namespace.
        name: String,
        /// Labels to set, as key=value; an empty value removes the label.
        #[arg(required = true)]
        labels: Vec<String>,
    },
}

#[derive(Debug, Serialize)]
struct NamespaceJson {
    name: String,
    labels: BTreeMap<String, String>,
}

/// Run a namespace subcommand.
pub async fn run(ctx: &Ctx, command: Command) -> Result<()> {
    let namespaces = RemoteNamespaces::new(ctx.channel().await?);
    match command {
        Command::Ls { quiet } => {
            let list = namespaces.list().await?;
            if quiet {
                return output::print_lines(list.iter().map(|(name, _)| name));
            }
            match ctx.format {
                Format::Table => {
                    let mut t = Table::new(&["NAME", "LABELS"]);
                    for (name, labels) in &list {
                        t.row(vec![name.clone(), output::labels_string(labels)]);
                    }
                    t.print()
                }
                Format::Json => {
                    let items: Vec<NamespaceJson> = list
                        .into_iter()
                        .map(|(name, labels)| NamespaceJson { name, labels })
                        .collect();
                    output::print_json(&items)
                }
            }
        }
        Command::Create { name, labels } => {
            let labels = crate::parse_labels(&labels)?;
            namespaces.create(&name, labels).await?;
            Ok(())
        }
        Command::Rm { names } => {
            crate::for_each_reporting(&names, |name| {
                let namespaces = namespaces.clone();
                async move { Ok(namespaces.delete(&name).await?) }
            })
            .await
        }
        Command::Label { name, labels } => {
            let (labels, paths) = crate::label_update(&labels)?;
            namespaces.update(&name, labels, &paths).await?;
            Ok(())
        }
    }
}
