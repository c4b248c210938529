//! Checkpoints as safetensors: everything needed to use a model (weights, configuration, class
//! names, input statistics) and, for training checkpoints, to continue exactly where it stopped
//! (optimizer velocities, schedule, data position; all randomness is a function of the seed and
//! the position, so no RNG state beyond that is needed).
//!
//! Tensors: `param.<name>` (PyTorch layout), `velocity.<name>`, `data.mean_image [S, S, 3]`.
//! Metadata (JSON strings): `format`, `config` (ModelConfig), `classes`, `stats`, and for training
//! checkpoints `sgd` and `train_state`; `sha256` (each tensor's) and `sha256.metadata`.
//!
//! Loading trusts nothing in the file: checksums first, then the config is planned against the
//! size limits (no allocation), every tensor must have the shape the plan gives, and weights
//! that are not finite are refused, naming the tensor.

use crate::data::{ClassInfo, DataStats};
use crate::model::{ModelConfig, Network, plan};
use crate::optim::{Sgd, SgdConfig};
use crate::tensor::{NamedTensor, f32_from_le_bytes, f32_to_le_bytes};
use crate::train::TrainState;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Checkpoints with checksums (written now); version 1 (before them) is still read.
pub const FORMAT: &str = "alexnet-checkpoint-2";
const FORMAT_1: &str = "alexnet-checkpoint-1";
/// Metadata keys: a JSON map of tensor name -> sha256 of its bytes, and the sha256 of all the
/// other metadata (sorted `key=value` lines), which covers that map.
const CHECKSUMS: &str = "sha256";
const META_CHECKSUM: &str = "sha256.metadata";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {problem}", path.display())]
    Bad { path: PathBuf, problem: String },
    #[error("{}: no space left on the device; nothing was replaced (the partial file was removed)", path.display())]
    DiskFull { path: PathBuf },
    /// The file was changed after it was written (a flipped bit, an edit, a partial copy).
    #[error(
        "{}: {what} does not match its checksum: the file is damaged. (In a run folder, \
         last.prev.safetensors is the checkpoint before last.safetensors.)",
        path.display()
    )]
    Corrupt { path: PathBuf, what: String },
}

/// Whether a file's `format` metadata says it is one of our checkpoints (any version).
pub fn is_checkpoint_format(format: &str) -> bool {
    format == FORMAT || format == FORMAT_1
}

fn bad(path: &Path, problem: impl Into<String>) -> CheckpointError {
    CheckpointError::Bad { path: path.into(), problem: problem.into() }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CheckpointError + Copy + '_ {
    move |source| match crate::files::is_disk_full(&source) {
        true => CheckpointError::DiskFull { path: path.into() },
        false => CheckpointError::Io { path: path.into(), source },
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    use std::io::Write;
    let mut f = crate::files::create_fresh(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of every metadata entry but its own, as sorted `key=value` lines.
fn meta_checksum<'a>(meta: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut entries: Vec<(&String, &String)> = meta.into_iter().filter(|(k, _)| *k != META_CHECKSUM).collect();
    entries.sort();
    let mut text = String::new();
    for (k, v) in entries {
        text.push_str(k);
        text.push('=');
        text.push_str(v);
        text.push('\n');
    }
    sha256_hex(text.as_bytes())
}

/// Checks the metadata's checksum, then every tensor's, before anything is parsed.
fn verify_checksums(path: &Path, st: &SafeTensors<'_>, meta: &HashMap<String, String>) -> Result<(), CheckpointError> {
    let corrupt = |what: String| CheckpointError::Corrupt { path: path.into(), what };
    if meta.get(META_CHECKSUM) != Some(&meta_checksum(meta)) {
        return Err(corrupt("the metadata (configuration, classes, training position)".into()));
    }
    let sums: BTreeMap<String, String> = meta
        .get(CHECKSUMS)
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| corrupt("the checksum list".into()))?;
    if sums.len() != st.len() {
        return Err(corrupt(format!("the tensor list ({} tensors, {} checksums)", st.len(), sums.len())));
    }
    for (name, want) in &sums {
        let t = st.tensor(name).map_err(|_| corrupt(format!("the tensor list (`{name}` missing)")))?;
        if &sha256_hex(t.data()) != want {
            return Err(corrupt(format!("tensor `{name}`")));
        }
    }
    Ok(())
}

/// A model with what it needs to be used, and optionally its training state.
pub struct Checkpoint {
    pub config: ModelConfig,
    pub classes: Vec<ClassInfo>,
    pub stats: DataStats,
    /// The network's parameters, in its order.
    pub params: Vec<NamedTensor>,
    pub velocity: Option<Vec<Vec<f32>>>,
    pub sgd: Option<SgdConfig>,
    pub train_state: Option<TrainState>,
}

impl std::fmt::Debug for Checkpoint {
    /// A summary: the tensors themselves would flood any message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("model", &self.config.name)
            .field("params", &self.param_count())
            .field("classes", &self.classes.len())
            .field("training", &self.train_state.is_some())
            .finish()
    }
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
            params: net.params().map(|p| NamedTensor::new(&p.name, p.shape.clone(), p.data.clone())).collect(),
            velocity: opt.map(|o| o.velocity.clone()),
            sgd: opt.map(|o| o.config),
            train_state: state.cloned(),
        }
    }

    /// The file's bytes: tensors, metadata, and a sha256 of every tensor and of the metadata.
    fn serialize(&self, path: &Path) -> Result<Vec<u8>, CheckpointError> {
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for p in &self.params {
            owned.push((format!("param.{}", p.name), p.shape.clone(), f32_to_le_bytes(&p.data)));
        }
        if let Some(vel) = &self.velocity {
            for (p, v) in self.params.iter().zip(vel) {
                owned.push((format!("velocity.{}", p.name), p.shape.clone(), f32_to_le_bytes(v)));
            }
        }
        if !self.stats.mean_image.is_empty() {
            let s = self.stats.size;
            owned.push(("data.mean_image".into(), vec![s, s, 3], f32_to_le_bytes(&self.stats.mean_image)));
        }
        let json = |v: &dyn erased::Json| v.to_json().map_err(|e| bad(path, e.to_string()));
        let mut meta = BTreeMap::new();
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
        let sums: BTreeMap<&str, String> = owned.iter().map(|(n, _, b)| (n.as_str(), sha256_hex(b))).collect();
        meta.insert(CHECKSUMS.to_string(), json(&sums)?);
        meta.insert(META_CHECKSUM.to_string(), meta_checksum(&meta));
        let views: Vec<(String, TensorView<'_>)> = owned
            .iter()
            .map(|(n, shape, b)| Ok((n.clone(), TensorView::new(Dtype::F32, shape.clone(), b)?)))
            .collect::<Result<_, safetensors::SafeTensorError>>()
            .map_err(|e| bad(path, e.to_string()))?;
        safetensors::serialize(views, Some(meta.into_iter().collect())).map_err(|e| bad(path, e.to_string()))
    }

    /// Writes atomically: a temporary file in the same folder, synced, then renamed over `path`,
    /// so a crash mid-write leaves the previous checkpoint intact. A failed write removes the
    /// temporary file (a full disk says so).
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        crate::files::check_writable(path).map_err(io(path))?;
        let bytes = self.serialize(path)?;
        let tmp = path.with_extension("safetensors.tmp");
        write_synced(&tmp, &bytes).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        std::fs::rename(&tmp, path).map_err(io(path))
    }

    /// As [`Checkpoint::save`], keeping the file `path` held until now as `previous` (so a
    /// checkpoint damaged later still has one before it).
    pub fn save_keeping_previous(&self, path: &Path, previous: &Path) -> Result<(), CheckpointError> {
        if path.is_file() {
            let tmp = previous.with_extension("safetensors.tmp");
            // A hard link costs nothing; where links are not allowed, a copy.
            let _ = std::fs::remove_file(&tmp);
            let kept = std::fs::hard_link(path, &tmp)
                .or_else(|_| {
                    std::io::copy(&mut std::fs::File::open(path)?, &mut crate::files::create_fresh(&tmp)?).map(|_| ())
                })
                .and_then(|_| std::fs::rename(&tmp, previous));
            if let Err(e) = kept {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(previous)(e));
            }
        }
        self.save(path)
    }

    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = crate::files::read_regular(path, crate::files::MAX_WEIGHTS_BYTES).map_err(io(path))?;
        Self::from_bytes(&bytes, path)
    }

    /// [`Checkpoint::load`] of bytes in memory, named `path` in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, CheckpointError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| bad(path, e.to_string()))?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        match meta.get("format").map(String::as_str) {
            Some(FORMAT) => verify_checksums(path, &st, &meta)?,
            // Written before checksums existed; a version 1 file with checksums was edited.
            Some(FORMAT_1) if !meta.contains_key(CHECKSUMS) && !meta.contains_key(META_CHECKSUM) => {}
            _ => {
                return Err(bad(
                    path,
                    "not an alexnet checkpoint (no `format` metadata); torchvision weights go through `alexnet import`",
                ));
            }
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
        // Parameter order and shapes come from the config's plan (sizes checked against its
        // limits, nothing allocated); the file must hold exactly those.
        let summary = plan(&config).map_err(|e| bad(path, e.to_string()))?;
        let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>, CheckpointError> {
            let t = st.tensor(name).map_err(|_| bad(path, format!("tensor `{name}` missing")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(path, format!("tensor `{name}` is {:?}, expected F32", t.dtype())));
            }
            if t.shape() != shape {
                return Err(bad(path, format!("tensor `{name}` has shape {:?}, the model needs {shape:?}", t.shape())));
            }
            let v = f32_from_le_bytes(t.data());
            if let Some(what) = crate::tensor::first_non_finite(&v) {
                return Err(bad(path, format!("tensor `{name}` holds {what}: the weights are unusable")));
            }
            Ok(v)
        };
        if st.names().contains(&"data.mean_image") {
            stats.mean_image = tensor("data.mean_image", &[stats.size, stats.size, 3])?;
        }
        let mut params = Vec::new();
        let mut velocity = Vec::new();
        let has_velocity = st.names().iter().any(|n| n.starts_with("velocity."));
        for p in summary.param_specs() {
            params.push(NamedTensor::new(&p.name, p.shape.clone(), tensor(&format!("param.{}", p.name), &p.shape)?));
            if has_velocity {
                velocity.push(tensor(&format!("velocity.{}", p.name), &p.shape)?);
            }
        }
        if classes.len() != summary.classes() {
            return Err(bad(path, format!("{} class names for a {}-way classifier", classes.len(), summary.classes())));
        }
        Ok(Self { config, classes, stats, params, velocity: has_velocity.then_some(velocity), sgd, train_state })
    }

    /// Parameters in all.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.data.len()).sum()
    }

    /// A network holding these weights. Fails only for a checkpoint built by hand whose
    /// tensors do not fit its config ([`Checkpoint::load`] and the importers check that).
    pub fn network(&self) -> crate::Result<Network> {
        let mut net = Network::zeroed(self.config.clone())?;
        if net.params().count() != self.params.len() {
            return Err(crate::Error::Invalid(format!(
                "{} tensors for the {} parameters of {}",
                self.params.len(),
                net.params().count(),
                self.config.name
            )));
        }
        for (p, t) in net.params_mut().zip(&self.params) {
            if p.name != t.name || p.shape != t.shape {
                return Err(crate::Error::Invalid(format!(
                    "tensor `{}` {:?} where {} needs `{}` {:?}",
                    t.name, t.shape, self.config.name, p.name, p.shape
                )));
            }
            p.data.clone_from(&t.data);
        }
        Ok(net)
    }
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
