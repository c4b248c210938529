//! Pictures as PNG: training curves from the metrics, and the learned conv1 kernels (the
//! paper's Figure 3).

use crate::train::EpochMetrics;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// DejaVu Sans, embedded so plots have text on machines without fonts (licence in assets/).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is known good; a failure here would only lose the labels.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn err<E: std::fmt::Display>(e: E) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// A named, coloured series of (epoch, value) points.
type Line = (String, RGBColor, Vec<(f64, f64)>);

/// Loss (left) and error (right) against epochs.
pub fn training_curves(metrics: &[EpochMetrics], title: &str, out: &Path) -> std::io::Result<()> {
    register_font();
    let root = BitMapBackend::new(out, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
    let (left, right) = root.split_horizontally(600);
    let x_max = metrics.iter().map(|m| m.epoch + 1).max().unwrap_or(1) as f64;
    let series = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
        metrics.iter().filter_map(|m| f(m).filter(|v| v.is_finite()).map(|v| ((m.epoch + 1) as f64, v))).collect()
    };
    let line = |name: &str, color, pts| (name.to_string(), color, pts);
    draw_panel(
        &left,
        "cross-entropy loss",
        x_max,
        &[
            line("train (training mode: augmented, dropout if any)", BLUE, series(&|m| Some(m.train_loss))),
            line("validation", RED, series(&|m| m.val_loss)),
        ],
        None,
    )?;
    draw_panel(
        &right,
        "error",
        x_max,
        &[
            line("train top-1", BLUE, series(&|m| Some(m.train_top1_error))),
            line("val top-1", RED, series(&|m| m.val_top1_error)),
            line("val top-5", MAGENTA, series(&|m| m.val_top5_error)),
        ],
        None,
    )?;
    root.present().map_err(err)
}

/// One value of several runs against epochs (the paper's Figure 1 is training error of a ReLU
/// and a tanh net), with an optional dashed line at `threshold`.
pub fn compare_curves(
    runs: &[(String, Vec<(f64, f64)>)],
    ylabel: &str,
    title: &str,
    threshold: Option<f64>,
    out: &Path,
) -> std::io::Result<()> {
    register_font();
    // Twelve distinct colours: comparisons of three seeds x four arms get a colour each.
    const COLOURS: [RGBColor; 12] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
        RGBColor(188, 189, 34),
        RGBColor(127, 127, 127),
        RGBColor(0, 0, 0),
        RGBColor(0, 0, 128),
    ];
    let root = BitMapBackend::new(out, (800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
    let x_max = runs.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).fold(1.0f64, f64::max);
    let lines: Vec<Line> = runs
        .iter()
        .enumerate()
        .map(|(i, (name, pts))| (name.clone(), COLOURS[i % COLOURS.len()], pts.clone()))
        .collect();
    draw_panel(&root, ylabel, x_max, &lines, threshold)?;
    root.present().map_err(err)
}

/// Lines against epochs on `area`, y from 0, legend upper right.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    ylabel: &str,
    x_max: f64,
    lines: &[Line],
    threshold: Option<f64>,
) -> std::io::Result<()> {
    let y_top = lines.iter().flat_map(|(_, _, s)| s.iter().map(|p| p.1)).chain(threshold).fold(0.0f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..x_max.max(1.0), 0.0..y_top.max(1e-3) * 1.05)
        .map_err(err)?;
    chart.configure_mesh().x_desc("epoch").y_desc(ylabel).label_style(("sans-serif", 13)).draw().map_err(err)?;
    if let Some(t) = threshold {
        let dashes = (0..40).map(|i| {
            let x = x_max.max(1.0) * i as f64 / 40.0;
            PathElement::new(vec![(x, t), (x + x_max.max(1.0) / 80.0, t)], BLACK.mix(0.6))
        });
        chart.draw_series(dashes).map_err(err)?;
    }
    for (name, color, pts) in lines {
        if pts.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// conv1's kernels `w [M, 3, K, K]` as a grid, each kernel min-max scaled on its own and
/// magnified `zoom`×, `towers` rows groups (the paper's two GPUs: one block of rows each).
pub fn filter_grid(w: &[f32], m: usize, k: usize, towers: usize, zoom: usize, out: &Path) -> image::ImageResult<()> {
    filter_grid_image(w, m, k, towers, zoom).save(out)
}

/// [`filter_grid`]'s picture.
pub fn filter_grid_image(w: &[f32], m: usize, k: usize, towers: usize, zoom: usize) -> image::RgbImage {
    let towers = towers.max(1);
    let per_tower = m.div_ceil(towers);
    // At most 48 kernels a row, as in the paper's figure.
    let cols = per_tower.min(48);
    let rows_per_tower = per_tower.div_ceil(cols);
    let cell = k * zoom + 2;
    let gap = if towers > 1 { cell / 2 } else { 0 };
    let (width, height) = (cols * cell + 2, towers * rows_per_tower * cell + (towers - 1) * gap + 2);
    let mut img = image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([255, 255, 255]));
    for f in 0..m {
        let kern = &w[f * 3 * k * k..(f + 1) * 3 * k * k];
        let (lo, hi) = kern.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
        let (t, i) = (f / per_tower, f % per_tower);
        let (r, c) = (i / cols, i % cols);
        let (y0, x0) = (1 + t * (rows_per_tower * cell + gap) + r * cell + 1, 1 + c * cell + 1);
        for y in 0..k * zoom {
            for x in 0..k * zoom {
                let px = (y / zoom) * k + x / zoom;
                let rgb = [0, 1, 2].map(|ch| ((kern[ch * k * k + px] - lo) * scale).round().clamp(0.0, 255.0) as u8);
                img.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb(rgb));
            }
        }
    }
    img
}

/// A network's first-layer kernels as a PNG grid ([`filter_grid_image`], 3× magnified, its
/// towers in row blocks), with its width and height; `None` when the first parameter is not a
/// convolution of RGB images.
pub fn conv1_filters_png(net: &crate::model::Network) -> Option<image::ImageResult<(Vec<u8>, u32, u32)>> {
    let w = net.params().next().filter(|w| w.shape.len() == 4 && w.shape[1] == 3)?;
    let img = filter_grid_image(&w.data, w.shape[0], w.shape[2], net.config.towers(), 3);
    let mut png = std::io::Cursor::new(Vec::new());
    Some(img.write_to(&mut png, image::ImageFormat::Png).map(|()| (png.into_inner(), img.width(), img.height())))
}

/// Rows of square RGB images (HWC bytes of side `size`), each shown `cell × cell` with a gap:
/// the paper's Figure 4 layout (a query, then its nearest neighbours).
pub fn image_rows(rows: &[Vec<&[u8]>], size: usize, cell: usize, out: &Path) -> image::ImageResult<()> {
    let gap = (cell / 16).max(2);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let (w, h) = (2 * gap + cols * (cell + gap), gap + rows.len() * (cell + gap));
    let mut img = image::RgbImage::from_pixel(w as u32, h as u32, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, px) in row.iter().enumerate() {
            let Some(src) = image::RgbImage::from_raw(size as u32, size as u32, px.to_vec()) else { continue };
            let scaled = image::imageops::resize(&src, cell as u32, cell as u32, image::imageops::FilterType::Triangle);
            // A wider gap after the query column sets it apart.
            let x0 = gap + c * (cell + gap) + if c > 0 { gap } else { 0 };
            image::imageops::replace(&mut img, &scaled, x0 as i64, (gap + r * (cell + gap)) as i64);
        }
    }
    img.save(out)
}

/// How much of a kernel `w [3, K, K]` is colour: the fraction of its energy orthogonal to the
/// grey axis (R = G = B) at each pixel. 0 for a colour-agnostic kernel, 1 for one with no grey
/// component at all, 2/3 in expectation for random weights. The paper's Figure 3 shows one
/// GPU's kernels mostly colour-agnostic and the other's colour-specific: per tower, this is
/// that observation as a number.
pub fn chromatic_fraction(w: &[f32], k: usize) -> f64 {
    let plane = k * k;
    let (mut grey, mut total) = (0.0f64, 0.0f64);
    for p in 0..plane {
        let [r, g, b] = [0, 1, 2].map(|c| w[c * plane + p] as f64);
        let along = (r + g + b) / 3f64.sqrt();
        grey += along * along;
        total += r * r + g * g + b * b;
    }
    if total > 0.0 { 1.0 - grey / total } else { 0.0 }
}

/// [`chromatic_fraction`] averaged over each tower's kernels (`m` kernels of `k × k`, split into
/// `towers` equal consecutive blocks).
pub fn tower_chromatic(w: &[f32], m: usize, k: usize, towers: usize) -> Vec<f64> {
    let per = m.div_ceil(towers.max(1));
    (0..towers.max(1))
        .map(|t| {
            let ks: Vec<f64> = (t * per..((t + 1) * per).min(m))
                .map(|f| chromatic_fraction(&w[f * 3 * k * k..(f + 1) * 3 * k * k], k))
                .collect();
            ks.iter().sum::<f64>() / ks.len().max(1) as f64
        })
        .collect()
}
