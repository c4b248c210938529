//! `alexnet summary`: the layer table of a model, or the model as a file to start a variant from.

use crate::common::{Common, model_name};
use alexnet::model::{ModelConfig, plan};
use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// A built-in variant or a model file (.toml, or .json as in a run's config.json).
    #[arg(long, default_value = "paper", value_parser = model_name)]
    model: String,
    /// Write the model as a file on stdout instead of the table (`--emit toml > my.toml`, then
    /// edit it and pass `--model my.toml`).
    #[arg(long, value_enum)]
    emit: Option<Emit>,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Emit {
    Toml,
    Json,
}

pub fn exec(a: Args) -> Result<i32> {
    let cfg = ModelConfig::named_or_file(&a.model)?;
    let s = plan(&cfg)?;
    match a.emit {
        Some(Emit::Toml) => print!("{}", cfg.to_toml()),
        Some(Emit::Json) => println!("{}", serde_json::to_string_pretty(&cfg)?),
        None => return a.common.emit(&s, |s| print!("{}", s.table())),
    }
    Ok(0)
}
