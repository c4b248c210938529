//! `alexnet neighbors`: for each query image, the images of a folder whose last-hidden-layer
//! activations are nearest (Euclidean), as a grid like the paper's Figure 4 and/or JSON.

use crate::common::{BadImages, Common, decode_folder, decode_images};
use alexnet::Checkpoint;
use alexnet::data::augment::Normalizer;
use alexnet::features::{last_hidden_features, nearest};
use anyhow::{Result, bail};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    weights: PathBuf,
    /// The images to search: a folder ROOT/<class>/<image>.
    #[arg(long)]
    data: PathBuf,
    /// Query images (one found in DIR is left out of its own neighbours).
    #[arg(long, required = true, num_args = 1..)]
    query: Vec<PathBuf>,
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
    neighbors: Vec<Neighbor>,
}

#[derive(serde::Serialize)]
struct Found {
    queries: Vec<Query>,
    grid: Option<String>,
}

pub fn exec(a: Args) -> Result<i32> {
    if a.k == 0 {
        bail!("--k must be at least 1");
    }
    let ck = Checkpoint::load(&a.weights)?;
    let stored = ck.config.data.stored;
    let found = a.common.pool()?.install(|| -> Result<Found> {
        let data = decode_folder(&a.data, stored, &a.decoding)?;
        if a.k > data.images.len() {
            bail!("--k {} but {} holds {} images", a.k, a.data.display(), data.images.len());
        }
        // Queries are never skipped: each must give its row.
        let strict = BadImages { skip_bad: false, ..a.decoding };
        let items: Vec<(PathBuf, u32)> = a.query.iter().map(|p| (p.clone(), 0)).collect();
        let mut queries = Vec::new();
        decode_images(&items, stored, &strict, &mut |_, _, img| queries.push(img))?;
        let mut net = ck.network()?;
        let norm = Normalizer::new(&ck.config.data, &ck.stats);
        let refs: Vec<&[u8]> = data.images.iter().map(Vec::as_slice).collect();
        let (features, d) = last_hidden_features(&mut net, &norm, &refs, a.batch);
        let qrefs: Vec<&[u8]> = queries.iter().map(Vec::as_slice).collect();
        let (qf, _) = last_hidden_features(&mut net, &norm, &qrefs, a.batch);
        let mut rows = Vec::new();
        let mut out = Vec::new();
        for (q, (path, img)) in qf.chunks(d.max(1)).zip(a.query.iter().zip(&queries)) {
            // A query that is itself in DIR is not its own neighbour.
            let me = std::fs::canonicalize(path).ok();
            let near: Vec<(usize, f64)> = nearest(&features, d, q, a.k + 1)
                .into_iter()
                .filter(|&(i, _)| me.is_none() || std::fs::canonicalize(&data.files[i]).ok() != me)
                .take(a.k)
                .collect();
            rows.push(std::iter::once(img.as_slice()).chain(near.iter().map(|&(i, _)| refs[i])).collect::<Vec<_>>());
            let neighbors = near
                .iter()
                .map(|&(i, distance)| Neighbor {
                    file: data.files[i].display().to_string(),
                    class: data.classes[data.labels[i] as usize].id.clone(),
                    distance,
                })
                .collect();
            out.push(Query { image: path.display().to_string(), neighbors });
        }
        if let Some(p) = &a.out {
            alexnet::files::check_writable(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            alexnet::plot::image_rows(&rows, stored, a.cell, p)?;
        }
        Ok(Found { queries: out, grid: a.out.as_ref().map(|p| p.display().to_string()) })
    })?;
    a.common.emit(&found, |f| {
        for q in &f.queries {
            println!("{}", q.image);
            for n in &q.neighbors {
                println!("  {:10.3}  {} ({})", n.distance, n.file, n.class);
            }
        }
        if let Some(g) = &f.grid {
            println!("wrote {g}");
        }
    })
}
