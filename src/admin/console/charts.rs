//! Bar charts as inline SVG, drawn on the server: no script, nothing
//! fetched. Each names itself (`<title>`, `<desc>`) for screen readers,
//! and the page shows the same numbers as a table beside it.

use std::fmt::Write as _;

/// One bar: its label, its length (any unit), and the text printed at its end.
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) shown: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A horizontal bar chart, 100% wide; `id` makes its title and description
/// ids unique on the page. Bars are drawn in the page's accent colour, text
/// in its text colour, so dark mode and contrast follow the page.
pub(crate) fn bars(id: &str, title: &str, desc: &str, bars: &[Bar]) -> String {
    const ROW: f64 = 28.0;
    const LABEL: f64 = 110.0;
    const WIDTH: f64 = 560.0;
    let height = (bars.len().max(1) as f64) * ROW + 8.0;
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" aria-labelledby="{id}-t {id}-d" viewBox="0 0 {WIDTH} {height}" preserveAspectRatio="xMinYMin meet"><title id="{id}-t">{}</title><desc id="{id}-d">{}</desc>"#,
        escape(title),
        escape(desc)
    );
    if bars.is_empty() {
        let _ = write!(svg, r#"<text x="0" y="20" class="chart-text">No data yet</text>"#);
    }
    for (i, bar) in bars.iter().enumerate() {
        let y = i as f64 * ROW + 4.0;
        let room = WIDTH - LABEL - 150.0;
        let w = if max > 0.0 { (bar.value / max * room).max(if bar.value > 0.0 { 2.0 } else { 0.0 }) } else { 0.0 };
        let _ = write!(
            svg,
            r#"<text x="0" y="{:.1}" class="chart-text">{}</text><rect x="{LABEL}" y="{y:.1}" width="{w:.1}" height="{:.1}" rx="3" class="chart-bar"/><text x="{:.1}" y="{:.1}" class="chart-text">{}</text>"#,
            y + 17.0,
            escape(&bar.label),
            ROW - 10.0,
            LABEL + w + 6.0,
            y + 17.0,
            escape(&bar.shown)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_the_chart_names_itself() {
        let svg = bars("c", "Paid <at> stage", "d", &[Bar { label: "<script>".into(), value: 2.0, shown: "2".into() }, Bar { label: "b".into(), value: 0.0, shown: "0".into() }]);
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script>"));
        assert!(svg.contains(r#"role="img""#) && svg.contains("<title id=\"c-t\">Paid &lt;at&gt; stage</title>"));
        assert!(svg.contains(r#"width="0.0""#), "a zero bar has no length");
    }
}
