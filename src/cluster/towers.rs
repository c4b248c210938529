//! The paper's two-GPU scheme (section 3.2) with processes as its GPUs: `train --towers 2` on
//! two ranks. Each process holds one tower: its half of every layer's kernels and neurons
//! (rows `t·R/T ..` of each parameter of `R` rows), and, for a grouped convolution (`groups`
//! a multiple of the towers), its own groups, whose input is its own half of the channels.
//! The towers exchange activations where a layer needs all of its input: a full convolution
//! (conv3), the fully connected layers (and the dropout before them, so that both draw the
//! same mask over the whole vector) and the logits. Elsewhere each tower computes on its own
//! channels alone, but for LRN: in the single-process grouped model this equals (Caffe's and
//! PyTorch's) its window crosses the towers' boundary, so a tower borrows the few channels its
//! window reaches from its neighbours ([`HaloLrn`]; the paper's GPUs normalised apart).
//!
//! An activation is either split (each tower holds its channels of every image: `[B, C/T, H, W]`)
//! or full (every tower holds all of it, `[B, C, H, W]`, computed alike). Going from split to
//! full is an all-gather; going back is a slice. Backward, a gather's gradient arrives partial
//! (each tower's layers saw only their own outputs' share of it), so it is summed over the towers
//! before each takes its slice; the logits' gradient, computed alike on every tower from the same
//! loss, is only sliced.
//!
//! Every tower reads the whole batch. The result equals the grouped network in one process up
//! to the order of a few sums (tests/towers.rs checks logits, gradients and weights).

use super::Cluster;
use crate::Network;
use crate::error::{Error, Result};
use crate::kernels::conv::ConvChoice;
use crate::matmul::Precision;
use crate::model::net::score;
use crate::model::plan::{LayerInfo, LayerKind, ParamSpec};
use crate::model::{Layer, Mode, ModelConfig, Param, StepResult};
use crate::optim::Sgd;
use std::time::Instant;

/// Where an activation lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rep {
    /// Each tower holds its share of the channels (of the features, once flattened).
    Split,
    /// Every tower holds all of it.
    Full,
}

/// One step of a tower's forward pass.
#[derive(Debug)]
enum Op {
    /// A layer: the tower's share of it on split activations, or all of it on full ones.
    Layer(Box<Layer>),
    /// Split to full: each image's shares, `per_image` values each, concatenated in tower
    /// order. `partial`: the gradient that comes back is a sum over the towers' parts.
    Gather { per_image: usize, partial: bool },
    /// Full to split: this tower's share of each image's `per_image` values.
    Slice { per_image: usize },
    /// LRN on split channels: the neighbouring towers' channels its window reaches, borrowed.
    Lrn(Box<HaloLrn>),
}

/// LRN on a tower's channels. The window of a channel at the tower's edge reaches into the
/// neighbouring towers' channels (in the grouped network the normalisation runs across all of
/// them): forward, each tower borrows `before + after` channels from each neighbour (enough
/// for the borrowed channels' own `s`, which the backward pass needs) and normalises the
/// extended stack; backward, it borrows the neighbours' `∂L/∂y` of the channels its window
/// reaches. A few channels a side instead of the whole activation.
#[derive(Debug)]
struct HaloLrn {
    p: crate::kernels::lrn::LrnParams,
    /// This tower's channels, and their pixels.
    c: usize,
    plane: usize,
    /// Channels borrowed before and after this tower's (0 at the network's first and last).
    left: usize,
    right: usize,
    /// The extended stack's input, output, `s`, gradients: `[B, left + c + right, plane]`.
    x: Vec<f32>,
    y: Vec<f32>,
    scale: Vec<f32>,
    dy: Vec<f32>,
    dx: Vec<f32>,
    /// Seconds spent borrowing channels, since last taken.
    comm_seconds: f64,
}

impl HaloLrn {
    fn new(p: crate::kernels::lrn::LrnParams, c: usize, plane: usize, t: usize, towers: usize) -> Self {
        let (before, after) = p.reach();
        let halo = before + after;
        let left = if t > 0 { halo } else { 0 };
        let right = if t + 1 < towers { halo } else { 0 };
        let v = Vec::new;
        HaloLrn { p, c, plane, left, right, x: v(), y: v(), scale: v(), dy: v(), dx: v(), comm_seconds: 0.0 }
    }

    fn wide(&self) -> usize {
        (self.left + self.c + self.right) * self.plane
    }

    /// Every tower's first and last `h` channels of each image of `v [B, c, plane]`, gathered:
    /// `[towers, B, 2h, plane]`.
    fn edges(&mut self, cluster: &Cluster, v: &[f32], batch: usize, h: usize) -> Vec<f32> {
        let t0 = Instant::now();
        let (n, il) = (h * self.plane, self.c * self.plane);
        let mut mine = Vec::with_capacity(batch * 2 * n);
        for img in v.chunks_exact(il).take(batch) {
            mine.extend_from_slice(&img[..n]);
            mine.extend_from_slice(&img[il - n..]);
        }
        let mut all = vec![0.0; mine.len() * cluster.size()];
        cluster.all_gather_f32(&mine, &mut all);
        self.comm_seconds += t0.elapsed().as_secs_f64();
        all
    }

    /// `dst [B, left + c + right, plane]` from this tower's `v` and the neighbours' edges of it
    /// (`edges` of `h` channels a side): `l` channels from the left, `r` from the right, each
    /// next to this tower's, the rest 0.
    #[allow(clippy::too_many_arguments)]
    fn extend(
        &self,
        dst: &mut [f32],
        v: &[f32],
        all: &[f32],
        h: usize,
        (l, r): (usize, usize),
        t: usize,
        batch: usize,
    ) {
        let (p, il, wide) = (self.plane, self.c * self.plane, self.wide());
        let per_tower = batch * 2 * h * p;
        dst[..batch * wide].fill(0.0);
        for (b, (out, img)) in dst.chunks_exact_mut(wide).zip(v.chunks_exact(il)).take(batch).enumerate() {
            out[self.left * p..][..il].copy_from_slice(img);
            if l > 0 {
                // The left tower's last `l` channels.
                let e = &all[(t - 1) * per_tower + b * 2 * h * p..][..2 * h * p];
                out[(self.left - l) * p..self.left * p].copy_from_slice(&e[(2 * h - l) * p..]);
            }
            if r > 0 {
                let e = &all[(t + 1) * per_tower + b * 2 * h * p..][..2 * h * p];
                out[self.left * p + il..][..r * p].copy_from_slice(&e[..r * p]);
            }
        }
    }

    fn forward(&mut self, cluster: &Cluster, x: &[f32], y: &mut [f32], batch: usize) {
        let (t, wide, il) = (cluster.rank(), self.wide(), self.c * self.plane);
        let (before, after) = self.p.reach();
        let halo = before + after;
        for v in [&mut self.x, &mut self.y, &mut self.scale, &mut self.dy, &mut self.dx] {
            if v.len() < batch * wide {
                v.resize(batch * wide, 0.0);
            }
        }
        let all = self.edges(cluster, x, batch, halo);
        let mut ext = std::mem::take(&mut self.x);
        self.extend(&mut ext, x, &all, halo, (self.left, self.right), t, batch);
        let c = self.left + self.c + self.right;
        crate::kernels::lrn::forward(&self.p, &ext, &mut self.y, &mut self.scale, batch, c, self.plane);
        self.x = ext;
        for (out, img) in y.chunks_exact_mut(il).zip(self.y.chunks_exact(wide)) {
            out.copy_from_slice(&img[self.left * self.plane..][..il]);
        }
    }

    fn backward(&mut self, cluster: &Cluster, dy: &[f32], dx: &mut [f32], batch: usize) {
        let (t, wide, il) = (cluster.rank(), self.wide(), self.c * self.plane);
        // Channel j's gradient collects channels j - after ..= j + before of ∂L/∂y·y/s.
        let (before, after) = self.p.reach();
        let h = before.max(after);
        let all = self.edges(cluster, dy, batch, h);
        let (l, r) = (if self.left > 0 { after } else { 0 }, if self.right > 0 { before } else { 0 });
        let mut ext = std::mem::take(&mut self.dy);
        self.extend(&mut ext, dy, &all, h, (l, r), t, batch);
        let c = self.left + self.c + self.right;
        let (p, x, y, s) = (&self.p, &self.x, &self.y, &self.scale);
        crate::kernels::lrn::backward(p, x, y, s, &ext, &mut self.dx, batch, c, self.plane);
        self.dy = ext;
        for (out, img) in dx.chunks_exact_mut(il).zip(self.dx.chunks_exact(wide)) {
            out.copy_from_slice(&img[self.left * self.plane..][..il]);
        }
    }
}

/// One process's tower of a network (see the module's doc).
pub struct TowerNetwork {
    /// The whole model.
    pub config: ModelConfig,
    ops: Vec<Op>,
    /// Values per image of each op's input; the last is the logits'.
    lens: Vec<usize>,
    acts: Vec<Vec<f32>>,
    grad_a: Vec<f32>,
    grad_b: Vec<f32>,
    dlogits: Vec<f32>,
    classes: usize,
    batch: usize,
    mode: Mode,
    cluster: Cluster,
    /// Seconds in the towers' exchanges since [`TowerNetwork::take_comm_seconds`].
    comm_seconds: f64,
}

/// What a layer needs of its input, and what its output is.
fn needs(kind: &LayerKind, towers: usize) -> Result<(Option<Rep>, Option<Rep>)> {
    Ok(match kind {
        LayerKind::Conv { shape, .. } if shape.groups == 1 => (Some(Rep::Full), Some(Rep::Split)),
        LayerKind::Conv { shape, .. } if shape.groups.is_multiple_of(towers) => (Some(Rep::Split), Some(Rep::Split)),
        LayerKind::Conv { shape, .. } => {
            return Err(Error::Invalid(format!(
                "a convolution of {} groups does not split over {towers} towers",
                shape.groups
            )));
        }
        LayerKind::Linear { .. } => (Some(Rep::Full), Some(Rep::Split)),
        LayerKind::Dropout { .. } => (Some(Rep::Full), Some(Rep::Full)),
        _ => (None, None),
    })
}

/// `full`'s parameter with `rows / towers` of its rows.
fn share(spec: &ParamSpec, towers: usize) -> Result<ParamSpec> {
    let rows = spec.shape[0];
    if !rows.is_multiple_of(towers) {
        return Err(Error::Invalid(format!("{} has {rows} rows, which do not split over {towers} towers", spec.name)));
    }
    let mut s = spec.clone();
    s.shape[0] = rows / towers;
    Ok(s)
}

/// The tower's layer for `full` on input of `rep`.
fn tower_layer(full: &LayerInfo, rep: Rep, towers: usize) -> Result<LayerInfo> {
    let mut l = full.clone();
    let shrink = |dims: &mut [usize; 3]| dims[0] /= towers;
    match &mut l.kind {
        LayerKind::Conv { shape, params } => {
            if shape.groups > 1 {
                shape.in_c /= towers;
                shape.groups /= towers;
                shrink(&mut l.input);
            }
            shape.out_c /= towers;
            for p in params.iter_mut() {
                *p = share(p, towers)?;
            }
            shrink(&mut l.output);
        }
        LayerKind::Linear { out, params, .. } => {
            *out /= towers;
            for p in params.iter_mut() {
                *p = share(p, towers)?;
            }
            shrink(&mut l.output);
        }
        LayerKind::MaxPool(shape) if rep == Rep::Split => {
            shape.c /= towers;
            shrink(&mut l.input);
            shrink(&mut l.output);
        }
        _ if rep == Rep::Split => {
            shrink(&mut l.input);
            shrink(&mut l.output);
        }
        _ => {}
    }
    if rep == Rep::Split && (!full.in_len().is_multiple_of(towers) || !full.out_len().is_multiple_of(towers)) {
        return Err(Error::Invalid(format!("layer {} does not split over {towers} towers", full.name)));
    }
    Ok(l)
}

impl TowerNetwork {
    /// This process's tower of `net` (every process passes the same network), over `cluster`'s
    /// processes, one tower each.
    pub fn from_full(net: &Network, cluster: Cluster) -> Result<Self> {
        let (towers, t) = (cluster.size(), cluster.rank());
        let form = net.config.dropout_mode;
        let (mut ops, mut lens, mut rep) = (Vec::new(), vec![net.input_len()], Rep::Full);
        for (i, info) in net.summary.layers.iter().enumerate() {
            let (want, out) = needs(&info.kind, towers)?;
            let len = *lens.last().expect("the input's length");
            match (want, rep) {
                (Some(Rep::Full), Rep::Split) => {
                    ops.push(Op::Gather { per_image: len, partial: true });
                    lens.push(len * towers);
                }
                (Some(Rep::Split), Rep::Full) => {
                    ops.push(Op::Slice { per_image: len });
                    lens.push(len / towers);
                }
                _ => {}
            }
            rep = want.unwrap_or(rep);
            let local = tower_layer(info, rep, towers)?;
            lens.push(local.out_len());
            match (&local.kind, rep) {
                (LayerKind::Lrn(p), Rep::Split) => {
                    let [c, h, w] = local.input;
                    if c < p.size {
                        return Err(Error::Invalid(format!(
                            "{} channels a tower are too few for LRN's window of {}",
                            c, p.size
                        )));
                    }
                    ops.push(Op::Lrn(Box::new(HaloLrn::new(*p, c, h * w, t, towers))));
                }
                _ => ops.push(Op::Layer(Box::new(Layer::new(&local, i, form)))),
            }
            rep = out.unwrap_or(rep);
        }
        if rep == Rep::Split {
            let len = *lens.last().expect("the logits' length");
            ops.push(Op::Gather { per_image: len, partial: false });
            lens.push(len * towers);
        }
        let mut tower = TowerNetwork {
            config: net.config.clone(),
            ops,
            lens,
            acts: Vec::new(),
            grad_a: Vec::new(),
            grad_b: Vec::new(),
            dlogits: Vec::new(),
            classes: net.classes(),
            batch: 0,
            mode: Mode::Eval,
            cluster,
            comm_seconds: 0.0,
        };
        for (mine, whole) in tower.params_mut().zip(net.params()) {
            let n = mine.data.len();
            mine.data.copy_from_slice(&whole.data[t * n..(t + 1) * n]);
        }
        Ok(tower)
    }

    /// This tower's parameters, in the order of the whole network's.
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.ops.iter().flat_map(|o| if let Op::Layer(l) = o { l.params() } else { &[] })
    }

    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.ops.iter_mut().flat_map(|o| if let Op::Layer(l) = o { l.params_mut() } else { &mut [] })
    }

    /// Sets how the tower's convolutions compute, resolved by their shapes.
    pub fn set_conv(&mut self, choice: ConvChoice) {
        self.ops.iter_mut().for_each(|o| {
            if let Op::Layer(l) = o {
                l.set_conv(choice)
            }
        })
    }

    /// Sets the precision of the tower's products.
    pub fn set_precision(&mut self, p: Precision) {
        self.ops.iter_mut().for_each(|o| {
            if let Op::Layer(l) = o {
                l.set_precision(p)
            }
        })
    }

    /// Writes every tower's parameters into `net` (the whole network; every process calls it,
    /// and every process's `net` gets them).
    pub fn write_full(&self, net: &mut Network) {
        for (mine, whole) in self.params().zip(net.params_mut()) {
            self.cluster.all_gather_f32(&mine.data, &mut whole.data);
        }
    }

    /// The whole optimizer's velocities from every tower's `opt` (ordered as [`Self::params`]),
    /// into `whole` (ordered as the whole network's).
    pub fn write_full_velocity(&self, opt: &Sgd, whole: &mut Sgd) {
        for (mine, all) in opt.velocity.iter().zip(&mut whole.velocity) {
            self.cluster.all_gather_f32(mine, all);
        }
    }

    /// This tower's share of the whole optimizer's velocities.
    pub fn velocity_share(&self, whole: &Sgd) -> Sgd {
        let t = self.cluster.rank();
        let mut opt = Sgd::new(whole.config, self.params());
        for (mine, all) in opt.velocity.iter_mut().zip(&whole.velocity) {
            let n = mine.len();
            mine.copy_from_slice(&all[t * n..(t + 1) * n]);
        }
        opt
    }

    fn reserve(&mut self, batch: usize) {
        if self.acts.first().is_some_and(|a| a.len() >= self.lens[0] * batch) {
            return;
        }
        self.acts = self.lens.iter().map(|n| vec![0.0; n * batch]).collect();
        for (op, out) in self.ops.iter_mut().zip(&self.lens[1..]) {
            if let Op::Layer(l) = op {
                l.reserve(out * batch);
            }
        }
        let widest = self.lens.iter().max().copied().unwrap_or(0);
        self.grad_a = vec![0.0; widest * batch];
        self.grad_b = vec![0.0; widest * batch];
    }

    /// The whole network's logits `[B, classes]` for `x [B, C, H, W]` (every tower passes the
    /// same images and gets the same logits).
    pub fn forward(&mut self, x: &[f32], batch: usize, mode: Mode) -> &[f32] {
        assert_eq!(x.len(), batch * self.lens[0], "input of {} values for {batch} images", x.len());
        self.reserve(batch);
        (self.batch, self.mode) = (batch, mode);
        self.acts[0][..x.len()].copy_from_slice(x);
        let t = self.cluster.rank();
        for (i, op) in self.ops.iter_mut().enumerate() {
            let (lo, hi) = self.acts.split_at_mut(i + 1);
            let (x, y) = (&lo[i][..self.lens[i] * batch], &mut hi[0][..self.lens[i + 1] * batch]);
            match op {
                Op::Layer(l) => l.forward(x, y, batch, mode),
                Op::Gather { per_image, .. } => {
                    let t0 = Instant::now();
                    gather(&self.cluster, x, y, *per_image, batch);
                    self.comm_seconds += t0.elapsed().as_secs_f64();
                }
                Op::Lrn(l) => l.forward(&self.cluster, x, y, batch),
                Op::Slice { per_image } => take_share(x, y, *per_image / self.cluster.size(), t),
            }
        }
        &self.acts[self.ops.len()][..self.lens[self.ops.len()] * batch]
    }

    /// Back-propagates `dlogits` (the same on every tower) through the last forward pass,
    /// overwriting this tower's parameters' gradients.
    pub fn backward(&mut self, dlogits: &[f32]) {
        let batch = self.batch;
        let (t, towers) = (self.cluster.rank(), self.cluster.size());
        self.grad_a[..dlogits.len()].copy_from_slice(dlogits);
        for (i, op) in self.ops.iter_mut().enumerate().rev() {
            let (il, ol) = (self.lens[i] * batch, self.lens[i + 1] * batch);
            let (x, y) = (&self.acts[i][..il], &self.acts[i + 1][..ol]);
            let (dy, dx) = (&mut self.grad_a[..ol], &mut self.grad_b[..il]);
            match op {
                Op::Layer(l) => l.backward(x, y, dy, (i > 0).then_some(dx), batch, self.mode),
                Op::Gather { per_image, partial } => {
                    if *partial {
                        let t0 = Instant::now();
                        self.cluster.sum_f32(dy);
                        self.comm_seconds += t0.elapsed().as_secs_f64();
                    }
                    take_share(dy, dx, *per_image, t);
                }
                Op::Lrn(l) => l.backward(&self.cluster, dy, dx, batch),
                Op::Slice { per_image } => {
                    let n = *per_image / towers;
                    dx.fill(0.0);
                    for (img, d) in dx.chunks_exact_mut(*per_image).zip(dy.chunks_exact(n)) {
                        img[t * n..(t + 1) * n].copy_from_slice(d);
                    }
                }
            }
            std::mem::swap(&mut self.grad_a, &mut self.grad_b);
        }
    }

    /// Seconds spent in the towers' exchanges since the last call (waits for the other
    /// towers included).
    pub fn take_comm_seconds(&mut self) -> f64 {
        let lrn: f64 = self
            .ops
            .iter_mut()
            .map(|o| if let Op::Lrn(l) = o { std::mem::take(&mut l.comm_seconds) } else { 0.0 })
            .sum();
        std::mem::take(&mut self.comm_seconds) + lrn
    }

    /// Forward in `mode`, the softmax cross-entropy of the batch's mean loss and, when it is
    /// finite, backward: every tower gets the same result and its own parameters' gradients.
    pub fn loss_and_gradients(&mut self, x: &[f32], labels: &[usize], mode: Mode) -> StepResult {
        let mut dlogits = std::mem::take(&mut self.dlogits);
        let classes = self.classes;
        let r = score(self.forward(x, labels.len(), mode), labels, classes, &mut dlogits);
        if r.loss.is_finite() {
            self.backward(&dlogits);
        }
        self.dlogits = dlogits;
        r
    }
}

/// `share [B, n]`: tower `t`'s `n` values of each image of `whole [B, towers·n]` (going from
/// full to split, forward or backward).
fn take_share(whole: &[f32], share: &mut [f32], n: usize, t: usize) {
    let batch = share.len() / n.max(1);
    let per_image = whole.len() / batch.max(1);
    for (out, img) in share.chunks_exact_mut(n).zip(whole.chunks_exact(per_image)) {
        out.copy_from_slice(&img[t * n..(t + 1) * n]);
    }
}

/// `y [B, towers·n]` from every tower's `x [B, n]`, each image's shares in tower order.
fn gather(cluster: &Cluster, x: &[f32], y: &mut [f32], n: usize, batch: usize) {
    let towers = cluster.size();
    let mut all = vec![0.0; x.len() * towers];
    cluster.all_gather_f32(x, &mut all);
    // `all` is [towers, B, n]; `y` is [B, towers, n].
    for (t, part) in all.chunks_exact(batch * n).enumerate() {
        for (b, img) in part.chunks_exact(n).enumerate() {
            y[(b * towers + t) * n..][..n].copy_from_slice(img);
        }
    }
}
