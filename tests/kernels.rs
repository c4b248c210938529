//! Every kernel against a direct implementation on small random cases, and its backward
//! against central finite differences of `L = Σ f(x)·r` for a random upstream `r`.

mod common;
use alexnet::kernels::conv::{self, ConvShape};
use alexnet::kernels::dropout::{self, DropoutMode};
use alexnet::kernels::lrn::{self, LrnConvention, LrnParams};
use alexnet::kernels::pool::{self, PoolShape};
use alexnet::kernels::{act, linear, loss};
use alexnet::matmul::Precision;
use alexnet::rng::uniform_vec;
use common::{assert_close, numeric_grad};

/// A layer with `k×k` kernels on `in_c` planes of `in_h×in_w`.
fn conv_shape(
    in_c: usize,
    (in_h, in_w): (usize, usize),
    out_c: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
) -> ConvShape {
    ConvShape { in_c, in_h, in_w, out_c, kh: k, kw: k, stride, pad, groups }
}

fn conv_cases() -> Vec<ConvShape> {
    let mk =
        |in_c, in_h, in_w, out_c, k, stride, pad, groups| conv_shape(in_c, (in_h, in_w), out_c, k, stride, pad, groups);
    vec![
        mk(3, 19, 19, 4, 11, 4, 0, 1), // conv1-like, stride 4
        mk(3, 17, 15, 6, 11, 4, 2, 1), // torchvision conv1: stride 4 with padding, non-square
        mk(4, 9, 9, 6, 5, 1, 2, 2),    // conv2-like: pad 2, two groups
        mk(6, 7, 7, 6, 3, 1, 1, 3),    // three groups
        mk(3, 11, 10, 4, 7, 2, 1, 1),  // ZFNet conv1: 7x7 stride 2
        mk(2, 8, 8, 4, 5, 2, 0, 2),    // stride 2, groups, no pad
        mk(2, 3, 3, 2, 5, 1, 2, 1),    // kernel larger than the input
        mk(3, 5, 5, 2, 1, 1, 0, 1),    // 1x1
    ]
}

#[test]
fn conv_forward_matches_direct() {
    // One image: fewer than threads, so the products and im2col are split across the pool.
    for (s, b) in conv_cases().into_iter().flat_map(|s| [(s, 3), (s, 1)]) {
        let x = uniform_vec(b * s.in_len(), 1);
        let w = uniform_vec(s.weight_len(), 2);
        let bias = uniform_vec(s.out_c, 3);
        let mut y = vec![0.0; b * s.out_len()];
        conv::forward(&s, &x, &w, &bias, &mut y, b);
        assert_close(&format!("{s:?}"), &y, &conv::forward_naive(&s, &x, &w, &bias, b), 1e-5);
    }
}

#[test]
fn conv_backward_matches_finite_differences() {
    for s in conv_cases() {
        let b = 2;
        let x = uniform_vec(b * s.in_len(), 4);
        let w = uniform_vec(s.weight_len(), 5);
        let bias = uniform_vec(s.out_c, 6);
        let r = uniform_vec(b * s.out_len(), 7);
        let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; bias.len()], vec![0.0; x.len()]);
        conv::backward(&s, &x, &w, &r, &mut dw, &mut db, Some(&mut dx), b);
        let fwd = |x: &[f32], w: &[f32], bias: &[f32]| {
            let mut y = vec![0.0; b * s.out_len()];
            conv::forward(&s, x, w, bias, &mut y, b);
            y
        };
        let eps = 1e-2;
        assert_close(&format!("dx {s:?}"), &dx, &numeric_grad(&x, &r, eps, |x| fwd(x, &w, &bias)), 1e-3);
        assert_close(&format!("dw {s:?}"), &dw, &numeric_grad(&w, &r, eps, |w| fwd(&x, w, &bias)), 1e-3);
        assert_close(&format!("db {s:?}"), &db, &numeric_grad(&bias, &r, eps, |bb| fwd(&x, &w, bb)), 1e-3);
        // Without dx the weight gradients are the same.
        let (mut dw2, mut db2) = (vec![0.0; w.len()], vec![0.0; bias.len()]);
        conv::backward(&s, &x, &w, &r, &mut dw2, &mut db2, None, b);
        assert_eq!(dw, dw2);
        assert_eq!(db, db2);
    }
}

#[test]
fn conv_backward_does_not_depend_on_batch_split_beyond_rounding() {
    let s = ConvShape { in_c: 4, in_h: 9, in_w: 9, out_c: 6, kh: 5, kw: 5, stride: 1, pad: 2, groups: 2 };
    let b = 7;
    let x = uniform_vec(b * s.in_len(), 1);
    let w = uniform_vec(s.weight_len(), 2);
    let r = uniform_vec(b * s.out_len(), 3);
    let run = |threads| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            let (mut dw, mut db) = (vec![0.0; w.len()], vec![0.0; s.out_c]);
            conv::backward(&s, &x, &w, &r, &mut dw, &mut db, None, b);
            dw
        })
    };
    assert_close("1 vs 3 threads", &run(1), &run(3), 1e-6);
}

/// Winograd on the 3x3 stride-1 layers of the AlexNet variants, at their real sizes: forward
/// against the direct f64-accumulated convolution, data and weight gradients against im2col's, relative
/// error at most 1e-4 (the bound; F(4x4) measures ~1e-6), on 1 and 2 images and 1 and
/// 2 threads (batch < threads takes the one-image path that splits each block's work).
#[test]
fn winograd_on_alexnets_own_layers() {
    use alexnet::kernels::winograd::Tile;
    let mk = |in_c, hw, out_c, groups| ConvShape {
        in_c,
        in_h: hw,
        in_w: hw,
        out_c,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 1,
        groups,
    };
    let five = |s: ConvShape| ConvShape { kh: 5, kw: 5, pad: 2, ..s };
    let cases = [
        ("paper conv2", five(mk(96, 27, 256, 2))),
        ("paper conv3", mk(256, 13, 384, 1)),
        ("paper conv4", mk(384, 13, 384, 2)),
        ("alexnet64 conv5", mk(384, 7, 256, 2)),
        ("cifar conv3", mk(64, 8, 96, 1)),
    ];
    for (name, s) in cases {
        // (3, 4): fewer images than threads, several of them: the path that splits each block.
        for (batch, threads) in [(1, 2), (2, 1), (3, 2), (3, 4), (4, 2)] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                // Activations after a ReLU are non-negative; weights ~N(0, 0.01)-like in scale.
                let x: Vec<f32> = uniform_vec(batch * s.in_len(), 11).iter().map(|v| v.abs()).collect();
                let w: Vec<f32> = uniform_vec(s.weight_len(), 12).iter().map(|v| v * 0.02).collect();
                let bias = uniform_vec(s.out_c, 13);
                let direct = conv::forward_naive(&s, &x, &w, &bias, batch);
                let dy = uniform_vec(batch * s.out_len(), 14);
                let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; s.out_c], vec![0.0; x.len()]);
                conv::backward(&s, &x, &w, &dy, &mut dw, &mut db, Some(&mut dx), batch);
                for tile in [Tile::F2, Tile::F4, Tile::F5].into_iter().filter(|t| t.fits(s.kh)) {
                    let what = format!("{name} {tile:?} batch {batch} threads {threads}");
                    let inputs = (&x[..], &w[..], &bias[..], &dy[..]);
                    let want = (&direct[..], &dx[..], &dw[..], &db[..]);
                    assert_winograd_matches(&what, &s, inputs, want, batch, tile, 1e-4);
                }
            });
        }
    }
}

/// Winograd at training batches, where each thread's run of images is cut into several blocks
/// (F(5×5)'s 9 tiles an image: 31 images a thread make blocks of 16 and 15, 144 and 135 tiles,
/// the second ending in a ragged group of lanes): every tile against im2col, forward and both
/// gradients, on a 13×13 map with few channels so that it stays quick.
#[test]
fn winograd_in_several_blocks_a_thread() {
    use alexnet::kernels::winograd::Tile;
    let s = ConvShape { in_c: 8, in_h: 13, in_w: 13, out_c: 6, kh: 3, kw: 3, stride: 1, pad: 1, groups: 2 };
    let batch = 62;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    pool.install(|| {
        let x: Vec<f32> = uniform_vec(batch * s.in_len(), 41).iter().map(|v| v.abs()).collect();
        let w: Vec<f32> = uniform_vec(s.weight_len(), 42).iter().map(|v| v * 0.1).collect();
        let bias = uniform_vec(s.out_c, 43);
        let dy = uniform_vec(batch * s.out_len(), 44);
        let mut y = vec![0.0; batch * s.out_len()];
        conv::forward(&s, &x, &w, &bias, &mut y, batch);
        let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; s.out_c], vec![0.0; x.len()]);
        conv::backward(&s, &x, &w, &dy, &mut dw, &mut db, Some(&mut dx), batch);
        for tile in [Tile::F4, Tile::F5] {
            let inputs = (&x[..], &w[..], &bias[..], &dy[..]);
            assert_winograd_matches(&format!("{tile:?}"), &s, inputs, (&y, &dx, &dw, &db), batch, tile, 1e-5);
        }
    });
}

/// Four slices: the inputs `(x, w, bias, dy)` or the references `(y, dx, dw, db)` of a convolution.
type Four<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32]);

/// Winograd's forward and both gradients by `tile` from `(x, w, bias, dy)` against the reference
/// `(y, dx, dw, db)`: relative error at most `tol`, the bias gradient's at most 1e-5.
fn assert_winograd_matches(
    what: &str,
    s: &ConvShape,
    (x, w, bias, dy): Four<'_>,
    (y, dx, dw, db): Four<'_>,
    batch: usize,
    tile: alexnet::kernels::winograd::Tile,
    tol: f64,
) {
    use alexnet::kernels::winograd;
    let mut yw = vec![f32::NAN; y.len()];
    winograd::forward(s, x, w, bias, &mut yw, batch, tile, Precision::F32);
    assert_close(&format!("{what} forward"), &yw, y, tol);
    let mut dxw = vec![f32::NAN; dx.len()];
    winograd::backward_data(s, w, dy, &mut dxw, batch, tile, Precision::F32);
    assert_close(&format!("{what} data gradient"), &dxw, dx, tol);
    let (mut dww, mut dbw) = (vec![f32::NAN; w.len()], vec![f32::NAN; s.out_c]);
    winograd::backward_weights(s, x, dy, &mut dww, &mut dbw, batch, tile, Precision::F32);
    assert_close(&format!("{what} weight gradient"), &dww, dw, tol);
    assert_close(&format!("{what} bias gradient"), &dbw, db, 1e-5);
}

/// FFT convolution against the direct kernels: forward against the f64-accumulated direct
/// convolution, data and weight gradients against im2col's (themselves held to finite
/// differences above), relative error at most 1e-4, on AlexNet's 5×5 layers at their real
/// sizes and on odd shapes (non-square, 3×3 and 7×7 kernels, no padding, groups), on batches
/// that do and do not fill the 8 lanes, on 1 and 2 threads.
#[test]
fn fft_on_alexnets_own_layers_and_odd_shapes() {
    use alexnet::kernels::fft;
    let mk = |in_c, (in_h, in_w), out_c, k, pad, groups| ConvShape {
        in_c,
        in_h,
        in_w,
        out_c,
        kh: k,
        kw: k,
        stride: 1,
        pad,
        groups,
    };
    let cases = [
        ("paper conv2", mk(96, (27, 27), 256, 5, 2, 2), vec![2, 9]),
        ("torchvision conv2", mk(64, (27, 27), 192, 5, 2, 1), vec![1]),
        ("two groups, 9x9", mk(4, (9, 9), 6, 5, 2, 2), vec![1, 3, 8, 17]),
        ("non-square 3x3", mk(3, (11, 7), 4, 3, 1, 1), vec![5]),
        ("7x7 pad 3, N = 32", mk(5, (13, 13), 3, 7, 3, 1), vec![2]),
        ("5x5 no padding", mk(2, (12, 12), 3, 5, 0, 1), vec![10]),
        ("three groups, odd map", mk(6, (15, 15), 9, 5, 1, 3), vec![4]),
    ];
    for (name, s, batches) in cases {
        assert!(fft::applies(&s), "{name}");
        for (batch, threads) in batches.into_iter().flat_map(|b| [(b, 1), (b, 2)]) {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let x: Vec<f32> = uniform_vec(batch * s.in_len(), 21).iter().map(|v| v.abs()).collect();
                let w: Vec<f32> = uniform_vec(s.weight_len(), 22).iter().map(|v| v * 0.02).collect();
                let bias = uniform_vec(s.out_c, 23);
                let dy = uniform_vec(batch * s.out_len(), 24);
                let what = format!("{name} batch {batch} threads {threads}");
                let mut y = vec![f32::NAN; batch * s.out_len()];
                fft::forward(&s, &x, &w, &bias, &mut y, batch);
                let direct = if s.in_c >= 64 {
                    let mut y2 = vec![0.0; y.len()];
                    conv::forward(&s, &x, &w, &bias, &mut y2, batch);
                    y2
                } else {
                    conv::forward_naive(&s, &x, &w, &bias, batch)
                };
                assert_close(&format!("{what} forward"), &y, &direct, 1e-4);
                let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; s.out_c], vec![0.0; x.len()]);
                conv::backward(&s, &x, &w, &dy, &mut dw, &mut db, Some(&mut dx), batch);
                let mut spectra = Vec::new();
                fft::kernel_spectra(&s, &w, &mut spectra);
                let nan = |k: usize| vec![f32::NAN; k];
                let (mut dwf, mut dbf, mut dxf) = (nan(w.len()), nan(s.out_c), nan(x.len()));
                fft::backward(&s, &x, &spectra, &dy, &mut dwf, &mut dbf, Some(&mut dxf), batch);
                assert_close(&format!("{what} data gradient"), &dxf, &dx, 1e-4);
                assert_close(&format!("{what} weight gradient"), &dwf, &dw, 1e-4);
                assert_close(&format!("{what} bias gradient"), &dbf, &db, 1e-5);
            });
        }
    }
}

/// Strided layers by Winograd over their phases, against the direct kernels: forward against
/// the direct convolution (im2col's on the full-size layers), every gradient against im2col's,
/// relative error at most 1e-4; the paper's and torchvision's conv1 at full size, and odd
/// shapes (non-square, padding, groups, strides 2 and 3).
#[test]
fn polyphase_winograd_on_strided_layers() {
    use alexnet::kernels::polyphase;
    use alexnet::kernels::winograd::{KernelCache, Tile};
    let mk = conv_shape;
    let cases = [
        ("paper conv1", mk(3, (227, 227), 96, 11, 4, 0, 1), 2),
        ("torchvision conv1", mk(3, (224, 224), 64, 11, 4, 2, 1), 1),
        ("small conv1", mk(3, (19, 19), 4, 11, 4, 0, 1), 3),
        ("non-square, padded", mk(2, (17, 15), 6, 11, 4, 2, 1), 5),
        ("two groups", mk(4, (23, 23), 6, 11, 4, 1, 2), 4),
        ("5x5 stride 2", mk(3, (15, 15), 4, 5, 2, 2, 1), 3),
        ("9x9 stride 3", mk(2, (20, 20), 3, 9, 3, 1, 1), 2),
    ];
    for (name, s, batch) in cases {
        assert!(polyphase::applies(&s), "{name}");
        for (tile, threads) in [(Tile::F2, 1), (Tile::F4, 2), (Tile::F4, 1), (Tile::F5, 2)] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let x = uniform_vec(batch * s.in_len(), 31);
                let w: Vec<f32> = uniform_vec(s.weight_len(), 32).iter().map(|v| v * 0.05).collect();
                let bias = uniform_vec(s.out_c, 33);
                let dy = uniform_vec(batch * s.out_len(), 34);
                let what = format!("{name} {tile:?} threads {threads}");
                let direct = if s.in_h > 100 {
                    let mut y2 = vec![0.0; batch * s.out_len()];
                    conv::forward(&s, &x, &w, &bias, &mut y2, batch);
                    y2
                } else {
                    conv::forward_naive(&s, &x, &w, &bias, batch)
                };
                let mut y = vec![f32::NAN; direct.len()];
                polyphase::forward(&s, &x, &w, &bias, &mut y, batch, tile, Precision::F32, &mut KernelCache::default());
                assert_close(&format!("{what} forward"), &y, &direct, 1e-4);
                let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; s.out_c], vec![0.0; x.len()]);
                conv::backward(&s, &x, &w, &dy, &mut dw, &mut db, Some(&mut dx), batch);
                let nan = |k: usize| vec![f32::NAN; k];
                let (mut dwp, mut dbp, mut dxp) = (nan(w.len()), nan(s.out_c), nan(x.len()));
                polyphase::backward(&s, &x, &w, &dy, &mut dwp, &mut dbp, Some(&mut dxp), batch, tile, Precision::F32);
                assert_close(&format!("{what} data gradient"), &dxp, &dx, 1e-4);
                assert_close(&format!("{what} weight gradient"), &dwp, &dw, 1e-4);
                assert_close(&format!("{what} bias gradient"), &dbp, &db, 1e-5);
            });
        }
    }
}

/// `--conv auto` picks Winograd where it saves multiplies on wide layers, with the tile that
/// saves more, and im2col elsewhere.
#[test]
fn conv_choice_resolves_by_shape() {
    use alexnet::kernels::conv::{ConvAlgo, ConvChoice};
    use alexnet::kernels::winograd::Tile;
    let s = |in_c, hw, k, stride| ConvShape {
        in_c,
        in_h: hw,
        in_w: hw,
        out_c: 64,
        kh: k,
        kw: k,
        stride,
        pad: k / 2,
        groups: 1,
    };
    // 13×13 (conv3-5): F(5×5), 3 tiles a side (F(4×4) takes 4); from 8 images a thread,
    // F(4×4) below, in both modes. Maps that F(4×4) tiles better (8×8, 16×16), or fewer than 64
    // input channels a group: F(4×4).
    let f5 = ConvChoice::Auto.resolve(&s(256, 13, 3, 1));
    assert_eq!(f5, ConvAlgo::Winograd(Tile::F5));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    pool.install(|| {
        let c3 = s(256, 13, 3, 1);
        let below = 2 * (conv::F5_MIN_IMAGES_A_THREAD - 1);
        for (batch, want) in
            [(64, f5), (below + 1, f5), (below, ConvAlgo::Winograd(Tile::F4)), (1, ConvAlgo::Winograd(Tile::F4))]
        {
            assert_eq!(f5.for_batch(batch.max(conv::WINOGRAD_MIN_BATCH)), want, "{batch}");
            assert_eq!(f5.for_eval(&c3, batch, Precision::F32), want, "{batch}");
        }
    });
    assert_eq!(ConvChoice::Auto.resolve(&s(256, 8, 3, 1)), ConvAlgo::Winograd(Tile::F4));
    assert_eq!(ConvChoice::Auto.resolve(&s(256, 16, 3, 1)), ConvAlgo::Winograd(Tile::F4));
    assert_eq!(ConvChoice::Winograd.resolve(&s(48, 13, 3, 1)), ConvAlgo::Winograd(Tile::F4));
    assert_eq!(ConvChoice::Auto.resolve(&s(256, 2, 3, 1)), ConvAlgo::Winograd(Tile::F2));
    // 5×5 by FFT (conv2), from 8 images; in training by F(2×2, 5×5) only when asked for:
    // measured slower than im2col on conv2. Evaluation below 8 images: F(2×2, 5×5) in f32 (its
    // kernels kept), im2col with bf16 products and where Winograd does not apply (7×7).
    let auto_fft = ConvAlgo::Fft { min_batch: conv::FFT_MIN_BATCH };
    let (conv2, seven) = (s(48, 27, 5, 1), s(48, 27, 7, 1));
    assert_eq!(ConvChoice::Auto.resolve(&conv2), auto_fft);
    assert_eq!(ConvChoice::Winograd.resolve(&conv2), ConvAlgo::Winograd(Tile::F2));
    assert_eq!(ConvChoice::Auto.resolve(&seven), auto_fft);
    assert_eq!(
        (auto_fft.for_batch(7), auto_fft.for_eval(&conv2, 7, Precision::F32), auto_fft.for_batch(8)),
        (ConvAlgo::Im2col, ConvAlgo::Winograd(Tile::F2), auto_fft)
    );
    assert_eq!(auto_fft.for_eval(&conv2, 8, Precision::F32), auto_fft);
    assert_eq!(auto_fft.for_eval(&seven, 1, Precision::F32), ConvAlgo::Im2col);
    // Too few input channels, stride 2, maps beyond 64: not by FFT; asked for, at any batch.
    assert_eq!(ConvChoice::Auto.resolve(&s(3, 27, 5, 1)), ConvAlgo::Im2col);
    assert_eq!(ConvChoice::Auto.resolve(&s(48, 61, 5, 1)), ConvAlgo::Im2col);
    assert_eq!(ConvChoice::Fft.resolve(&s(3, 27, 5, 1)), ConvAlgo::Fft { min_batch: 1 });
    assert_eq!(ConvChoice::Fft.resolve(&s(3, 27, 5, 2)), ConvAlgo::Im2col);
    assert_eq!(
        ConvChoice::Fft.resolve(&s(256, 13, 3, 1)).for_eval(&s(256, 13, 3, 1), 1, Precision::F32),
        ConvAlgo::Fft { min_batch: 1 }
    );
    assert_eq!(ConvChoice::Auto.resolve(&s(256, 13, 3, 2)), ConvAlgo::Im2col);
    // In evaluation Winograd runs at any batch in f32 (its kernels kept), from
    // WINOGRAD_MIN_BATCH images with bf16 products, as in training.
    let conv3 = ConvChoice::Auto.resolve(&s(256, 13, 3, 1));
    let bf16 = Precision::Bf16(alexnet::matmul::Bf16Kernel::Emulated);
    let c3 = s(256, 13, 3, 1);
    assert_eq!(conv3.for_eval(&c3, 1, Precision::F32), ConvAlgo::Winograd(Tile::F4));
    assert_eq!(conv3.for_eval(&c3, conv::WINOGRAD_MIN_BATCH - 1, bf16), ConvAlgo::Im2col);
    assert_eq!(conv3.for_eval(&c3, conv::WINOGRAD_MIN_BATCH, bf16), ConvAlgo::Winograd(Tile::F4));
    assert_eq!(auto_fft.for_eval(&conv2, 1, bf16), ConvAlgo::Im2col);
    // conv1 (11×11 by 4): Winograd over its 48 phases.
    let conv1 = ConvShape { in_c: 3, in_h: 227, in_w: 227, out_c: 96, kh: 11, kw: 11, stride: 4, pad: 0, groups: 1 };
    assert_eq!(ConvChoice::Winograd.resolve_in(&conv1, bf16).for_eval(&conv1, 1, bf16), ConvAlgo::Im2col);
    assert_eq!(ConvChoice::Auto.resolve(&conv1), ConvAlgo::Polyphase(Tile::F4));
    assert_eq!(ConvChoice::Im2col.resolve(&conv1), ConvAlgo::Im2col);
    assert_eq!(ConvChoice::Fft.resolve(&conv1), ConvAlgo::Im2col);
    assert_eq!(ConvChoice::Auto.resolve(&s(3, 32, 3, 1)), ConvAlgo::Im2col);
    assert_eq!(ConvChoice::Winograd.resolve(&s(3, 32, 3, 1)), ConvAlgo::Winograd(Tile::F4));
    assert_eq!(ConvChoice::Winograd.resolve(&s(3, 32, 5, 1)), ConvAlgo::Winograd(Tile::F2));
    // 5×5 by 2: 3×3 kernels over 12 phases, by Winograd when asked for, too narrow for auto.
    assert_eq!(ConvChoice::Winograd.resolve(&s(3, 32, 5, 2)), ConvAlgo::Polyphase(Tile::F4));
    assert_eq!(ConvChoice::Auto.resolve(&s(3, 32, 5, 2)), ConvAlgo::Im2col);
    assert_eq!(ConvChoice::Winograd.resolve(&s(3, 32, 7, 2)), ConvAlgo::Im2col);
    assert_eq!(ConvChoice::Im2col.resolve(&s(256, 13, 3, 1)), ConvAlgo::Im2col);
    // bf16 products: F(2×2) tiles (less rounding), conv1 by im2col unless Winograd is asked
    // for, FFT and f32 as before.
    let bf16 = Precision::Bf16(alexnet::matmul::Bf16Kernel::Emulated);
    assert_eq!(ConvChoice::Auto.resolve_in(&s(256, 13, 3, 1), bf16), ConvAlgo::Winograd(Tile::F2));
    assert_eq!(ConvChoice::Auto.resolve_in(&conv1, bf16), ConvAlgo::Im2col);
    assert_eq!(ConvChoice::Winograd.resolve_in(&conv1, bf16), ConvAlgo::Polyphase(Tile::F2));
    assert_eq!(ConvChoice::Auto.resolve_in(&s(48, 27, 5, 1), bf16), auto_fft);
    assert_eq!(ConvChoice::Auto.resolve_in(&conv1, Precision::F32), ConvAlgo::Polyphase(Tile::F4));
    // A 3×3 map: F(4×4) saves a third of the multiplies there, F(2×2) does not (64 against 81).
    assert_eq!(ConvChoice::Auto.resolve_in(&s(256, 3, 3, 1), Precision::F32), ConvAlgo::Winograd(Tile::F4));
    assert_eq!(ConvChoice::Auto.resolve_in(&s(256, 3, 3, 1), bf16), ConvAlgo::Im2col);
    assert_eq!(ConvChoice::Winograd.resolve_in(&s(256, 3, 3, 1), bf16), ConvAlgo::Winograd(Tile::F2));
}

fn maxpool_naive(s: &PoolShape, x: &[f32], planes: usize) -> Vec<f32> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut y = Vec::new();
    for p in 0..planes {
        for i in 0..oh {
            for j in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for a in 0..s.kernel {
                    for b in 0..s.kernel {
                        let (yy, xx) = (
                            (i * s.stride + a) as isize - s.pad as isize,
                            (j * s.stride + b) as isize - s.pad as isize,
                        );
                        if yy >= 0 && xx >= 0 && (yy as usize) < s.in_h && (xx as usize) < s.in_w {
                            m = m.max(x[p * s.in_h * s.in_w + yy as usize * s.in_w + xx as usize]);
                        }
                    }
                }
                y.push(m);
            }
        }
    }
    y
}

#[test]
fn maxpool_forward_and_backward() {
    let cases =
        [(13, 13, 3, 2, 0), (27, 27, 3, 2, 0), (8, 9, 2, 2, 0), (10, 10, 3, 2, 1), (7, 7, 3, 1, 1), (5, 6, 3, 3, 0)];
    for (h, w, k, st, pad) in cases {
        let s = PoolShape { c: 3, in_h: h, in_w: w, kernel: k, stride: st, pad };
        let planes = 2 * s.c;
        let x = uniform_vec(planes * h * w, 11);
        let mut y = vec![0.0; planes * s.out_h() * s.out_w()];
        let mut arg = vec![0u32; y.len()];
        pool::max_forward(&s, &x, &mut y, &mut arg, planes);
        assert_eq!(y, maxpool_naive(&s, &x, planes), "{s:?}");
        let r = uniform_vec(y.len(), 12);
        let mut dx = vec![0.0; x.len()];
        pool::max_backward(&s, &r, &arg, &mut dx, planes);
        let num = numeric_grad(&x, &r, 1e-4, |x| maxpool_naive(&s, x, planes));
        assert_close(&format!("maxpool dx {s:?}"), &dx, &num, 1e-2);
    }
}

#[test]
fn maxpool_ties_go_to_the_first_maximum_and_nan_propagates() {
    let s = PoolShape { c: 1, in_h: 3, in_w: 3, kernel: 3, stride: 1, pad: 0 };
    let x = vec![0.0, 5.0, 1.0, 5.0, 2.0, 5.0, 0.0, 0.0, 0.0];
    let (mut y, mut arg) = (vec![0.0], vec![0u32]);
    pool::max_forward(&s, &x, &mut y, &mut arg, 1);
    assert_eq!((y[0], arg[0]), (5.0, 1));
    let x = vec![0.0, 5.0, f32::NAN, 5.0, 2.0, 5.0, 0.0, 0.0, 0.0];
    pool::max_forward(&s, &x, &mut y, &mut arg, 1);
    assert!(y[0].is_nan());
}

/// Each window's winner as PyTorch's CPU kernel picks it, scanning in row-major order and
/// taking a value that is greater or NaN: the first maximum, or the last NaN;
/// `(value, index in the plane)` per output.
fn maxpool_naive_arg(s: &PoolShape, x: &[f32], planes: usize) -> Vec<(u32, u32)> {
    let (oh, ow, plane) = (s.out_h(), s.out_w(), s.in_h * s.in_w);
    let mut out = Vec::new();
    for p in 0..planes {
        for i in 0..oh {
            for j in 0..ow {
                let mut best: Option<(f32, usize)> = None;
                for a in 0..s.kernel {
                    for b in 0..s.kernel {
                        let (yy, xx) = ((i * s.stride + a).checked_sub(s.pad), (j * s.stride + b).checked_sub(s.pad));
                        let (Some(yy), Some(xx)) = (yy, xx) else { continue };
                        if yy >= s.in_h || xx >= s.in_w {
                            continue;
                        }
                        let v = x[p * plane + yy * s.in_w + xx];
                        let wins = match best {
                            None => true,
                            Some((m, _)) => v.is_nan() || v > m,
                        };
                        if wins {
                            best = Some((v, yy * s.in_w + xx));
                        }
                    }
                }
                let (v, at) = best.unwrap();
                out.push((v.to_bits(), at as u32));
            }
        }
    }
    out
}

/// ReLU-like planes (a third zeros, many ties) with a few NaNs, on widths whose outputs fill
/// whole vectors, end in a partial one, or are fewer than one: values and winners as PyTorch's.
#[test]
fn maxpool_winners_on_ties_and_nans_at_every_width() {
    let nan_first = |m: f32| if m.is_nan() { f32::NAN } else { m };
    for (h, w, k, st, pad) in [
        (20, 17, 3, 2, 0),
        (27, 27, 3, 2, 0),
        (9, 55, 3, 2, 0),
        (6, 13, 3, 2, 0),
        (7, 30, 2, 2, 0),
        (5, 40, 3, 1, 0),
        (8, 21, 3, 3, 0),
        (8, 27, 3, 3, 0),
        (9, 31, 3, 2, 1),
    ] {
        let s = PoolShape { c: 2, in_h: h, in_w: w, kernel: k, stride: st, pad };
        let planes = 3 * s.c;
        let mut x: Vec<f32> = uniform_vec(planes * h * w, 21).iter().map(|&v| (v * 4.0).round().max(0.0)).collect();
        // Single NaNs, and pairs side by side and one row apart (two in a window: the last wins).
        for i in (0..x.len()).step_by(37) {
            x[i] = f32::NAN;
        }
        for i in (5..x.len() - w - 1).step_by(53) {
            x[i + 1] = f32::NAN;
            x[i + w] = f32::NAN;
        }
        let mut y = vec![0.0; planes * s.out_h() * s.out_w()];
        let mut arg = vec![0u32; y.len()];
        pool::max_forward(&s, &x, &mut y, &mut arg, planes);
        let got: Vec<(u32, u32)> = y.iter().zip(&arg).map(|(&v, &a)| (nan_first(v).to_bits(), a)).collect();
        let want: Vec<(u32, u32)> = maxpool_naive_arg(&s, &x, planes)
            .into_iter()
            .map(|(v, a)| (nan_first(f32::from_bits(v)).to_bits(), a))
            .collect();
        assert_eq!(got, want, "{s:?}");
    }
}

#[test]
fn adaptive_avg_pool_forward_and_backward() {
    for (ih, iw, oh, ow) in [(6, 6, 6, 6), (13, 13, 6, 6), (5, 7, 3, 2), (2, 2, 6, 6)] {
        let planes = 3;
        let x = uniform_vec(planes * ih * iw, 21);
        let f = |x: &[f32]| {
            let mut y = vec![0.0; planes * oh * ow];
            pool::adaptive_avg_forward((ih, iw), (oh, ow), x, &mut y, planes);
            y
        };
        // Direct: PyTorch's start = floor(i*H/OH), end = ceil((i+1)*H/OH).
        let mut naive = Vec::new();
        for p in 0..planes {
            for i in 0..oh {
                for j in 0..ow {
                    let (y0, y1) = ((i * ih) / oh, ((i + 1) * ih).div_ceil(oh));
                    let (x0, x1) = ((j * iw) / ow, ((j + 1) * iw).div_ceil(ow));
                    let mut s = 0.0;
                    for yy in y0..y1 {
                        for xx in x0..x1 {
                            s += x[p * ih * iw + yy * iw + xx];
                        }
                    }
                    naive.push(s / ((y1 - y0) * (x1 - x0)) as f32);
                }
            }
        }
        assert_close("avgpool forward", &f(&x), &naive, 1e-6);
        let r = uniform_vec(planes * oh * ow, 22);
        let mut dx = vec![0.0; x.len()];
        pool::adaptive_avg_backward((ih, iw), (oh, ow), &r, &mut dx, planes);
        assert_close("avgpool dx", &dx, &numeric_grad(&x, &r, 1e-2, f), 1e-3);
    }
}

#[test]
fn lrn_forward_and_backward_both_conventions() {
    for convention in [LrnConvention::AlphaOverN, LrnConvention::Paper] {
        for (size, alpha, beta, k) in
            [(5, 1e-4, 0.75, 2.0), (3, 0.05, 0.75, 1.0), (4, 0.02, 0.6, 1.5), (5, 0.1, 0.75, 2.0), (1, 0.1, 0.5, 1.0)]
        {
            let p = LrnParams { size, alpha, beta, k, convention };
            let (b, c, plane) = (2, 7, 6);
            // Large inputs so the normaliser is far from k and the nonlinearity is exercised.
            let x: Vec<f32> = uniform_vec(b * c * plane, 31).iter().map(|v| v * 8.0).collect();
            let f = |x: &[f32]| {
                let (mut y, mut s) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                lrn::forward(&p, x, &mut y, &mut s, b, c, plane);
                y
            };
            let y = f(&x);
            assert_close(&format!("lrn {p:?}"), &y, &lrn::forward_naive(&p, &x, b, c, plane), 1e-6);
            // One image (fewer than threads): its channels split across the pool.
            let (mut y1, mut s1) = (vec![0.0; c * plane], vec![0.0; c * plane]);
            lrn::forward(&p, &x[..c * plane], &mut y1, &mut s1, 1, c, plane);
            assert_close(&format!("lrn one image {p:?}"), &y1, &y[..c * plane], 1e-7);
            let mut s = vec![0.0; x.len()];
            lrn::forward(&p, &x, &mut vec![0.0; x.len()], &mut s, b, c, plane);
            let r = uniform_vec(x.len(), 32);
            let mut dx = vec![0.0; x.len()];
            lrn::backward(&p, &x, &y, &s, &r, &mut dx, b, c, plane);
            assert_close(&format!("lrn dx {p:?}"), &dx, &numeric_grad(&x, &r, 1e-2, f), 1e-3);
        }
    }
}

#[test]
fn lrn_conventions_differ_by_n() {
    let x = uniform_vec(2 * 5 * 3, 1).iter().map(|v| v * 10.0).collect::<Vec<_>>();
    let a = LrnParams { convention: LrnConvention::Paper, alpha: 1e-3, ..LrnParams::paper() };
    let b = LrnParams { convention: LrnConvention::AlphaOverN, alpha: 5e-3, ..LrnParams::paper() };
    assert_close(
        "alpha vs 5·alpha/5",
        &lrn::forward_naive(&a, &x, 2, 5, 3),
        &lrn::forward_naive(&b, &x, 2, 5, 3),
        1e-6,
    );
}

#[test]
fn activations_backward() {
    // Kept away from ReLU's kink at 0, where finite differences are meaningless.
    let x: Vec<f32> = uniform_vec(300, 41).iter().map(|&v| v + 0.05 * v.signum()).collect();
    let r = uniform_vec(300, 42);
    let relu = |x: &[f32]| {
        let mut y = vec![0.0; x.len()];
        act::relu_forward(x, &mut y);
        y
    };
    let tanh = |x: &[f32]| {
        let mut y = vec![0.0; x.len()];
        act::tanh_forward(x, &mut y);
        y
    };
    assert!(relu(&x).iter().zip(&x).all(|(&y, &x)| y == x.max(0.0)));
    assert!(tanh(&x).iter().zip(&x).all(|(&y, &x)| y == x.tanh()));
    let mut dx = vec![0.0; 300];
    act::relu_backward(&relu(&x), &r, &mut dx);
    assert_close("relu dx", &dx, &numeric_grad(&x, &r, 1e-3, relu), 1e-3);
    act::tanh_backward(&tanh(&x), &r, &mut dx);
    assert_close("tanh dx", &dx, &numeric_grad(&x, &r, 1e-3, tanh), 1e-3);
}

#[test]
fn linear_forward_and_backward() {
    // The last two split the products into blocks of 512 rows (matmul_row_blocks): 600
    // outputs (y and dw), 600 inputs (dx).
    for (b, i, o) in [(5, 13, 7), (2, 11, 600), (2, 600, 3)] {
        let x = uniform_vec(b * i, 51);
        let w = uniform_vec(o * i, 52);
        let bias = uniform_vec(o, 53);
        let f = |x: &[f32], w: &[f32], bias: &[f32]| {
            let mut y = vec![0.0; b * o];
            linear::forward(x, w, bias, &mut y, b, i, o, Precision::F32);
            y
        };
        let naive: Vec<f32> = (0..b * o)
            .map(|n| bias[n % o] + (0..i).map(|k| x[n / o * i + k] * w[n % o * i + k]).sum::<f32>())
            .collect();
        assert_close("linear", &f(&x, &w, &bias), &naive, 1e-6);
        let r = uniform_vec(b * o, 54);
        let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; o], vec![0.0; x.len()]);
        linear::backward(&x, &w, &r, &mut dw, &mut db, Some(&mut dx), b, i, o, Precision::F32);
        assert_close("linear dx", &dx, &numeric_grad(&x, &r, 1e-2, |x| f(x, &w, &bias)), 1e-3);
        assert_close("linear dw", &dw, &numeric_grad(&w, &r, 1e-2, |w| f(&x, w, &bias)), 1e-3);
        assert_close("linear db", &db, &numeric_grad(&bias, &r, 1e-2, |bb| f(&x, &w, bb)), 1e-3);
    }
}

#[test]
fn softmax_cross_entropy_value_and_gradient() {
    let (b, k) = (4, 6);
    let z: Vec<f32> = uniform_vec(b * k, 61).iter().map(|v| v * 5.0).collect();
    let y = [0, 5, 2, 2];
    let mut d = vec![0.0; z.len()];
    let l = loss::softmax_cross_entropy(&z, &y, k, &mut d);
    let p = loss::softmax(&z, k);
    let direct = -(0..b).map(|i| (p[i * k + y[i]] as f64).ln()).sum::<f64>() / b as f64;
    assert!((l as f64 - direct).abs() < 1e-5, "{l} vs {direct}");
    let num = numeric_grad(&z, &[1.0], 1e-2, |z| vec![loss::softmax_cross_entropy(z, &y, k, &mut vec![0.0; z.len()])]);
    assert_close("dlogits", &d, &num, 1e-3);
    // Huge logits must not overflow.
    let big = vec![1000.0, -1000.0, 0.0];
    let l = loss::softmax_cross_entropy(&big, &[1], 3, &mut [0.0; 3]);
    assert!((l - 2000.0).abs() < 1e-2);
}

#[test]
fn dropout_train_and_test_time() {
    let n = 100_000;
    let x = vec![1.0f32; n];
    for mode in [DropoutMode::Paper, DropoutMode::Inverted] {
        let (mut y, mut m) = (vec![0.0; n], vec![0.0; n]);
        dropout::forward_train(0.5, mode, 9, 0, &x, &mut y, &mut m);
        let kept = m.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
        assert!((kept - 0.5).abs() < 0.01, "kept {kept}");
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let mut t = vec![0.0; n];
        dropout::forward_eval(0.5, mode, &x, &mut t);
        // Test time equals the training expectation; the paper's form multiplies by 0.5.
        assert!((mean - t[0] as f64).abs() < 0.02, "{mode:?}: train mean {mean} vs test {}", t[0]);
        if mode == DropoutMode::Paper {
            assert_eq!(t[0], 0.5);
        }
        // Same seed, same mask, whatever the thread count.
        let m1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| {
            let (mut y, mut m) = (vec![0.0; n], vec![0.0; n]);
            dropout::forward_train(0.5, mode, 9, 0, &x, &mut y, &mut m);
            m
        });
        assert_eq!(m, m1);
        let mut dx = vec![0.0; n];
        dropout::backward(Some(&m), 1.0, &x, &mut dx);
        assert_eq!(dx, m);
    }
}

/// bf16 products (`--precision bf16`) in the conv and linear layers, forward and backward: the
/// f32 layers fed the same operands rounded to bf16 within f32 summation error (products of two
/// bf16 are exact in f32), and the f32 layers on the unrounded operands within bf16's error.
/// Runs the `vdpbf16ps` kernel too where the CPU has AVX512-BF16.
#[test]
fn bf16_layers_match_f32_on_rounded_operands() {
    use alexnet::matmul::{Bf16Kernel, bf16::round_bf16};
    let round = |v: &[f32]| v.iter().map(|&x| round_bf16(x)).collect::<Vec<_>>();
    let mut kernels = vec![Bf16Kernel::Emulated];
    if Bf16Kernel::native_available() {
        kernels.push(Bf16Kernel::Native);
    }
    // conv2 of the paper net at a quarter of its channels (5x5, pad 2, two groups), batch 2.
    let s = ConvShape { in_c: 24, in_h: 13, in_w: 13, out_c: 64, kh: 5, kw: 5, stride: 1, pad: 2, groups: 2 };
    let batch = 2;
    let x: Vec<f32> = uniform_vec(batch * s.in_len(), 71).iter().map(|v| v.abs()).collect();
    let w = uniform_vec(s.weight_len(), 72);
    let bias = uniform_vec(s.out_c, 73);
    let dy = uniform_vec(batch * s.out_len(), 74);
    let conv_all = |p: Precision, x: &[f32], w: &[f32], dy: &[f32]| {
        let mut y = vec![0.0; batch * s.out_len()];
        conv::forward_in(p, &s, x, w, &bias, &mut y, batch);
        let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; s.out_c], vec![0.0; x.len()]);
        conv::backward_in(p, &s, x, w, dy, &mut dw, &mut db, Some(&mut dx), batch);
        [y, dw, dx]
    };
    let (b, i, o) = (6, 300, 70);
    let (lx, lw, lb, ldy) =
        (uniform_vec(b * i, 75), uniform_vec(o * i, 76), uniform_vec(o, 77), uniform_vec(b * o, 78));
    let linear_all = |p: Precision, x: &[f32], w: &[f32], dy: &[f32]| {
        let mut y = vec![0.0; b * o];
        linear::forward(x, w, &lb, &mut y, b, i, o, p);
        let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; o], vec![0.0; x.len()]);
        linear::backward(x, w, dy, &mut dw, &mut db, Some(&mut dx), b, i, o, p);
        [y, dw, dx]
    };
    let conv_exact = conv_all(Precision::F32, &x, &w, &dy);
    let conv_rounded = conv_all(Precision::F32, &round(&x), &round(&w), &round(&dy));
    let linear_exact = linear_all(Precision::F32, &lx, &lw, &ldy);
    let linear_rounded = linear_all(Precision::F32, &round(&lx), &round(&lw), &round(&ldy));
    for kernel in kernels {
        let p = Precision::Bf16(kernel);
        let cases = [
            ("conv", conv_all(p, &x, &w, &dy), &conv_rounded, &conv_exact),
            ("linear", linear_all(p, &lx, &lw, &ldy), &linear_rounded, &linear_exact),
        ];
        for (layer, got, rounded, exact) in cases {
            for ((what, g), (r, e)) in
                ["forward", "weight gradient", "data gradient"].iter().zip(&got).zip(rounded.iter().zip(exact))
            {
                let name = format!("{kernel:?} {layer} {what}");
                assert_close(&format!("{name} against f32 on rounded operands"), g, r, 1e-5);
                let err = alexnet::tensor::rel_err(g, e);
                assert!(err > 1e-5 && err < 1e-2, "{name}: relative error {err} against f32 is not bf16's");
            }
        }
    }
}

/// The cifar net's Winograd layers in the order a training step calls them, twice, on a pool
/// where each thread gets two images: every call must match im2col whatever the calls before it
/// left in the per-thread scratch.
#[test]
fn winograd_calls_in_sequence_match_im2col() {
    use alexnet::kernels::conv::ConvAlgo;
    use alexnet::kernels::winograd::Tile;
    let mk = |in_c, out_c, groups| ConvShape { in_c, in_h: 8, in_w: 8, out_c, kh: 3, kw: 3, stride: 1, pad: 1, groups };
    let layers = [mk(128, 192, 1), mk(192, 192, 2), mk(192, 128, 2)];
    let batch = 8;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    pool.install(|| {
        for round in 0..2 {
            let mut calls = Vec::new();
            for (i, s) in layers.iter().enumerate() {
                calls.push((i, s, true));
            }
            for (i, s) in layers.iter().enumerate().rev() {
                calls.push((i, s, false));
            }
            for (i, s, forward) in calls {
                let seed = (round * 10 + i) as u64 * 7;
                let x = uniform_vec(batch * s.in_len(), 100 + seed);
                let w = uniform_vec(s.weight_len(), 200 + seed);
                let bias = uniform_vec(s.out_c, 300 + seed);
                let dy = uniform_vec(batch * s.out_len(), 400 + seed);
                let algo = ConvAlgo::Winograd(Tile::F4);
                let what = format!("round {round} layer {i} forward {forward}");
                if forward {
                    let (mut a, mut b) = (vec![f32::NAN; batch * s.out_len()], vec![0.0; batch * s.out_len()]);
                    conv::forward_with(algo, Precision::F32, s, &x, &w, &bias, &mut a, batch, &mut Default::default());
                    conv::forward(s, &x, &w, &bias, &mut b, batch);
                    assert_close(&what, &a, &b, 1e-4);
                } else {
                    let n = |k: usize| vec![f32::NAN; k];
                    let (mut dw, mut db, mut dx) = (n(w.len()), n(s.out_c), n(x.len()));
                    let cache = &mut Default::default();
                    conv::backward_with(
                        algo,
                        Precision::F32,
                        s,
                        &x,
                        &w,
                        &dy,
                        &mut dw,
                        &mut db,
                        Some(&mut dx),
                        batch,
                        cache,
                    );
                    let (mut dw2, mut db2, mut dx2) = (n(w.len()), n(s.out_c), n(x.len()));
                    conv::backward(s, &x, &w, &dy, &mut dw2, &mut db2, Some(&mut dx2), batch);
                    assert_close(&format!("{what} dw"), &dw, &dw2, 1e-4);
                    assert_close(&format!("{what} db"), &db, &db2, 1e-5);
                    assert_close(&format!("{what} dx"), &dx, &dx2, 1e-4);
                }
            }
        }
    });
}

/// The forward pass keeps Winograd's transformed kernels between calls: the same weights reuse
/// them, and any change of the weights (one value, or a new tile) must be seen, at one image
/// (where inference uses the cache) and at several.
#[test]
fn winograd_kernel_cache_follows_the_weights() {
    use alexnet::kernels::conv::ConvAlgo;
    use alexnet::kernels::winograd::{KernelCache, Tile};
    let s = ConvShape { in_c: 32, in_h: 13, in_w: 13, out_c: 48, kh: 3, kw: 3, stride: 1, pad: 1, groups: 2 };
    let mut cache = KernelCache::default();
    let mut w = uniform_vec(s.weight_len(), 61);
    let bias = uniform_vec(s.out_c, 62);
    let changes: [(&str, Tile, Option<usize>); 5] = [
        ("first call", Tile::F4, None),
        ("same weights", Tile::F4, None),
        ("one weight changed", Tile::F4, Some(s.weight_len() - 1)),
        ("another tile", Tile::F2, None),
        ("a weight's sign", Tile::F2, Some(0)),
    ];
    for (what, tile, change) in changes {
        if let Some(i) = change {
            w[i] = -w[i] + 0.5;
        }
        for batch in [1, 3] {
            let x = uniform_vec(batch * s.in_len(), 63 + batch as u64);
            let (mut a, mut b) = (vec![f32::NAN; batch * s.out_len()], vec![0.0; batch * s.out_len()]);
            conv::forward_with(ConvAlgo::Winograd(tile), Precision::F32, &s, &x, &w, &bias, &mut a, batch, &mut cache);
            conv::forward(&s, &x, &w, &bias, &mut b, batch);
            assert_close(&format!("{what}, batch {batch}"), &a, &b, 1e-4);
        }
    }
}

/// Winograd's products in bf16 (`--precision bf16`, which takes F(2x2) tiles): the transformed
/// operands are rounded, so the error is bf16's grown by the transforms; it must stay within 2x
/// bf16 im2col's. Forward, both gradients, on 3x3 layers (conv3-5's shape at a quarter of the
/// channels, one and two groups) and conv1 over its phases. (F(4x4) measured 5-11x.)
#[test]
fn bf16_winograd_error_stays_near_im2col() {
    use alexnet::kernels::conv::ConvAlgo;
    use alexnet::kernels::winograd::{KernelCache, Tile};
    use alexnet::matmul::Bf16Kernel;
    let mut kernels = vec![Bf16Kernel::Emulated];
    if Bf16Kernel::native_available() {
        kernels.push(Bf16Kernel::Native);
    }
    let c3 = |groups| ConvShape { in_c: 64, in_h: 13, in_w: 13, out_c: 96, kh: 3, kw: 3, stride: 1, pad: 1, groups };
    let c1 = ConvShape { in_c: 3, in_h: 67, in_w: 67, out_c: 24, kh: 11, kw: 11, stride: 4, pad: 0, groups: 1 };
    let cases = [
        (c3(1), ConvAlgo::Winograd(Tile::F2)),
        (c3(2), ConvAlgo::Winograd(Tile::F2)),
        (c1, ConvAlgo::Polyphase(Tile::F2)),
    ];
    let batch = 4;
    for (s, algo) in cases {
        // Both passes by the algorithm at this batch (training's im2col below its minimum).
        assert_eq!(algo.for_batch(batch), algo);
        let x: Vec<f32> = uniform_vec(batch * s.in_len(), 81).iter().map(|v| v.abs()).collect();
        let w: Vec<f32> = uniform_vec(s.weight_len(), 82).iter().map(|v| v * 0.02).collect();
        let bias = uniform_vec(s.out_c, 83);
        let dy = uniform_vec(batch * s.out_len(), 84);
        let run = |algo: ConvAlgo, p: Precision| {
            let mut cache = KernelCache::default();
            let mut y = vec![0.0; batch * s.out_len()];
            conv::forward_with(algo, p, &s, &x, &w, &bias, &mut y, batch, &mut cache);
            let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; s.out_c], vec![0.0; x.len()]);
            conv::backward_with(algo, p, &s, &x, &w, &dy, &mut dw, &mut db, Some(&mut dx), batch, &mut cache);
            [y, dw, dx]
        };
        let exact = run(ConvAlgo::Im2col, Precision::F32);
        for &kernel in &kernels {
            let p = Precision::Bf16(kernel);
            let (ours, im2col) = (run(algo, p), run(ConvAlgo::Im2col, p));
            for (i, what) in ["forward", "weight gradient", "data gradient"].iter().enumerate() {
                let err = alexnet::tensor::rel_err(&ours[i], &exact[i]);
                let base = alexnet::tensor::rel_err(&im2col[i], &exact[i]);
                eprintln!("{algo:?} {kernel:?} groups {} {what}: {err:.2e} (im2col bf16 {base:.2e})", s.groups);
                assert!(
                    err > 1e-5 && err < 2.0 * base,
                    "{algo:?} {kernel:?} {what}: {err} against im2col bf16's {base}"
                );
            }
        }
    }
}
