//! Model files: a [`ModelConfig`] written as TOML, or as JSON (a bare config, or a run's
//! `config.json`, whose `model` it takes). What `--model FILE` reads and `alexnet summary --model
//! NAME --emit toml` writes; README, *Model files*, walks through the paper's net as one.
//!
//! A model file is untrusted input as a checkpoint is: its size is checked before it is read,
//! unknown fields are errors (a misspelt `stirde` must not silently become the default stride),
//! and the network it describes is planned, every shape and size checked against
//! [`super::plan::limits`], before anything is allocated.

use super::config::{ConfigError, ModelConfig, VARIANTS};
use std::path::Path;

/// Model files larger than this are refused unread (the paper's net is ~2 kB of TOML).
pub const MAX_MODEL_FILE: u64 = 1 << 20;

/// Which syntax a model file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    Toml,
    Json,
}

impl ModelFormat {
    /// By extension (`.json`, else TOML), or for no extension by the first character.
    fn of(path: &Path, text: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => ModelFormat::Json,
            Some(_) => ModelFormat::Toml,
            None if text.trim_start().starts_with('{') => ModelFormat::Json,
            None => ModelFormat::Toml,
        }
    }
}

impl ModelConfig {
    /// Parses a model file's text (not yet checked: see [`ModelConfig::load`]).
    pub fn parse(text: &str, format: ModelFormat) -> Result<Self, String> {
        let (cfg, input): (Self, serde_json::Value) = match format {
            ModelFormat::Toml => {
                // Parsed twice (a file is at most 1 MiB): from the text, errors point at the line
                // and column; the generic value is what the unread-key check walks.
                let cfg = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
                let input: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
                (cfg, serde_json::to_value(input).map_err(|e| e.to_string())?)
            }
            ModelFormat::Json => {
                let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
                // A run's config.json holds the model under `model`, beside the recipe.
                let v = match v.get("model") {
                    Some(m) if v.get("layers").is_none() => m.clone(),
                    _ => v,
                };
                (serde_json::from_value(v.clone()).map_err(|e| e.to_string())?, v)
            }
        };
        // serde's deny_unknown_fields misses keys beside a field-less variant's tag
        // (`type = "relu"` with `kernel = 3`, `init = { type = "he", std = 0.1 }`): a key of the
        // file that the parsed config does not hold was not read, and is an error like any other.
        let parsed = serde_json::to_value(&cfg).map_err(|e| e.to_string())?;
        match unread_key(&input, &parsed, "") {
            Some(key) => Err(unknown_field_message(&key)),
            None => Ok(cfg),
        }
    }

    /// The config as a model file, in TOML.
    pub fn to_toml(&self) -> String {
        // A ModelConfig is plain data (strings, numbers, arrays, tables): it always serialises.
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot write this model as TOML: {e}\n"))
    }

    /// Reads, parses and checks the model file `path`: every error names the file, and a shape
    /// or size problem names the layer and the field too.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file_error = |problem: String| ConfigError::File { path: path.into(), problem };
        let len = std::fs::metadata(path).map_err(|e| file_error(e.to_string()))?.len();
        if len > MAX_MODEL_FILE {
            return Err(file_error(format!(
                "{len} bytes is too large for a model file (at most {MAX_MODEL_FILE}); is it a checkpoint?"
            )));
        }
        // Regular files only: a FIFO or /proc file given as a model would block or never end.
        let bytes = crate::files::read_regular(path, MAX_MODEL_FILE).map_err(|e| file_error(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| file_error("not UTF-8 text: is it a checkpoint?".into()))?;
        let mut cfg = Self::parse(&text, ModelFormat::of(path, &text)).map_err(file_error)?;
        if cfg.name.is_empty() {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let plain = |c: char| if c.is_ascii_alphanumeric() || "_-+".contains(c) { c } else { '-' };
            cfg.name = stem.chars().map(plain).take(128).collect();
        }
        super::plan(&cfg).map_err(|e| file_error(e.to_string()))?;
        Ok(cfg)
    }

    /// `--model`'s value: a built-in variant's name, or the path of a model file.
    pub fn named_or_file(name_or_path: &str) -> Result<Self, ConfigError> {
        if VARIANTS.contains(&name_or_path) {
            return Self::variant(name_or_path);
        }
        let path = Path::new(name_or_path);
        if path.exists() {
            return Self::load(path);
        }
        Err(ConfigError::UnknownModel(name_or_path.into()))
    }
}

/// The first key of `input` that `parsed` (the config read from it, serialised back) does not
/// hold, as a path: `layers[3].kernel`, `init.std`. Keys only `parsed` has are defaults.
fn unread_key(input: &serde_json::Value, parsed: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value::{Array, Object};
    match (input, parsed) {
        (Object(input), Object(parsed)) => input.iter().find_map(|(key, value)| {
            let here = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
            match parsed.get(key) {
                None => Some(here),
                Some(read) => unread_key(value, read, &here),
            }
        }),
        (Array(input), Array(parsed)) => input
            .iter()
            .zip(parsed)
            .enumerate()
            .find_map(|(n, (value, read))| unread_key(value, read, &format!("{at}[{n}]"))),
        _ => None,
    }
}

/// `layers[3].kernel` -> "layer 4: unknown field `kernel` (this type of layer has no such field)".
fn unknown_field_message(key: &str) -> String {
    let layer = key
        .strip_prefix("layers[")
        .and_then(|rest| rest.split_once("]."))
        .and_then(|(n, field)| Some((n.parse::<usize>().ok()?, field)));
    match layer {
        Some((n, field)) => format!("layer {}: unknown field `{field}` (this type of layer has no such field)", n + 1),
        None => format!("unknown field `{key}` (nothing of that name is read there)"),
    }
}
