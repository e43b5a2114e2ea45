//! `latency.png`: p50 latency against pods on the node, one request at a time and at the
//! highest concurrency; Docker's paths drawn solid with circles, containerd's (CRI) dashed
//! with triangles, in the colour of their Docker twin.

use std::path::Path;

use crate::measure::Point;

pub(crate) fn plot(path: &Path, font: &Path, points: &[Point]) -> Result<(), String> {
    use plotters::prelude::*;

    let bytes = std::fs::read(font).map_err(|err| {
        format!(
            "font {}: {err} (install fonts-dejavu-core or set PDC_BENCH_FONT)",
            font.display()
        )
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{} is not a usable font", font.display()))?;

    let max_c = points.iter().map(|p| p.concurrency).max().unwrap_or(1);
    let colors = [
        ("cli", RGBColor(0, 158, 115)),
        ("collector", RGBColor(213, 94, 0)),
        ("collector-list", RGBColor(204, 121, 167)),
        ("collector-b", RGBColor(120, 120, 120)),
        ("floor", RGBColor(0, 114, 178)),
        ("cri-collector", RGBColor(213, 94, 0)),
        ("cri-collector-b", RGBColor(120, 120, 120)),
        ("cri-floor", RGBColor(0, 114, 178)),
    ];
    let panels = [
        (
            "one request at a time".to_string(),
            1,
            vec![
                ("docker CLI", "cli"),
                ("collector", "collector"),
                ("collector --event-index=false", "collector-list"),
                ("collector (B build)", "collector-b"),
                ("floor: bare client, same calls", "floor"),
                ("collector on containerd (CRI)", "cri-collector"),
                ("collector (B build) on containerd", "cri-collector-b"),
                ("CRI floor: bare client, same calls", "cri-floor"),
            ],
        ),
        (
            format!("{max_c} requests at a time"),
            max_c,
            vec![
                ("collector", "collector"),
                ("collector --event-index=false", "collector-list"),
                ("collector (B build)", "collector-b"),
                ("floor: bare client, same calls", "floor"),
                ("collector on containerd (CRI)", "cri-collector"),
                ("collector (B build) on containerd", "cri-collector-b"),
                ("CRI floor: bare client, same calls", "cri-floor"),
            ],
        ),
    ];
    let series = |path: &str, c: usize| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.path == path && p.concurrency == c)
            .filter_map(|p| Some((p.pods as f64, p.p50_ms()?)))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    type Line<'a> = (&'a str, &'a str, RGBColor, Vec<(f64, f64)>);
    let x_max = points.iter().map(|p| p.pods).max().unwrap_or(1) as f64;
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();

    let root = BitMapBackend::new(path, (1400, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "pod-detail-collector: p50 latency of one pod's answer against pods on the node",
            ("sans-serif", 24),
        )
        .map_err(err)?;
    let halves = root.split_evenly((1, 2));
    for (area, (title, c, lines)) in halves.iter().zip(panels) {
        let data: Vec<Line> = lines
            .iter()
            .map(|(label, path)| {
                let color = colors
                    .iter()
                    .find(|(p, _)| p == path)
                    .map(|(_, c)| *c)
                    .unwrap_or(BLACK);
                (*label, *path, color, series(path, c))
            })
            .filter(|(_, _, _, v)| !v.is_empty())
            .collect();
        let ys = data.iter().flat_map(|(_, _, _, v)| v.iter().map(|p| p.1));
        let (y_min, y_max) = ys.fold((f64::MAX, 0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
        if data.is_empty() || y_max <= 0.0 {
            continue;
        }
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            // Room above the lines for the legend.
            .build_cartesian_2d(
                0f64..x_max * 1.12,
                ((y_min / 2.0).max(0.01)..y_max * 8.0).log_scale(),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("kubelet pods on the node (4 containers each)")
            .y_desc("p50 latency, ms (log scale)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y}"))
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        for (label, path, color, values) in &data {
            let color = *color;
            if path.starts_with("cri-") {
                chart
                    .draw_series(DashedLineSeries::new(
                        values.clone(),
                        10,
                        6,
                        color.stroke_width(3),
                    ))
                    .map_err(err)?
                    .label(*label)
                    .legend(move |(x, y)| {
                        plotters::element::DashedPathElement::new(
                            vec![(x, y), (x + 24, y)],
                            7,
                            4,
                            color.stroke_width(3),
                        )
                    });
            } else {
                chart
                    .draw_series(LineSeries::new(values.clone(), color.stroke_width(3)))
                    .map_err(err)?
                    .label(*label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                    });
            }
            // Points: circles on Docker, triangles on containerd.
            if path.starts_with("cri-") {
                chart
                    .draw_series(
                        values
                            .iter()
                            .map(|&(x, y)| TriangleMarker::new((x, y), 7, color.filled())),
                    )
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(
                        values
                            .iter()
                            .map(|&(x, y)| Circle::new((x, y), 5, color.filled())),
                    )
                    .map_err(err)?;
            }
            // The value at the largest node, right of its point.
            if let Some(&(x, y)) = values.last() {
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{y:.1} ms"),
                        (x + x_max * 0.015, y),
                        ("sans-serif", 14).into_font().color(&color),
                    )))
                    .map_err(err)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
