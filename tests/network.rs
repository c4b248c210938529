//! The assembled network: end-to-end gradients by finite differences over every layer kind,
//! the variants' parameter counts, and the optimizer's two forms.

mod common;
use alexnet::kernels::loss::softmax_cross_entropy;
use alexnet::kernels::lrn::LrnParams;
use alexnet::model::config::{Init, LayerSpec};
use alexnet::model::{ModelConfig, Network, plan};
use alexnet::optim::{Sgd, SgdConfig, SgdForm};
use alexnet::{Mode, kernels::dropout::DropoutMode};
use common::assert_close;

/// A small net holding every layer kind: grouped and strided convs, LRN, overlapping pooling,
/// adaptive average pooling, tanh, dropout and linear layers.
fn every_layer_config() -> ModelConfig {
    use LayerSpec::*;
    let conv = |name: &str, out, kernel, stride, pad, groups| Conv {
        name: name.into(),
        out,
        kernel,
        stride,
        pad,
        groups,
        bias_init: 0.1,
    };
    ModelConfig {
        name: "every-layer".into(),
        input: [3, 15, 15],
        layers: vec![
            conv("conv1", 4, 5, 2, 1, 1),
            Relu,
            Lrn(LrnParams { alpha: 0.1, ..LrnParams::paper() }),
            MaxPool { kernel: 3, stride: 2, pad: 1 },
            conv("conv2", 6, 3, 1, 1, 2),
            Tanh,
            AdaptiveAvgPool { out_h: 3, out_w: 3 },
            Flatten,
            Dropout { p: 0.3 },
            Linear { name: "fc1".into(), out: 8, bias_init: 0.1 },
            Relu,
            Linear { name: "fc2".into(), out: 5, bias_init: 0.0 },
        ],
        init: Init::He,
        dropout_mode: DropoutMode::Paper,
        data: Default::default(),
    }
}

fn loss_at(net: &mut Network, x: &[f32], y: &[usize], mode: Mode) -> f64 {
    let logits = net.forward(x, y.len(), mode).to_vec();
    softmax_cross_entropy(&logits, y, net.classes(), &mut vec![0.0; logits.len()]) as f64
}

#[test]
fn whole_network_gradients_match_finite_differences() {
    let mut net = Network::new(every_layer_config(), 3).unwrap();
    let x: Vec<f32> = alexnet::rng::uniform_vec(3 * net.input_len(), 5).iter().map(|v| v * 2.0).collect();
    let y = [1, 4, 0];
    // Dropout masks are a function of (seed, step): fixed across the perturbed evaluations.
    let mode = Mode::Train { seed: 17, step: 2, first_image: 0 };
    let logits = net.forward(&x, 3, mode).to_vec();
    let mut d = vec![0.0; logits.len()];
    softmax_cross_entropy(&logits, &y, 5, &mut d);
    net.backward(&d, true);
    let analytic_dx = net.input_grad().to_vec();
    let eps = 1e-2f32;
    let names: Vec<String> = net.params().map(|p| p.name.clone()).collect();
    for name in names {
        let analytic = net.param(&name).unwrap().grad.clone();
        let set = |net: &mut Network, j: usize, v: f32| net.param_mut(&name).unwrap().data[j] = v;
        let numeric: Vec<f32> = (0..analytic.len())
            .map(|j| {
                let orig = net.param(&name).unwrap().data[j];
                set(&mut net, j, orig + eps);
                let lp = loss_at(&mut net, &x, &y, mode);
                set(&mut net, j, orig - eps);
                let lm = loss_at(&mut net, &x, &y, mode);
                set(&mut net, j, orig);
                ((lp - lm) / (2.0 * eps as f64)) as f32
            })
            .collect();
        assert_close(&format!("grad {name}"), &analytic, &numeric, 2e-2);
    }
    let cell = std::cell::RefCell::new(net);
    let numeric =
        common::numeric_grad(&x, &[1.0], eps, |xp| vec![loss_at(&mut cell.borrow_mut(), xp, &y, mode) as f32]);
    assert_close("input grad", &analytic_dx, &numeric, 2e-2);
}

#[test]
fn variant_parameter_counts() {
    let count = |name: &str| plan(&ModelConfig::variant(name).unwrap()).unwrap().params;
    assert_eq!(count("paper"), 60_965_224);
    assert_eq!(count("paper-1gpu"), 62_378_344);
    assert_eq!(count("caffenet"), 60_965_224);
    assert_eq!(count("torchvision"), 61_100_840);
    // Section 3.2's half-width one-tower net, counted by hand layer by layer: weights + biases.
    let by_hand = [
        48 * 3 * 11 * 11 + 48,
        128 * 48 * 5 * 5 + 128,
        192 * 128 * 3 * 3 + 192,
        192 * 192 * 3 * 3 + 192,
        256 * 192 * 3 * 3 + 256,
        4096 * 256 * 6 * 6 + 4096,
        4096 * 4096 + 4096,
        1000 * 4096 + 1000,
    ];
    assert_eq!(count("paper-half"), by_hand.iter().sum::<usize>());
    assert_eq!(count("paper-half"), 59_798_312);
    for v in alexnet::model::VARIANTS {
        let s = plan(&ModelConfig::variant(v).unwrap()).unwrap();
        assert_eq!(s.layers.last().unwrap().output[0], if v.starts_with("cifar") { 10 } else { 1000 }, "{v}");
    }
    // Figure 1's four-layer net, by hand: three 5x5 convs and the classifier on 64x4x4.
    let fig1 = [32 * 3 * 25 + 32, 32 * 32 * 25 + 32, 64 * 32 * 25 + 64, 10 * 64 * 4 * 4 + 10];
    assert_eq!(count("cifar-4layer"), fig1.iter().sum::<usize>());
    // Section 3.2's comparison at CIFAR size, by hand: conv1-conv4 halved, one tower, conv5 and
    // the classifier kept (4x4 after three stride-2 pools).
    let half = [
        32 * 3 * 25 + 32,
        64 * 32 * 25 + 64,
        96 * 64 * 9 + 96,
        96 * 96 * 9 + 96,
        128 * 96 * 9 + 128,
        512 * 128 * 4 * 4 + 512,
        512 * 512 + 512,
        10 * 512 + 10,
    ];
    assert_eq!(count("cifar-half"), half.iter().sum::<usize>());
}

#[test]
fn cifar_has_dropout_layers_at_zero_that_the_flag_sets() {
    let ps = |m: &ModelConfig| {
        m.layers
            .iter()
            .filter_map(|l| if let LayerSpec::Dropout { p } = l { Some(*p) } else { None })
            .collect::<Vec<_>>()
    };
    let cifar = ModelConfig::variant("cifar").unwrap();
    assert_eq!(ps(&cifar), [0.0, 0.0]);
    assert_eq!(
        ps(&alexnet::model::ModelChanges { dropout: Some(0.5), ..Default::default() }.apply(cifar).unwrap()),
        [0.5, 0.5]
    );
    assert_eq!(ps(&ModelConfig::variant("paper").unwrap()), [0.5, 0.5]);
}

#[test]
fn variants_have_the_documented_shapes() {
    let out = |name: &str, layer: &str| {
        let s = plan(&ModelConfig::variant(name).unwrap()).unwrap();
        s.layers.iter().find(|l| l.name == layer).unwrap().output
    };
    assert_eq!(out("paper", "conv1"), [96, 55, 55]);
    assert_eq!(out("paper", "conv5"), [256, 13, 13]);
    assert_eq!(out("torchvision", "conv1"), [64, 55, 55]);
    assert_eq!(out("zfnet", "conv1"), [96, 110, 110]);
    assert_eq!(out("zfnet", "conv2"), [256, 26, 26]);
    assert_eq!(out("zfnet", "conv4"), [1024, 13, 13]);
    assert_eq!(out("cifar", "conv1"), [64, 32, 32]);
    let caffe = plan(&ModelConfig::variant("caffenet").unwrap()).unwrap();
    let order: Vec<_> = caffe.layers.iter().take(4).map(|l| l.name.as_str()).collect();
    assert_eq!(order, ["conv1", "relu", "maxpool", "lrn"]);
}

#[test]
fn bad_configs_are_errors_not_panics() {
    let mut cfg = ModelConfig::variant("paper").unwrap();
    cfg.input = [3, 20, 20];
    let e = plan(&cfg).unwrap_err().to_string();
    assert!(e.contains("larger than"), "{e}");
    let mut cfg = ModelConfig::variant("paper").unwrap();
    if let LayerSpec::Conv { groups, .. } = &mut cfg.layers[4] {
        *groups = 5;
    }
    let e = plan(&cfg).unwrap_err().to_string();
    assert!(e.contains("groups"), "{e}");
    assert!(ModelConfig::variant("vgg").unwrap_err().to_string().contains("known"));
}

#[test]
fn paper_init_follows_section_5() {
    let net = Network::new(ModelConfig::variant("paper").unwrap(), 1).unwrap();
    for p in net.params() {
        if p.is_bias {
            let one = ["conv2", "conv4", "conv5", "fc6", "fc7"].iter().any(|l| p.name.starts_with(l));
            assert!(p.data.iter().all(|&b| b == if one { 1.0 } else { 0.0 }), "{}", p.name);
        } else {
            let n = p.data.len() as f64;
            let mean = p.data.iter().map(|&v| v as f64).sum::<f64>() / n;
            let std = (p.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            assert!(mean.abs() < 1e-3 && (std - 0.01).abs() < 5e-4, "{}: mean {mean} std {std}", p.name);
        }
    }
    // He init for the variants that ask for it.
    let net = Network::new(ModelConfig::variant("cifar").unwrap(), 1).unwrap();
    let w = &net.param("conv3.weight").unwrap();
    let fan_in = (w.shape[1] * w.shape[2] * w.shape[3]) as f64;
    let std = (w.data.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / w.data.len() as f64).sqrt();
    assert!((std - (2.0 / fan_in).sqrt()).abs() < 0.05 * (2.0 / fan_in).sqrt(), "{std}");
}

#[test]
fn sgd_forms_agree_at_constant_lr_and_differ_after_a_drop() {
    let cfg = every_layer_config();
    let x = alexnet::rng::uniform_vec(2 * 3 * 15 * 15, 8);
    let y = [2, 3];
    let run = |form: SgdForm, lrs: &[f32]| {
        let mut net = Network::new(cfg.clone(), 4).unwrap();
        let mut opt = Sgd::new(SgdConfig { form, ..SgdConfig::default() }, net.params());
        for (step, &lr) in lrs.iter().enumerate() {
            opt.config.lr = lr;
            net.train_step(&x, &y, 1, step as u64, &mut opt);
        }
        net.params().flat_map(|p| p.data.clone()).collect::<Vec<f32>>()
    };
    let constant = [0.05; 4];
    assert_close(
        "paper vs pytorch, constant lr",
        &run(SgdForm::Paper, &constant),
        &run(SgdForm::Pytorch, &constant),
        1e-5,
    );
    let dropped = [0.05, 0.05, 0.005, 0.005];
    let e = alexnet::tensor::rel_err(&run(SgdForm::Paper, &dropped), &run(SgdForm::Pytorch, &dropped));
    assert!(e > 1e-5, "the forms should differ after an lr drop ({e})");
}

#[test]
fn training_reduces_the_loss_on_a_fixed_batch() {
    let mut net = Network::new(every_layer_config(), 7).unwrap();
    let x = alexnet::rng::uniform_vec(8 * net.input_len(), 9);
    let y: Vec<usize> = (0..8).map(|i| i % 5).collect();
    let mut opt = Sgd::new(SgdConfig { lr: 0.05, ..SgdConfig::default() }, net.params());
    let first = loss_at(&mut net, &x, &y, Mode::Eval);
    for step in 0..60 {
        net.train_step(&x, &y, 0, step, &mut opt);
    }
    let last = loss_at(&mut net, &x, &y, Mode::Eval);
    assert!(last < 0.5 * first, "loss {first} -> {last}");
}

#[test]
fn lrn_with_a_nonpositive_base_or_non_finite_values_is_refused() {
    for (k, alpha, beta) in [
        (0.0, 1e-4, 0.75),
        (-2.0, 1e-4, 0.75),
        (2.0, -1e-4, 0.75),
        (2.0, 1e-4, -0.75),
        (2.0, f32::NAN, 0.75),
        (f32::INFINITY, 1e-4, 0.75),
    ] {
        let mut m = ModelConfig::variant("cifar").unwrap();
        for l in &mut m.layers {
            if let LayerSpec::Lrn(p) = l {
                (p.k, p.alpha, p.beta) = (k, alpha, beta);
            }
        }
        let err = plan(&m).unwrap_err().to_string();
        assert!(
            err.contains("lrn") && err.contains("needs k > 0, alpha >= 0, beta >= 0"),
            "k {k} alpha {alpha} beta {beta}: {err}"
        );
    }
    plan(&ModelConfig::variant("cifar").unwrap()).unwrap();
}

/// `--conv` and `--precision` set in either order give each convolution the same algorithm:
/// the layer keeps its choice and resolves it again for the precision (paper net: conv1 over
/// phases in f32, by im2col in bf16; conv3-5 F(5x5) in f32 (F(4x4) at one image), F(2x2) in
/// bf16; conv2 by FFT).
#[test]
fn conv_algorithms_follow_the_precision_in_either_order() {
    use alexnet::kernels::conv::{ConvAlgo, ConvChoice};
    use alexnet::kernels::winograd::Tile;
    use alexnet::matmul::{Bf16Kernel, Precision};
    let bf16 = Precision::Bf16(Bf16Kernel::Emulated);
    let algos = |net: &Network| net.conv_algos(1, Mode::Eval).into_iter().map(|(_, a, _)| a).collect::<Vec<_>>();
    let fft = ConvAlgo::Fft { min_batch: alexnet::kernels::conv::FFT_MIN_BATCH };
    let f32_algos = [
        ConvAlgo::Polyphase(Tile::F4),
        fft,
        ConvAlgo::Winograd(Tile::F5),
        ConvAlgo::Winograd(Tile::F5),
        ConvAlgo::Winograd(Tile::F5),
    ];
    let bf16_algos = [
        ConvAlgo::Im2col,
        fft,
        ConvAlgo::Winograd(Tile::F2),
        ConvAlgo::Winograd(Tile::F2),
        ConvAlgo::Winograd(Tile::F2),
    ];
    let mut net = Network::new(ModelConfig::variant("paper").unwrap(), 0).unwrap();
    assert_eq!(algos(&net), f32_algos);
    net.set_precision(bf16);
    assert_eq!(algos(&net), bf16_algos);
    net.set_conv(ConvChoice::Auto);
    assert_eq!(algos(&net), bf16_algos);
    net.set_conv(ConvChoice::Im2col);
    assert_eq!(algos(&net), [ConvAlgo::Im2col; 5]);
    net.set_conv(ConvChoice::Auto);
    net.set_precision(Precision::F32);
    assert_eq!(algos(&net), f32_algos);
}

/// A convolution's transformed kernels (Winograd's, over phases; conv2's FFT spectra from 8
/// images and its F(2x2, 5x5) kernels below) are kept across evaluations and invalidated
/// whenever the layer lends its weights mutably: after every convolution's weights change
/// through `params_mut`, 1 and 8 images by `auto` agree with im2col on the new weights (with
/// kernels kept from before, every layer would compute with the old ones).
#[test]
fn kept_conv_kernels_follow_weight_changes() {
    use alexnet::kernels::conv::ConvChoice;
    let mut net = Network::new(ModelConfig::variant("paper").unwrap(), 5).unwrap();
    let n = net.input_len();
    let x = alexnet::rng::uniform_vec(8 * n, 6);
    let eval = |net: &mut Network| [1, 8].map(|b| net.forward(&x[..b * n], b, Mode::Eval).to_vec());
    let before = eval(&mut net);
    for p in net.params_mut().filter(|p| p.shape.len() == 4) {
        p.data.iter_mut().for_each(|w| *w *= -1.5);
    }
    let after = eval(&mut net);
    net.set_conv(ConvChoice::Im2col);
    let im2col = eval(&mut net);
    for (i, batch) in [1, 8].into_iter().enumerate() {
        assert_ne!(after[i], before[i], "the change moves the logits of {batch} images");
        assert_close(&format!("auto after the change against im2col, {batch} images"), &after[i], &im2col[i], 1e-4);
    }
}

/// One image evaluated with bf16 products reads the fully connected weights in bf16, rounded
/// once and kept: the output agrees with the same image in a batch of two (the weights
/// rounded at every product), and a weight changed through `params_mut` is seen at once.
#[test]
fn one_image_bf16_keeps_rounded_fc_weights_until_they_change() {
    use alexnet::matmul::{Bf16Kernel, Precision};
    let mut net = Network::new(every_layer_config(), 3).unwrap();
    net.set_precision(Precision::Bf16(Bf16Kernel::Emulated));
    let n = net.input_len();
    let x = alexnet::rng::uniform_vec(2 * n, 4);
    let one = |net: &mut Network| net.forward(&x[..n], 1, Mode::Eval).to_vec();
    let first = one(&mut net);
    let pair = net.forward(&x, 2, Mode::Eval).to_vec();
    assert_close("one image against a batch of two", &first, &pair[..first.len()], 1e-4);
    assert_eq!(one(&mut net), first, "the kept weights give the same output again");
    // And the bf16 path was taken: f32 products give other values (by ~1e-3, bf16's rounding).
    net.set_precision(Precision::F32);
    assert_ne!(one(&mut net), first, "bf16 differs from f32");
    net.set_precision(Precision::Bf16(Bf16Kernel::Emulated));
    let last = net.params_mut().filter(|p| !p.is_bias).last().unwrap();
    last.data.iter_mut().for_each(|w| *w *= 2.0);
    let changed = one(&mut net);
    let pair = net.forward(&x, 2, Mode::Eval).to_vec();
    assert_ne!(changed, first, "the changed weights are used");
    assert_close("after the change", &changed, &pair[..changed.len()], 1e-4);
}
