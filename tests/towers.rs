//! The paper's two towers as two processes (here threads playing them, as tests/train.rs does
//! for data parallelism; tests/mpi.rs runs them under mpirun): the same logits, gradients and
//! weights after some steps as the grouped network in one process.

use alexnet::cluster::{Cluster, TowerNetwork, threads};
use alexnet::kernels::conv::ConvChoice;
use alexnet::model::{Mode, ModelConfig, Network};
use alexnet::optim::{Sgd, SgdConfig};
use alexnet::tensor::rel_err;

const STEPS: u64 = 3;

/// A network of `net`'s config and weights, computing by im2col (as Winograd groups images
/// together, its rounding differs from run to run of other shapes).
fn copy(net: &Network) -> Network {
    let mut n = Network::zeroed(net.config.clone()).unwrap();
    for (a, b) in n.params_mut().zip(net.params()) {
        a.data.clone_from(&b.data);
    }
    n.set_conv(ConvChoice::Im2col);
    n
}

fn batch(net: &Network, n: usize) -> (Vec<f32>, Vec<usize>) {
    let len = n * net.input_len();
    let x = (0..len).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 60.0).collect();
    let labels = (0..n).map(|i| i * 37 % net.classes()).collect();
    (x, labels)
}

/// What one process computes: the first step's logits and gradients, and the weights after
/// `STEPS` steps of the paper's SGD with dropout masks drawn.
struct Run {
    logits: Vec<f32>,
    grads: Vec<Vec<f32>>,
    weights: Vec<Vec<f32>>,
}

fn one_process(mut net: Network, x: &[f32], labels: &[usize]) -> Run {
    let mut opt = Sgd::new(SgdConfig::default(), net.params());
    let logits = net.forward(x, labels.len(), Mode::Train { seed: 5, step: 0, first_image: 0 }).to_vec();
    net.loss_and_gradients(x, labels, Mode::Train { seed: 5, step: 0, first_image: 0 });
    let grads = net.params().map(|p| p.grad.clone()).collect();
    for step in 0..STEPS {
        net.train_step(x, labels, 5, step, &mut opt);
    }
    Run { logits, grads, weights: net.params().map(|p| p.data.clone()).collect() }
}

fn towers(net: &Network, x: &[f32], labels: &[usize]) -> Run {
    let runs: Vec<_> = threads::members(2)
        .into_iter()
        .map(|m| {
            let (net, x, labels) = (copy(net), x.to_vec(), labels.to_vec());
            std::thread::spawn(move || {
                let mut full = net;
                let cluster = Cluster::new(m);
                let mut tower = TowerNetwork::from_full(&full, cluster).unwrap();
                tower.set_conv(ConvChoice::Im2col);
                let mut opt = tower.velocity_share(&Sgd::new(SgdConfig::default(), full.params()));
                let mode = |step| Mode::Train { seed: 5, step, first_image: 0 };
                let logits = tower.forward(&x, labels.len(), mode(0)).to_vec();
                tower.loss_and_gradients(&x, &labels, mode(0));
                let grads: Vec<Vec<f32>> = tower.params().map(|p| p.grad.clone()).collect();
                for step in 0..STEPS {
                    let r = tower.loss_and_gradients(&x, &labels, mode(step));
                    assert!(r.loss.is_finite());
                    opt.step(tower.params_mut());
                }
                tower.write_full(&mut full);
                (logits, grads, full.params().map(|p| p.data.clone()).collect::<Vec<_>>())
            })
        })
        .collect();
    let mut out: Vec<_> = runs.into_iter().map(|h| h.join().unwrap()).collect();
    let (l1, g1, w1) = out.pop().unwrap();
    let (l0, g0, w0) = out.pop().unwrap();
    assert_eq!(l0, l1, "both towers hold the same logits");
    assert_eq!(w0, w1, "both towers assemble the same whole network");
    // Tower t's gradients are rows t·R/2 .. of each parameter's.
    let grads = g0.into_iter().zip(g1).map(|(a, b)| [a, b].concat()).collect();
    Run { logits: l0, grads, weights: w0 }
}

/// The sums of a tower's partial gradients go in another order than one process's (conv3's
/// and the fully connected layers' input gradients are summed over the towers), so the results
/// agree to rounding. Measured: logits equal to 1e-7, gradients to 7e-7 relative, the weights
/// after 3 steps to 2e-6, but for conv1's and conv3's biases, which start at 0 and so are made
/// of updates alone: 2e-4. A wrong slice, a missing sum or another dropout mask is off by ~1.
#[test]
fn two_towers_equal_the_grouped_network() {
    let mut net = Network::new(ModelConfig::variant("paper").unwrap(), 11).unwrap();
    net.set_conv(ConvChoice::Im2col);
    let (x, labels) = batch(&net, 3);
    let want = one_process(copy(&net), &x, &labels);
    let got = towers(&net, &x, &labels);
    let d = rel_err(&got.logits, &want.logits);
    assert!(d < 1e-5, "logits differ by {d:e}");
    let names: Vec<String> = net.params().map(|p| p.name.clone()).collect();
    for (i, name) in names.iter().enumerate() {
        let d = rel_err(&got.grads[i], &want.grads[i]);
        assert!(d < 1e-5, "{name}'s gradient differs by {d:e}");
        let d = rel_err(&got.weights[i], &want.weights[i]);
        assert!(d < 1e-3, "{name} after {STEPS} steps differs by {d:e}");
    }
}
