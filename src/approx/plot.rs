//! SVG plot: the function with its approximations (top panel) and their absolute fixed-point
//! errors on a log scale (bottom panel), so errors from 1e-5 to 1e-1 are all readable.

use std::path::Path;

use plotters::prelude::*;

use super::fixed::{pow2, QuantizedPiecewise};
use super::piecewise::PiecewisePoly;
use crate::{Error, Result};

/// One curve to draw: the f64 form (top panel) and the fixed-point form (error panel).
pub struct PlotCurve<'a> {
    pub label: String,
    pub poly: &'a PiecewisePoly,
    pub quantized: &'a QuantizedPiecewise,
}

const SAMPLES: usize = 1600;
/// Errors below this are drawn at this value (log axis).
const ERROR_FLOOR: f64 = 1e-6;
const COLOURS: [RGBColor; 5] = [RED, BLUE, GREEN, MAGENTA, CYAN];

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::Config(format!("plotting failed: {e}"))
}

/// Writes the two-panel SVG to `path`.
pub fn write_svg(
    path: &Path,
    title: &str,
    f: fn(f64) -> f64,
    range: (f64, f64),
    curves: &[PlotCurve<'_>],
) -> Result<()> {
    let xs: Vec<f64> =
        (0..=SAMPLES).map(|i| range.0 + (range.1 - range.0) * i as f64 / SAMPLES as f64).collect();
    let errors: Vec<Vec<(f64, f64)>> = curves
        .iter()
        .map(|c| {
            let (in_s, out_s) =
                (pow2(c.quantized.spec.in_frac as i32), pow2(c.quantized.spec.out_frac as i32));
            xs.iter()
                .map(|&x| {
                    let xi = (x * in_s).round() as i64;
                    let y = c.quantized.eval(xi).map(|y| y as f64 / out_s).unwrap_or(f64::NAN);
                    (x, (y - f(xi as f64 / in_s)).abs().max(ERROR_FLOOR))
                })
                .collect()
        })
        .collect::<Vec<_>>();
    let ys: Vec<f64> = xs.iter().map(|&x| f(x)).collect();
    let (ymin, ymax) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
    let pad = 0.05 * (ymax - ymin).max(1e-9);
    let emax =
        errors.iter().flatten().map(|(_, e)| *e).filter(|e| e.is_finite()).fold(1e-5f64, f64::max) * 2.0;

    let root = SVGBackend::new(path, (1000, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (top, bottom) = root.split_vertically(420);

    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(range.0..range.1, (ymin - pad)..(ymax + pad))
        .map_err(plot_error)?;
    chart.configure_mesh().x_desc("x").y_desc("f(x)").draw().map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(xs.iter().zip(&ys).map(|(&x, &y)| (x, y)), BLACK.stroke_width(3)))
        .map_err(plot_error)?
        .label("reference")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    for (i, c) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(xs.iter().map(|&x| (x, c.poly.eval(x))), colour.stroke_width(1)))
            .map_err(plot_error)?
            .label(c.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;

    let mut err_chart = ChartBuilder::on(&bottom)
        .caption("absolute fixed-point error |approximation − reference| (log scale)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(range.0..range.1, (ERROR_FLOOR..emax).log_scale())
        .map_err(plot_error)?;
    err_chart
        .configure_mesh()
        .x_desc("x")
        .y_desc("|error|")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(plot_error)?;
    for (i, (c, e)) in curves.iter().zip(&errors).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        err_chart
            .draw_series(LineSeries::new(
                e.iter().copied().filter(|(_, v)| v.is_finite()),
                colour.stroke_width(1),
            ))
            .map_err(plot_error)?
            .label(c.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    err_chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}
