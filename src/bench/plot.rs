//! Grouped bar charts as SVG (one panel per quantity, one colour per series), shared by
//! `bench --compare` and the per-layer / per-operator figure `run` writes beside its record.

use std::path::Path;

use plotters::prelude::*;

use crate::engine::report::{mib, Recorder};
use crate::error::{Error, Result};

/// One named row of values, one value per category.
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// One panel: a title, the category labels and one or more series.
pub struct BarPanel {
    pub title: String,
    pub labels: Vec<String>,
    pub series: Vec<Series>,
}

const COLOURS: [RGBColor; 4] = [RGBColor(200, 60, 40), RGBColor(40, 90, 200), RGBColor(60, 150, 60), RGBColor(150, 90, 180)];

/// Panels in a grid of `cols` columns, 550 × 400 pixels each.
pub fn write_bar_panels(path: &Path, cols: usize, panels: &[BarPanel]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Config(format!("plotting {} failed: {e}", path.display()));
    let cols = cols.max(1);
    let rows = panels.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (550 * cols as u32, 400 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    for (area, panel) in root.split_evenly((rows, cols)).iter().zip(panels) {
        draw_panel(area, panel).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

fn draw_panel(area: &DrawingArea<SVGBackend, plotters::coord::Shift>, panel: &BarPanel) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let n = panel.labels.len().max(1);
    let max = panel.series.iter().flat_map(|s| s.values.iter().copied()).fold(1e-9, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..max)?;
    let labels = panel.labels.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| labels.get(x.floor() as usize).cloned().unwrap_or_default())
        .draw()?;
    let width = 0.8 / panel.series.len().max(1) as f64;
    for (si, s) in panel.series.iter().enumerate() {
        let colour = COLOURS[si % COLOURS.len()];
        let bars = s.values.iter().enumerate().map(|(i, &v)| {
            let x0 = i as f64 + 0.1 + si as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, v)], colour.filled())
        });
        chart
            .draw_series(bars)?
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    if panel.series.len() > 1 {
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
    }
    Ok(())
}

/// The figure `run` writes next to its record: online time and MiB (both directions) per
/// encoder layer and per operator.
pub fn write_run_svg(path: &Path, rec: &Recorder, title: &str) -> Result<()> {
    let layers = rec.per_layer();
    let ops = rec.per_op();
    let one = |name: &str, values: Vec<f64>| vec![Series { name: name.to_string(), values }];
    let layer_labels: Vec<String> = layers.iter().map(|(l, _, _)| l.to_string()).collect();
    let op_labels: Vec<String> = ops.iter().map(|o| o.op.clone()).collect();
    let panels = [
        BarPanel { title: format!("{title}: time per layer (s)"), labels: layer_labels.clone(), series: one("time", layers.iter().map(|l| l.1).collect()) },
        BarPanel { title: "MiB per layer (both directions)".into(), labels: layer_labels, series: one("MiB", layers.iter().map(|l| mib(l.2.bytes_sent + l.2.bytes_recv)).collect()) },
        BarPanel { title: "time per operator, all layers (s)".into(), labels: op_labels.clone(), series: one("time", ops.iter().map(|o| o.wall_secs).collect()) },
        BarPanel { title: "MiB per operator, all layers".into(), labels: op_labels, series: one("MiB", ops.iter().map(|o| mib(o.comm.bytes_sent + o.comm.bytes_recv)).collect()) },
    ];
    write_bar_panels(path, 2, &panels)
}

/// One named line of (x, y) points.
pub struct PlotLine {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One log–log panel: a title, the x axis's name and its lines.
pub struct LinePanel {
    pub title: String,
    pub x_label: String,
    pub series: Vec<PlotLine>,
}

const LINE_COLOURS: [RGBColor; 11] = [
    RGBColor(200, 60, 40),
    RGBColor(40, 90, 200),
    RGBColor(60, 150, 60),
    RGBColor(150, 90, 180),
    RGBColor(230, 150, 30),
    RGBColor(30, 170, 180),
    RGBColor(120, 80, 40),
    RGBColor(220, 90, 170),
    RGBColor(120, 120, 120),
    RGBColor(170, 170, 30),
    RGBColor(0, 0, 0),
];

/// Panels side by side, 650 × 480 pixels each, both axes logarithmic (a power law is a straight
/// line whose slope is its exponent). Points with a non-positive value are left out.
pub fn write_loglog_panels(path: &Path, panels: &[LinePanel]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Config(format!("plotting {} failed: {e}", path.display()));
    let root = SVGBackend::new(path, (650 * panels.len().max(1) as u32, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    for (area, panel) in root.split_evenly((1, panels.len().max(1))).iter().zip(panels) {
        draw_loglog(area, panel).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

fn draw_loglog(area: &DrawingArea<SVGBackend, plotters::coord::Shift>, panel: &LinePanel) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let pts = || panel.series.iter().flat_map(|s| s.points.iter().copied()).filter(|&(x, y)| x > 0.0 && y > 0.0);
    let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(x), b.max(x)));
    let (y0, y1) = pts().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(y), b.max(y)));
    if x0 > x1 || y0 > y1 {
        return Ok(());
    }
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 / 1.2..x1 * 1.2).log_scale(), (y0 / 1.5..y1 * 1.5).log_scale())?;
    chart.configure_mesh().x_desc(panel.x_label.as_str()).draw()?;
    for (i, s) in panel.series.iter().enumerate() {
        let colour = LINE_COLOURS[i % LINE_COLOURS.len()];
        let line: Vec<(f64, f64)> = s.points.iter().copied().filter(|&(x, y)| x > 0.0 && y > 0.0).collect();
        let width = if s.name == "all" { 3 } else { 1 };
        chart
            .draw_series(LineSeries::new(line.clone(), colour.stroke_width(width)))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2)));
        chart.draw_series(line.into_iter().map(|p| Circle::new(p, 2, colour.filled())))?;
    }
    chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).border_style(BLACK).background_style(WHITE).draw()?;
    Ok(())
}
