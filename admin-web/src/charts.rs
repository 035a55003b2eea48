//! Charts drawn on the server as SVG: no script and no CDN, printable, and readable by screen
//! readers (each chart has a title and a description; the page puts the same numbers in a table).
//! Colours come from presentation attributes, which the panel's CSP allows (inline styles it does not).

use std::fmt::Write;

/// One series of a stacked bar chart: its name and colour.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
}

/// Text as SVG and HTML need it.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Bars per label (a day, say), each stacked from `values[i]` of every series, with a legend.
pub fn stacked_bars(title: &str, labels: &[String], series: &[Series<'_>], values: &[Vec<i64>]) -> String {
    let (width, height, left, bottom, top) = (720.0, 260.0, 40.0, 40.0, 28.0);
    let plot_height = height - bottom - top;
    let totals: Vec<i64> = (0..labels.len()).map(|i| values.iter().map(|v| v.get(i).copied().unwrap_or(0)).sum()).collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let step = (width - left - 8.0) / labels.len().max(1) as f64;
    let bar = (step * 0.7).clamp(1.0, 48.0);
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title-{id} chart-desc-{id}" xmlns="http://www.w3.org/2000/svg"><title id="chart-title-{id}">{title}</title><desc id="chart-desc-{id}">{desc}</desc>"#,
        id = slug(title),
        title = escaped(title),
        desc = escaped(&format!("Highest: {max}. The table below has every value.")),
    );
    // Grid lines at 0, half and the maximum.
    for fraction in [0.0, 0.5, 1.0] {
        let y = top + plot_height * (1.0 - fraction);
        let value = (max as f64 * fraction).round() as i64;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{width}" y1="{y:.1}" y2="{y:.1}" stroke="#d0d7de" stroke-width="1"/><text x="{x:.1}" y="{ty:.1}" font-size="11" text-anchor="end" fill="#3d4752">{value}</text>"##,
            x = left - 4.0,
            ty = y + 4.0
        );
    }
    let label_every = (labels.len() / 12).max(1);
    for (i, label) in labels.iter().enumerate() {
        let x = left + step * i as f64 + (step - bar) / 2.0;
        let mut y = top + plot_height;
        for (s, series_values) in series.iter().zip(values) {
            let value = series_values.get(i).copied().unwrap_or(0);
            if value == 0 {
                continue;
            }
            let h = plot_height * value as f64 / max as f64;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="{colour}"><title>{label}: {value} {name}</title></rect>"#,
                colour = s.colour,
                label = escaped(label),
                name = escaped(s.name)
            );
        }
        if i % label_every == 0 {
            let _ = write!(
                svg,
                r##"<text x="{cx:.1}" y="{ly:.1}" font-size="11" text-anchor="middle" fill="#3d4752">{label}</text>"##,
                cx = x + bar / 2.0,
                ly = height - bottom + 16.0,
                label = escaped(label)
            );
        }
    }
    let mut legend_x = left;
    for s in series {
        let _ = write!(
            svg,
            r##"<rect x="{legend_x:.1}" y="6" width="12" height="12" fill="{colour}"/><text x="{tx:.1}" y="16" font-size="12" fill="#1f2328">{name}</text>"##,
            colour = s.colour,
            tx = legend_x + 16.0,
            name = escaped(s.name)
        );
        legend_x += 24.0 + 7.5 * s.name.len() as f64;
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars, one per (name, value), longest first as given.
pub fn bars(title: &str, rows: &[(String, i64)], colour: &str) -> String {
    // Narrower than the day chart: it often shares a row with another, and its text must stay legible.
    let (width, row_height, label_width) = (480.0, 26.0, 170.0);
    let height = row_height * rows.len().max(1) as f64 + 8.0;
    let max = rows.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let mut svg = format!(
        r#"<svg class="chart chart-bars" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title-{id}" xmlns="http://www.w3.org/2000/svg"><title id="chart-title-{id}">{title}</title>"#,
        id = slug(title),
        title = escaped(title)
    );
    for (i, (name, value)) in rows.iter().enumerate() {
        let y = 4.0 + row_height * i as f64;
        let w = (width - label_width - 60.0) * *value as f64 / max as f64;
        let _ = write!(
            svg,
            r##"<text x="{lx}" y="{ty:.1}" font-size="13" text-anchor="end" fill="#1f2328">{name}</text><rect x="{label_width}" y="{ry:.1}" width="{w:.1}" height="18" fill="{colour}"/><text x="{vx:.1}" y="{ty:.1}" font-size="13" fill="#1f2328">{value}</text>"##,
            lx = label_width - 8.0,
            ty = y + 13.0,
            ry = y + 1.0,
            vx = label_width + w + 6.0,
            name = escaped(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn slug(title: &str) -> String {
    title.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_text_is_escaped() {
        let labels = vec!["1 Mar".to_string(), "2 Mar".to_string()];
        let series = [Series { name: "Web <chat>", colour: "#0969da" }, Series { name: "Email", colour: "#8250df" }];
        let svg = stacked_bars("Conversations per day", &labels, &series, &[vec![2, 0], vec![2, 1]]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Web &lt;chat&gt;") && !svg.contains("<chat>"));
        assert!(svg.contains(">4</text>"), "the axis tops at the largest total: {svg}");
        assert_eq!(svg.matches("<rect x=").count(), 3 + 2, "three bars and two legend keys");
        let svg = bars("Escalations by reason", &[("urgent".into(), 3), ("human_requested".into(), 1)], "#cf222e");
        assert!(svg.contains(">urgent</text>") && svg.contains(">3</text>"));
    }
}
