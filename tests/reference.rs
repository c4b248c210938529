//! The whole network against PyTorch's numbers (tests/fixtures, copied from ../shared/reference).
//! Tolerance: relative error ||ours − ref|| / ||ref|| ≤ 1e-4.

mod common;
use alexnet::kernels::conv::{ConvAlgo, ConvChoice};
use alexnet::kernels::loss::softmax_cross_entropy;
use alexnet::kernels::lrn::{self, LrnParams};
use alexnet::kernels::pool::{self, PoolShape};
use alexnet::kernels::winograd::Tile;
use alexnet::model::config::{AlexNetWidths, LayerSpec, paper_topology};
use alexnet::model::{ModelConfig, Network};
use alexnet::optim::{Sgd, SgdConfig, SgdForm};
use alexnet::{Mode, model};
use common::{Fixture, assert_close};

const TOL: f64 = 1e-4;
const PARAMS: [&str; 8] = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"];

/// The reference's tiny network: paper topology, widths 16/32/48/48/32, fc 64/64, 10 classes,
/// 99×99 input, and no dropout (the references are deterministic).
fn tiny_config() -> ModelConfig {
    let w = AlexNetWidths {
        conv: [16, 32, 48, 48, 32],
        fc: [64, 64],
        classes: 10,
        input: 99,
        groups: 2,
        pool_before_norm: false,
    };
    let mut cfg = paper_topology("tiny", &w);
    cfg.layers.retain(|l| !matches!(l, LayerSpec::Dropout { .. }));
    cfg
}

fn tiny_net(fx: &Fixture, prefix: &str, conv: ConvChoice) -> Network {
    let mut net = Network::new(tiny_config(), 0).unwrap();
    net.set_conv(conv);
    for p in net.params_mut() {
        let (shape, data) = fx.get(&format!("{prefix}.{}", p.name));
        assert_eq!(shape, p.shape, "{}", p.name);
        p.data = data;
    }
    net
}

fn labels(fx: &Fixture) -> Vec<usize> {
    fx.f32("labels").iter().map(|&v| v as usize).collect()
}

#[test]
fn tiny_parameter_count() {
    let s = model::plan(&tiny_config()).unwrap();
    assert_eq!(s.params, 56_554);
}

/// Every convolution algorithm: im2col everywhere, Winograd on conv2-5 (5x5 and 3x3, stride 1),
/// FFT on conv2-5 (at any batch when asked for).
const CONVS: [ConvChoice; 3] = [ConvChoice::Im2col, ConvChoice::Winograd, ConvChoice::Fft];

#[test]
fn tiny_forward_loss_and_every_gradient() {
    for conv in CONVS {
        tiny_forward_loss_and_every_gradient_with(conv);
    }
}

fn tiny_forward_loss_and_every_gradient_with(conv: ConvChoice) {
    let fx = Fixture::load("tiny_alexnet.safetensors");
    let mut net = tiny_net(&fx, "param", conv);
    let x = fx.f32("input");
    let y = labels(&fx);
    let logits = net.forward(&x, 4, Mode::Eval).to_vec();
    assert_close("logits", &logits, &fx.f32("logits"), TOL);
    let mut dlogits = vec![0.0; logits.len()];
    let loss = softmax_cross_entropy(&logits, &y, 10, &mut dlogits);
    assert_close("loss", &[loss], &fx.f32("loss"), TOL);
    net.backward(&dlogits, true);
    for layer in PARAMS {
        for kind in ["weight", "bias"] {
            let name = format!("{layer}.{kind}");
            assert_close(
                &format!("grad {name}"),
                &net.param(&name).unwrap().grad,
                &fx.f32(&format!("grad.{name}")),
                TOL,
            );
        }
    }
    assert_close("input_grad", net.input_grad(), &fx.f32("input_grad"), TOL);
}

#[test]
fn tiny_two_paper_sgd_steps() {
    for conv in CONVS {
        tiny_two_paper_sgd_steps_with(conv);
    }
}

fn tiny_two_paper_sgd_steps_with(conv: ConvChoice) {
    let fx = Fixture::load("tiny_alexnet.safetensors");
    let mut net = tiny_net(&fx, "param", conv);
    let x = fx.f32("input");
    let y = labels(&fx);
    let cfg = SgdConfig { lr: 0.01, momentum: 0.9, weight_decay: 5e-4, form: SgdForm::Paper, decay_biases: true };
    let mut opt = Sgd::new(cfg, net.params());
    for step in ["after_step1", "after_step2"] {
        let logits = net.forward(&x, 4, Mode::Eval).to_vec();
        let mut d = vec![0.0; logits.len()];
        softmax_cross_entropy(&logits, &y, 10, &mut d);
        net.backward(&d, false);
        opt.step(net.params_mut());
        for p in net.params() {
            assert_close(&format!("{step} {}", p.name), &p.data, &fx.f32(&format!("{step}.{}", p.name)), TOL);
        }
    }
}

#[test]
fn lrn_alone() {
    let fx = Fixture::load("tiny_alexnet.safetensors");
    let (shape, x) = fx.get("lrn.input");
    let (b, c, plane) = (shape[0], shape[1], shape[2] * shape[3]);
    let p = LrnParams::paper();
    let mut y = vec![0.0; x.len()];
    let mut s = vec![0.0; x.len()];
    lrn::forward(&p, &x, &mut y, &mut s, b, c, plane);
    assert_close("lrn output", &y, &fx.f32("lrn.output"), TOL);
    let mut dx = vec![0.0; x.len()];
    lrn::backward(&p, &x, &y, &s, &fx.f32("lrn.upstream"), &mut dx, b, c, plane);
    assert_close("lrn input_grad", &dx, &fx.f32("lrn.input_grad"), TOL);
}

#[test]
fn maxpool_alone_with_ties() {
    let fx = Fixture::load("tiny_alexnet.safetensors");
    let (shape, x) = fx.get("maxpool.input");
    let s = PoolShape { c: shape[1], in_h: shape[2], in_w: shape[3], kernel: 3, stride: 2, pad: 0 };
    let planes = shape[0] * shape[1];
    let mut y = vec![0.0; planes * s.out_h() * s.out_w()];
    let mut arg = vec![0u32; y.len()];
    pool::max_forward(&s, &x, &mut y, &mut arg, planes);
    assert_close("maxpool output", &y, &fx.f32("maxpool.output"), TOL);
    let mut dx = vec![0.0; x.len()];
    pool::max_backward(&s, &vec![1.0; y.len()], &arg, &mut dx, planes);
    // Exact: ties must go where PyTorch sends them.
    assert_eq!(dx, fx.f32("maxpool.input_grad"));
}

/// Full-size networks with the reference's formula weights and input. The references have no
/// dropout; `keep_dropout` keeps ours, which must then be the identity at test time.
fn formula_logits(variant: &str, fixture: &str, keep_dropout: bool) {
    let mut cfg = ModelConfig::variant(variant).unwrap();
    if !keep_dropout {
        cfg.layers.retain(|l| !matches!(l, LayerSpec::Dropout { .. }));
    }
    let mut net = Network::new(cfg, 0).unwrap();
    net.init_formula();
    let n = 2 * net.input_len();
    let x: Vec<f32> = (0..n).map(|j| 2.0 * alexnet::rng::u24(1000, j as u64) - 1.0).collect();
    let fx = Fixture::load(fixture);
    // And `auto`, which at 2 images in evaluation takes F(2×2, 5×5) for the FFT's conv2.
    for conv in CONVS.into_iter().chain([ConvChoice::Auto]) {
        net.set_conv(conv);
        let logits = net.forward(&x, 2, Mode::Eval).to_vec();
        assert_close(&format!("{variant} formula logits, {conv:?}"), &logits, &fx.f32("logits"), TOL);
    }
    // And at 16 images on two threads (the two, eight times), where `auto` takes FFT on conv2 and
    // F(5×5, 3×3) on conv3-5.
    net.set_conv(ConvChoice::Auto);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    pool.install(|| {
        let at: Vec<_> = net.conv_algos(16, Mode::Eval).into_iter().map(|(_, _, at)| at).collect();
        assert!(at[2..].iter().all(|a| *a == ConvAlgo::Winograd(Tile::F5)), "{at:?}");
        let x16: Vec<f32> = x.iter().copied().cycle().take(8 * n).collect();
        let logits = net.forward(&x16, 16, Mode::Eval).to_vec();
        let want: Vec<f32> = fx.f32("logits").into_iter().cycle().take(logits.len()).collect();
        assert_close(&format!("{variant} formula logits, auto at 16 images"), &logits, &want, TOL);
    });
}

#[test]
fn paper_full_size_formula_logits() {
    // The paper's test-time dropout multiplies by 0.5, which PyTorch's reference does not.
    formula_logits("paper", "paper_formula_logits.safetensors", false);
}

#[test]
fn torchvision_full_size_formula_logits() {
    // torchvision's inverted dropout is the identity at test time: the variant as it stands.
    formula_logits("torchvision", "torchvision_formula_logits.safetensors", true);
}
