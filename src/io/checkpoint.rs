//! Checkpoints as safetensors: everything needed to use a model (weights, configuration, class
//! names, input statistics) and, for training checkpoints, to continue exactly where it stopped
//! (optimizer velocities, schedule, data position; all randomness is a function of the seed and
//! the position, so no RNG state beyond that is needed).
//!
//! Tensors: `param.<name>` (PyTorch layout), `velocity.<name>`, `data.mean_image [S, S, 3]`.
//! Metadata (JSON strings): `format`, `config` (ModelConfig), `classes`, `stats`, and for training
//! checkpoints `sgd` and `train_state`.

use crate::data::{ClassInfo, DataStats};
use crate::model::{ModelConfig, Network};
use crate::optim::{Sgd, SgdConfig};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const FORMAT: &str = "alexnet-checkpoint-1";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {problem}")]
    Bad { path: String, problem: String },
}

fn bad(path: &Path, problem: impl Into<String>) -> CheckpointError {
    CheckpointError::Bad { path: path.display().to_string(), problem: problem.into() }
}

/// Where a training run stands; enough to resume it exactly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch in progress (0-based) and the next batch of it to run.
    pub epoch: usize,
    pub batch_in_epoch: usize,
    /// Optimizer steps taken so far.
    pub step: u64,
    pub lr: f32,
    pub best_val_top1: Option<f64>,
    pub best_epoch: Option<usize>,
    pub epochs_without_improvement: usize,
    pub lr_drops: usize,
    /// Running sums of the epoch in progress (for its metrics line).
    pub epoch_loss_sum: f64,
    pub epoch_correct: u64,
    pub epoch_images: u64,
    pub epoch_seconds: f64,
    /// Wall time of the whole run so far.
    pub elapsed_seconds: f64,
}

/// A model with what it needs to be used, and optionally its training state.
pub struct Checkpoint {
    pub config: ModelConfig,
    pub classes: Vec<ClassInfo>,
    pub stats: DataStats,
    /// `(name, shape, values)` in the network's parameter order.
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub velocity: Option<Vec<Vec<f32>>>,
    pub sgd: Option<SgdConfig>,
    pub train_state: Option<TrainState>,
}

impl std::fmt::Debug for Checkpoint {
    /// A summary: the tensors themselves would flood any message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("model", &self.config.name)
            .field("params", &self.params.iter().map(|p| p.2.len()).sum::<usize>())
            .field("classes", &self.classes.len())
            .field("training", &self.train_state.is_some())
            .finish()
    }
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
}

impl Checkpoint {
    /// A snapshot of `net` (and of `opt` with `state`, for training checkpoints).
    pub fn capture(
        net: &Network,
        classes: &[ClassInfo],
        stats: &DataStats,
        opt: Option<&Sgd>,
        state: Option<&TrainState>,
    ) -> Self {
        Self {
            config: net.config.clone(),
            classes: classes.to_vec(),
            stats: stats.clone(),
            params: net.params.iter().map(|p| (p.name.clone(), p.shape.clone(), p.data.clone())).collect(),
            velocity: opt.map(|o| o.velocity.clone()),
            sgd: opt.map(|o| o.config),
            train_state: state.cloned(),
        }
    }

    /// Writes atomically: a temporary file in the same folder, synced, then renamed over `path`,
    /// so a crash mid-write leaves the previous checkpoint intact.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let io = |e: std::io::Error| CheckpointError::Io { path: path.display().to_string(), source: e };
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, shape, data) in &self.params {
            owned.push((format!("param.{name}"), shape.clone(), to_bytes(data)));
        }
        if let Some(vel) = &self.velocity {
            for ((name, shape, _), v) in self.params.iter().zip(vel) {
                owned.push((format!("velocity.{name}"), shape.clone(), to_bytes(v)));
            }
        }
        if !self.stats.mean_image.is_empty() {
            let s = self.stats.size;
            owned.push(("data.mean_image".into(), vec![s, s, 3], to_bytes(&self.stats.mean_image)));
        }
        let views: Vec<(String, TensorView<'_>)> = owned
            .iter()
            .map(|(n, shape, b)| Ok((n.clone(), TensorView::new(Dtype::F32, shape.clone(), b)?)))
            .collect::<Result<_, safetensors::SafeTensorError>>()
            .map_err(|e| bad(path, e.to_string()))?;
        let json = |v: &dyn erased::Json| v.to_json().map_err(|e| bad(path, e.to_string()));
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("config".to_string(), json(&self.config)?);
        meta.insert("classes".to_string(), json(&self.classes)?);
        meta.insert("stats".to_string(), json(&self.stats)?);
        if let Some(s) = &self.sgd {
            meta.insert("sgd".to_string(), json(s)?);
        }
        if let Some(t) = &self.train_state {
            meta.insert("train_state".to_string(), json(t)?);
        }
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| bad(path, e.to_string()))?;
        let tmp = path.with_extension("safetensors.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes =
            std::fs::read(path).map_err(|e| CheckpointError::Io { path: path.display().to_string(), source: e })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
        let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(
                path,
                "not an alexnet checkpoint (no `format` metadata); torchvision weights go through `alexnet import`",
            ));
        }
        let field = |k: &str| meta.get(k).ok_or_else(|| bad(path, format!("metadata `{k}` missing")));
        let parse_err = |k: &str, e: serde_json::Error| bad(path, format!("metadata `{k}`: {e}"));
        let config: ModelConfig = serde_json::from_str(field("config")?).map_err(|e| parse_err("config", e))?;
        let classes: Vec<ClassInfo> = serde_json::from_str(field("classes")?).map_err(|e| parse_err("classes", e))?;
        let mut stats: DataStats = serde_json::from_str(field("stats")?).map_err(|e| parse_err("stats", e))?;
        let sgd = meta.get("sgd").map(|s| serde_json::from_str(s).map_err(|e| parse_err("sgd", e))).transpose()?;
        let train_state = meta
            .get("train_state")
            .map(|s| serde_json::from_str(s).map_err(|e| parse_err("train_state", e)))
            .transpose()?;
        if let Ok(t) = st.tensor("data.mean_image") {
            stats.mean_image = from_bytes(t.data());
        }
        // Parameter order and shapes come from the config; the file must hold exactly those.
        let net = Network::new(config.clone(), 0).map_err(|e| bad(path, e.to_string()))?;
        let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>, CheckpointError> {
            let t = st.tensor(name).map_err(|_| bad(path, format!("tensor `{name}` missing")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(path, format!("tensor `{name}` is {:?}, expected F32", t.dtype())));
            }
            if t.shape() != shape {
                return Err(bad(path, format!("tensor `{name}` has shape {:?}, the model needs {shape:?}", t.shape())));
            }
            Ok(from_bytes(t.data()))
        };
        let mut params = Vec::new();
        let mut velocity = Vec::new();
        let has_velocity = st.names().iter().any(|n| n.starts_with("velocity."));
        for p in &net.params {
            params.push((p.name.clone(), p.shape.clone(), tensor(&format!("param.{}", p.name), &p.shape)?));
            if has_velocity {
                velocity.push(tensor(&format!("velocity.{}", p.name), &p.shape)?);
            }
        }
        if classes.len() != net.classes() {
            return Err(bad(path, format!("{} class names for a {}-way classifier", classes.len(), net.classes())));
        }
        Ok(Self { config, classes, stats, params, velocity: has_velocity.then_some(velocity), sgd, train_state })
    }

    /// A network holding these weights.
    pub fn network(&self) -> Network {
        let mut net = Network::new(self.config.clone(), 0).expect("config validated on load");
        for (p, (_, _, data)) in net.params.iter_mut().zip(&self.params) {
            p.data.clone_from(data);
        }
        net
    }
}

/// Writes plain named f32 tensors (with optional metadata) as safetensors.
pub fn write_plain(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    meta: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.iter().map(|(n, s, d)| (n.clone(), s.clone(), to_bytes(d))).collect();
    let views = owned
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| bad(path, e.to_string()))?;
    let meta = (!meta.is_empty()).then_some(meta);
    safetensors::serialize_to_file(views, meta, path).map_err(|e| bad(path, e.to_string()))
}

/// Reads one f32 tensor from a safetensors file.
pub fn read_plain(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f32>), CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::Io { path: path.display().to_string(), source: e })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
    let t = st.tensor(name).map_err(|_| bad(path, format!("no tensor `{name}`")))?;
    if t.dtype() != Dtype::F32 {
        return Err(bad(path, format!("`{name}` is {:?}, expected F32", t.dtype())));
    }
    Ok((t.shape().to_vec(), from_bytes(t.data())))
}

/// Object-safe JSON serialisation for the metadata fields.
mod erased {
    pub trait Json {
        fn to_json(&self) -> serde_json::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Result<String> {
            serde_json::to_string(self)
        }
    }
}
