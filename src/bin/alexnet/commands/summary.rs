//! `alexnet summary`: the layer table of a model.

use crate::common::{Common, model_name};
use alexnet::model::{ModelConfig, plan};
use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "paper", value_parser = model_name)]
    model: String,
    #[command(flatten)]
    common: Common,
}

pub fn exec(a: Args) -> Result<i32> {
    let s = plan(&ModelConfig::variant(&a.model)?)?;
    a.common.emit(&s, |s| print!("{}", s.table()))
}
