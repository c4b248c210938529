//! `alexnet neighbors`: for each query image, the images whose last-hidden-layer activations
//! are nearest (Euclidean), as a grid like the paper's Figure 4 and/or JSON. Either the queries
//! and the folder to search are named (`--query`, `--data`), or `--held-out RUN_DIR` takes the
//! queries from the images that training run held out and searches its training images, as the
//! paper's figure does (test images, and the training images nearest to them).

use crate::common::{BadImages, Common, HeldOut, decode_folder, decode_images, open_held_out};
use alexnet::Checkpoint;
use alexnet::data::augment::Normalizer;
use alexnet::data::source::packed_files;
use alexnet::data::{ClassInfo, PackedImages};
use alexnet::features::{last_hidden_features, nearest};
use anyhow::{Result, bail};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    weights: PathBuf,
    /// The images to search: a folder ROOT/<class>/<image>.
    #[arg(long, required_unless_present = "held_out", conflicts_with = "held_out", requires = "query")]
    data: Option<PathBuf>,
    /// Query images (one found in DIR is left out of its own neighbours).
    #[arg(long, num_args = 1.., conflicts_with = "held_out")]
    query: Vec<PathBuf>,
    /// Queries from the images the training run in this folder held out, neighbours from its
    /// training images (the paper's Figure 4).
    #[arg(long, value_name = "RUN_DIR")]
    held_out: Option<PathBuf>,
    /// With --held-out: how many held-out images to ask about, spread evenly over them.
    #[arg(long, default_value_t = 5, requires = "held_out")]
    queries: usize,
    /// Neighbours per query.
    #[arg(long, default_value_t = 6)]
    k: usize,
    /// The grid: a row per query, the query first, then its neighbours, nearest first.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Pixels per image in the grid.
    #[arg(long, default_value_t = 96)]
    cell: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[command(flatten)]
    decoding: BadImages,
    #[command(flatten)]
    common: Common,
}

#[derive(serde::Serialize)]
struct Neighbor {
    file: String,
    class: String,
    distance: f64,
}

#[derive(serde::Serialize)]
struct Query {
    image: String,
    class: String,
    neighbors: Vec<Neighbor>,
}

#[derive(serde::Serialize)]
struct Found {
    queries: Vec<Query>,
    grid: Option<String>,
}

/// Stored-size images with, for each, its name (a file, or `#i of SOURCE` when the packed
/// images cannot name their files), its class id, and its file when known.
#[derive(Default)]
struct Images<'a> {
    pixels: Vec<Cow<'a, [u8]>>,
    names: Vec<String>,
    classes: Vec<String>,
    files: Vec<Option<PathBuf>>,
}

impl<'a> Images<'a> {
    fn push(&mut self, pixels: Cow<'a, [u8]>, file: Option<PathBuf>, name: String, class: String) {
        self.pixels.push(pixels);
        self.names.push(name);
        self.classes.push(class);
        self.files.push(file);
    }

    /// Images `indices` of a packed set that was packed from `root`.
    fn packed(set: &'a PackedImages, indices: &[u32], root: &Path, class_names: Option<&Path>) -> Result<Self> {
        let files = packed_files(root, class_names, set);
        let mut out = Images::default();
        for &i in indices {
            let i = i as usize;
            let file = files.as_ref().map(|f| f[i].clone());
            let name = file.as_ref().map_or_else(|| format!("#{i} of {}", root.display()), |f| f.display().to_string());
            out.push(set.image(i)?, file, name, set.classes[set.labels[i] as usize].id.clone());
        }
        Ok(out)
    }

    /// The pixels of every image, borrowed.
    fn views(&self) -> Vec<&[u8]> {
        self.pixels.iter().map(|p| &p[..]).collect()
    }
}

/// `count` of `n` positions spread evenly, the first at 0.
fn spread(n: usize, count: usize) -> Vec<usize> {
    (0..count.min(n)).map(|j| j * n / count.min(n)).collect()
}

pub fn exec(a: Args) -> Result<i32> {
    if a.k == 0 {
        bail!("--k must be at least 1");
    }
    let ck = Checkpoint::load(&a.weights)?;
    let stored = ck.config.data.stored;
    let found = a.common.pool()?.install(|| -> Result<Found> {
        match &a.held_out {
            Some(run) => {
                if a.queries == 0 {
                    bail!("--queries must be at least 1");
                }
                let HeldOut { cfg, train, train_indices, val: v } = open_held_out(run, stored, None, a.common.json)?;
                let names = cfg.class_names.as_deref();
                let search = Images::packed(&train, &train_indices, &cfg.data, names)?;
                let picked: Vec<u32> = spread(v.indices.len(), a.queries).into_iter().map(|j| v.indices[j]).collect();
                let queries = Images::packed(&v.images, &picked, cfg.val.as_deref().unwrap_or(&cfg.data), names)?;
                answer(&a, &ck, &search, &queries)
            }
            None => {
                let Some(dir) = &a.data else { bail!("give --data and --query, or --held-out") };
                let data = decode_folder(dir, stored, &a.decoding)?;
                let mut search = Images::default();
                for ((img, file), &label) in data.images.iter().zip(&data.files).zip(&data.labels) {
                    let class = data.classes[label as usize].id.clone();
                    search.push(Cow::Borrowed(img), Some(file.clone()), file.display().to_string(), class);
                }
                // Queries are never skipped: each must give its row.
                let strict = BadImages { skip_bad: false, ..a.decoding };
                let items: Vec<(PathBuf, u32)> = a.query.iter().map(|p| (p.clone(), 0)).collect();
                let mut decoded = Vec::new();
                decode_images(&items, stored, &strict, &mut |_, _, img| decoded.push(img))?;
                let mut queries = Images::default();
                for (img, path) in decoded.iter().zip(&a.query) {
                    queries.push(
                        Cow::Borrowed(img),
                        Some(path.clone()),
                        path.display().to_string(),
                        class_of(path, &data.classes),
                    );
                }
                answer(&a, &ck, &search, &queries)
            }
        }
    })?;
    a.common.emit(&found, |f| {
        for q in &f.queries {
            println!("{} ({})", q.image, q.class);
            for n in &q.neighbors {
                println!("  {:10.3}  {} ({})", n.distance, n.file, n.class);
            }
        }
        if let Some(g) = &f.grid {
            println!("wrote {g}");
        }
    })
}

/// A query's class: its parent folder's name when that is one of the searched classes.
fn class_of(path: &Path, classes: &[ClassInfo]) -> String {
    let parent = path.parent().and_then(|p| p.file_name()).map(alexnet::data::folder::class_id);
    parent.filter(|p| classes.iter().any(|c| &c.id == p)).unwrap_or_default()
}

/// The `k` nearest of `search` to each of `queries`, and the grid when asked for.
fn answer(a: &Args, ck: &Checkpoint, search: &Images, queries: &Images) -> Result<Found> {
    if a.k > search.pixels.len() {
        bail!("--k {} but the images searched are only {}", a.k, search.pixels.len());
    }
    let mut net = ck.network()?;
    let norm = Normalizer::new(&ck.config.data, &ck.stats);
    let (search_pixels, query_pixels) = (search.views(), queries.views());
    let (features, d) = last_hidden_features(&mut net, &norm, &search_pixels, a.batch);
    let (qf, _) = last_hidden_features(&mut net, &norm, &query_pixels, a.batch);
    let canonical = |f: &Option<PathBuf>| f.as_ref().and_then(|f| std::fs::canonicalize(f).ok());
    let (mut rows, mut out) = (Vec::new(), Vec::new());
    for (qi, q) in qf.chunks(d.max(1)).enumerate() {
        // A query that is itself among the images searched is not its own neighbour.
        let me = canonical(&queries.files[qi]);
        let near: Vec<(usize, f64)> = nearest(&features, d, q, a.k + 1)
            .into_iter()
            .filter(|&(i, _)| me.is_none() || canonical(&search.files[i]) != me)
            .take(a.k)
            .collect();
        rows.push(std::iter::once(query_pixels[qi]).chain(near.iter().map(|&(i, _)| search_pixels[i])).collect());
        let neighbors = near
            .iter()
            .map(|&(i, distance)| Neighbor {
                file: search.names[i].clone(),
                class: search.classes[i].clone(),
                distance,
            })
            .collect();
        out.push(Query { image: queries.names[qi].clone(), class: queries.classes[qi].clone(), neighbors });
    }
    if let Some(p) = &a.out {
        alexnet::files::check_writable(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        alexnet::plot::image_rows(&rows, ck.config.data.stored, a.cell, p)?;
    }
    Ok(Found { queries: out, grid: a.out.as_ref().map(|p| p.display().to_string()) })
}
