//! Line charts for `--svg` (simulate, lab, lab --compare-sim): one panel
//! layout, text labels and a legend, so every plot of the project looks the
//! same. Callers pick the lines; this module only draws them (plotters,
//! SVG backend).

use plotters::coord::Shift;
use plotters::prelude::*;

/// One labelled line: (seconds, value) points.
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

impl Line {
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, color: RGBColor) -> Self {
        Self {
            label: label.into(),
            points,
            color,
        }
    }
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}

/// Draw `lines` on `area`: x from 0 to the last point (at least 1 ms), y
/// from 0 to 5% above the highest value, axis descriptions, and a legend at
/// `legend`.
pub fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: Option<&str>,
    y_desc: &str,
    lines: &[Line],
    legend: SeriesLabelPosition,
) -> anyhow::Result<()> {
    let all = || lines.iter().flat_map(|l| l.points.iter());
    let t_end = all().map(|p| p.0).fold(1e-3, f64::max);
    let y_top = all().map(|p| p.1).fold(1.0, f64::max) * 1.05;
    let mut builder = ChartBuilder::on(area);
    if let Some(c) = caption {
        builder.caption(c, ("sans-serif", 20));
    }
    let mut chart = builder
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_end, 0.0..y_top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(y_desc)
        .draw()
        .map_err(plot_err)?;
    for l in lines {
        let color = l.color;
        chart
            .draw_series(LineSeries::new(
                l.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label(l.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// An SVG document of `height` pixels (900 wide) drawn by `draw` on a white
/// background.
pub fn svg_string(
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    Ok(buf)
}

/// [`svg_string`] written to `path`.
pub fn write_svg(
    path: &std::path::Path,
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let text = svg_string(height, draw)?;
    std::fs::write(path, text)
        .map_err(|e| anyhow::anyhow!("cannot write the plot to {}: {e}", path.display()))
}

/// Points of `series` as (t, f(point)).
pub fn points<T>(series: &[T], t: impl Fn(&T) -> f64, f: impl Fn(&T) -> u64) -> Vec<(f64, f64)> {
    series.iter().map(|p| (t(p), f(p) as f64)).collect()
}
