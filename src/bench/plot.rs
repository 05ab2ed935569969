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
    let op_labels: Vec<String> = ops.iter().map(|(o, _, _)| o.clone()).collect();
    let panels = [
        BarPanel { title: format!("{title}: time per layer (s)"), labels: layer_labels.clone(), series: one("time", layers.iter().map(|l| l.1).collect()) },
        BarPanel { title: "MiB per layer (both directions)".into(), labels: layer_labels, series: one("MiB", layers.iter().map(|l| mib(l.2.bytes_sent + l.2.bytes_recv)).collect()) },
        BarPanel { title: "time per operator, all layers (s)".into(), labels: op_labels.clone(), series: one("time", ops.iter().map(|o| o.1).collect()) },
        BarPanel { title: "MiB per operator, all layers".into(), labels: op_labels, series: one("MiB", ops.iter().map(|o| mib(o.2.bytes_sent + o.2.bytes_recv)).collect()) },
    ];
    write_bar_panels(path, 2, &panels)
}
