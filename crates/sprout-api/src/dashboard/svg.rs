//! Server-rendered SVG: line charts of the last hour and the environment's architecture.
//! Every piece of text that reaches the markup goes through [`esc`].

use std::fmt::Write;

/// Escapes text for SVG/HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The fill of a health colour (Green, Yellow, Red, Grey).
pub fn health_fill(color: &str) -> &'static str {
    match color {
        "Green" => "#2e7d32",
        "Yellow" => "#f9a825",
        "Red" => "#c62828",
        _ => "#8a8f98",
    }
}

/// One line of a chart: a name, a colour, and (seconds ago, value) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 360.0;
const H: f64 = 150.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 20.0;
/// The charts cover the last hour.
pub const SPAN_SECS: f64 = 3600.0;

/// A line chart over the last hour: x is seconds ago (0 = now, right edge).
pub fn line_chart(title: &str, unit: &str, series: &[Series<'_>]) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |ago: f64| LEFT + pw * (1.0 - (ago / SPAN_SECS).clamp(0.0, 1.0));
    let y = |v: f64| TOP + ph * (1.0 - (v / top).clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg">"#,
        t = esc(title)
    );
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="14" class="chart-title">{}</text>"#,
        esc(title)
    );
    // Legend, right-aligned.
    let mut lx = W - RIGHT;
    for se in series.iter().rev() {
        let label = esc(se.name);
        lx -= 8.0 + 7.0 * se.name.chars().count() as f64;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="6" width="8" height="8" fill="{}"/><text x="{}" y="14" class="chart-legend">{label}</text>"#,
            se.color,
            lx + 11.0
        );
        lx -= 12.0;
    }
    // Grid: 0, half, top.
    for frac in [0.0, 0.5, 1.0] {
        let v = top * frac;
        let gy = y(v);
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" y1="{gy:.1}" x2="{}" y2="{gy:.1}" class="chart-grid"/><text x="{}" y="{:.1}" class="chart-axis" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 4.0,
            gy + 3.5,
            esc(&format!("{}{}", short_number(v), unit))
        );
    }
    for (ago, label) in [
        (SPAN_SECS, "-60 min"),
        (SPAN_SECS / 2.0, "-30 min"),
        (0.0, "now"),
    ] {
        let anchor = match label {
            "now" => "end",
            "-60 min" => "start",
            _ => "middle",
        };
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" class="chart-axis" text-anchor="{anchor}">{label}</text>"#,
            x(ago),
            H - 5.0
        );
    }
    let empty = series.iter().all(|se| se.points.is_empty());
    if empty {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="chart-empty" text-anchor="middle">no samples yet</text>"#,
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }
    for se in series {
        if se.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = se
            .points
            .iter()
            .map(|&(ago, v)| format!("{:.1},{:.1}", x(ago), y(v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
            se.color,
            pts.join(" ")
        );
    }
    s.push_str("</svg>");
    s
}

/// The smallest "round" number ≥ v (1, 2, 5 × 10^n), at least 1.
fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 1.0 {
        return 1.0;
    }
    let exp = v.log10().floor();
    let base = 10f64.powf(exp);
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * base >= v {
            return m * base;
        }
    }
    10.0 * base
}

fn short_number(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One instance in the architecture picture.
pub struct InstanceNode {
    pub id: String,
    pub version: String,
    pub color: String,
}

/// One attached resource in the architecture picture.
pub struct ResourceNode {
    pub name: String,
    pub kind: String,
    /// Its status and last health check, as one line (`Available, healthy`).
    pub state: String,
    /// Health colour (Green, Red, Grey).
    pub color: String,
}

/// What the architecture picture shows, from the live state.
pub struct Architecture {
    pub environment: String,
    /// The web tier's host name (CNAME); None for a worker environment.
    pub host: Option<String>,
    /// Zones in order, with their instances.
    pub zones: Vec<(String, Vec<InstanceNode>)>,
    /// The application's queue and its depth, when there is a worker side.
    pub queue: Option<(String, i64)>,
    /// The worker environment fed by the queue (name, health colour, instances), when this
    /// is a web environment with a worker sibling.
    pub worker: Option<(String, String, usize)>,
    /// The resources attached to the environment, drawn behind the instances.
    pub resources: Vec<ResourceNode>,
}

/// CNAME → balancer → zones → instances (health-coloured) → queue → worker environment.
/// A worker environment is drawn queue → dispatcher → zones → instances.
/// Attached resources sit behind the instances; dashed boxes are the security groups (the
/// instances' admits only the balancer, the resources' only this environment's instances).
pub fn architecture(a: &Architecture) -> String {
    let width = 760.0_f64;
    let zone_count = a.zones.len().max(1) as f64;
    let gap = 16.0;
    let zone_w = ((width - 40.0 - gap * (zone_count - 1.0)) / zone_count).max(120.0);
    let width = (40.0 + zone_w * zone_count + gap * (zone_count - 1.0)).max(width);
    let cx = width / 2.0;
    let per_row = ((zone_w - 16.0) / 118.0).floor().max(1.0) as usize;
    let rows = a
        .zones
        .iter()
        .map(|(_, i)| i.len().div_ceil(per_row).max(1))
        .max()
        .unwrap_or(1) as f64;
    let zone_h = 34.0 + rows * 40.0;
    let mut s = String::new();
    let mut y = 10.0;
    let mut parts: Vec<String> = Vec::new();
    let worker_env = a.host.is_none();
    let box_ = |s: &mut Vec<String>, y: f64, w: f64, label: &str, sub: &str, class: &str| {
        s.push(format!(
            r#"<g class="{class}"><rect x="{:.1}" y="{y:.1}" width="{w:.1}" height="40" rx="6"/><text x="{cx:.1}" y="{:.1}" text-anchor="middle" class="arch-label">{}</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle" class="arch-sub">{}</text></g>"#,
            cx - w / 2.0,
            y + 17.0,
            esc(label),
            y + 32.0,
            esc(sub)
        ));
    };
    let arrow = |s: &mut Vec<String>, x1: f64, y1: f64, x2: f64, y2: f64| {
        s.push(format!(
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" class="arch-arrow" marker-end="url(#arrowhead)"/>"#
        ));
    };
    if let Some(host) = &a.host {
        box_(&mut parts, y, 300.0, host, "CNAME", "arch-cname");
        arrow(&mut parts, cx, y + 40.0, cx, y + 62.0);
        y += 64.0;
        box_(
            &mut parts,
            y,
            300.0,
            "balancer",
            "health-checked pool",
            "arch-balancer",
        );
    } else {
        let (name, depth) = a.queue.clone().unwrap_or_else(|| ("queue".into(), 0));
        box_(
            &mut parts,
            y,
            300.0,
            &format!("queue {name}"),
            &format!("{depth} waiting"),
            "arch-queue",
        );
        arrow(&mut parts, cx, y + 40.0, cx, y + 62.0);
        y += 64.0;
        box_(
            &mut parts,
            y,
            300.0,
            "dispatcher (sqsd)",
            "HTTP POST per message",
            "arch-balancer",
        );
    }
    let below_balancer = y + 40.0;
    y += 70.0;
    for (i, (zone, instances)) in a.zones.iter().enumerate() {
        let zx = 20.0 + i as f64 * (zone_w + gap);
        arrow(&mut parts, cx, below_balancer, zx + zone_w / 2.0, y - 2.0);
        parts.push(format!(
            r#"<g class="arch-zone"><rect x="{zx:.1}" y="{y:.1}" width="{zone_w:.1}" height="{zone_h:.1}" rx="8"/><text x="{:.1}" y="{:.1}" class="arch-zone-label">zone {}</text></g>"#,
            zx + 10.0,
            y + 18.0,
            esc(zone)
        ));
        if instances.is_empty() {
            parts.push(format!(
                r#"<text x="{:.1}" y="{:.1}" class="arch-sub">no instances</text>"#,
                zx + 10.0,
                y + 44.0
            ));
        }
        for (j, inst) in instances.iter().enumerate() {
            let (r, c) = ((j / per_row) as f64, (j % per_row) as f64);
            let ix = zx + 8.0 + c * 118.0;
            let iy = y + 28.0 + r * 40.0;
            parts.push(format!(
                r#"<g class="arch-instance"><title>{} ({}): {}</title><rect x="{ix:.1}" y="{iy:.1}" width="110" height="32" rx="4" fill="{}"/><text x="{:.1}" y="{:.1}" class="arch-inst-label">{}</text><text x="{:.1}" y="{:.1}" class="arch-inst-sub">{}</text></g>"#,
                esc(&inst.id),
                esc(&inst.version),
                esc(&inst.color),
                health_fill(&inst.color),
                ix + 6.0,
                iy + 13.0,
                esc(&truncate(&inst.id, 16)),
                ix + 6.0,
                iy + 26.0,
                esc(&truncate(&inst.version, 16)),
            ));
        }
    }
    let zones_w = zone_w * zone_count + gap * (zone_count - 1.0);
    security_group(
        &mut parts,
        (12.0, y - 8.0, zones_w + 16.0, zone_h + 16.0),
        if worker_env {
            "security group: instances (from the dispatcher and control plane only)"
        } else {
            "security group: instances (from the balancer and control plane only)"
        },
    );
    y += zone_h;
    if !a.resources.is_empty() {
        y += 8.0;
        arrow(&mut parts, cx, y, cx, y + 26.0);
        y += 30.0;
        y = resources_row(&mut parts, &a.resources, width, y);
    }
    if !worker_env {
        if let Some((qname, depth)) = &a.queue {
            arrow(&mut parts, cx, y, cx, y + 22.0);
            y += 24.0;
            box_(
                &mut parts,
                y,
                300.0,
                &format!("queue {qname}"),
                &format!("{depth} waiting"),
                "arch-queue",
            );
            if let Some((wname, color, count)) = &a.worker {
                arrow(&mut parts, cx, y + 40.0, cx, y + 62.0);
                y += 64.0;
                parts.push(format!(
                    r#"<g class="arch-worker"><rect x="{:.1}" y="{y:.1}" width="300" height="40" rx="6" stroke="{}"/><text x="{cx:.1}" y="{:.1}" text-anchor="middle" class="arch-label">worker {}</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle" class="arch-sub">{count} instance(s), {}</text></g>"#,
                    cx - 150.0,
                    health_fill(color),
                    y + 17.0,
                    esc(wname),
                    y + 32.0,
                    esc(color)
                ));
            }
            y += 40.0;
        }
    }
    let height = y + 10.0;
    let _ = write!(
        s,
        r##"<svg class="arch" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="architecture of {}" xmlns="http://www.w3.org/2000/svg"><defs><marker id="arrowhead" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#667"/></marker></defs>"##,
        esc(&a.environment)
    );
    for p in parts {
        s.push_str(&p);
    }
    s.push_str("</svg>");
    s
}

/// A dashed boundary with its label in the top-right corner.
fn security_group(parts: &mut Vec<String>, (x, y, w, h): (f64, f64, f64, f64), label: &str) {
    parts.push(format!(
        r##"<g class="arch-sg"><rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" rx="10" fill="none" stroke="#9aa0a6" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="arch-sub">{}</text></g>"##,
        x + w - 8.0,
        y + 12.0,
        esc(label)
    ));
}

/// The attached resources, health-coloured, inside their security group starting at `y`;
/// returns the y below it.
fn resources_row(parts: &mut Vec<String>, resources: &[ResourceNode], width: f64, y: f64) -> f64 {
    const BOX_W: f64 = 200.0;
    let per_row = ((width - 48.0) / (BOX_W + 8.0)).floor().max(1.0) as usize;
    let rows = resources.len().div_ceil(per_row) as f64;
    let h = 26.0 + rows * 48.0;
    security_group(
        parts,
        (12.0, y, width - 24.0, h),
        "security group: resources (from this environment's instances only)",
    );
    for (k, r) in resources.iter().enumerate() {
        let (row, col) = ((k / per_row) as f64, (k % per_row) as f64);
        let rx = 24.0 + col * (BOX_W + 8.0);
        let ry = y + 20.0 + row * 48.0;
        parts.push(format!(
            r#"<g class="arch-resource"><title>{} ({}): {}</title><rect x="{rx:.1}" y="{ry:.1}" width="{BOX_W}" height="40" rx="6" fill="{}"/><text x="{:.1}" y="{:.1}" class="arch-inst-label">{} · {}</text><text x="{:.1}" y="{:.1}" class="arch-inst-sub">{}</text></g>"#,
            esc(&r.name),
            esc(&r.kind),
            esc(&r.state),
            health_fill(&r.color),
            rx + 8.0,
            ry + 16.0,
            esc(&truncate(&r.name, 20)),
            esc(&r.kind),
            rx + 8.0,
            ry + 32.0,
            esc(&truncate(&r.state, 28)),
        ));
    }
    y + h
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_in_charts_and_pictures() {
        let chart = line_chart("<b>x</b>", "ms", &[]);
        assert!(!chart.contains("<b>"));
        assert!(chart.contains("no samples yet"));
        let pic = architecture(&Architecture {
            environment: "e".into(),
            host: Some("<script>.localhost".into()),
            zones: vec![(
                "a\"".into(),
                vec![InstanceNode {
                    id: "i-<1>".into(),
                    version: "v&1".into(),
                    color: "Green".into(),
                }],
            )],
            queue: Some(("q".into(), 3)),
            worker: Some(("w<".into(), "Red".into(), 2)),
            resources: vec![ResourceNode {
                name: "cache<x>".into(),
                kind: "redis".into(),
                state: "Available, unhealthy".into(),
                color: "Red".into(),
            }],
        });
        assert!(!pic.contains("<script>"));
        assert!(!pic.contains("i-<1>"));
        assert!(pic.contains("i-&lt;1&gt;"));
        assert!(pic.contains("v&amp;1"));
        assert!(pic.contains("worker w&lt;"));
        assert!(pic.contains("#2e7d32"), "a Green instance is drawn green");
        assert!(!pic.contains("cache<x>"));
        assert!(pic.contains("cache&lt;x&gt; · redis"), "{pic}");
        assert!(pic.contains("Available, unhealthy"));
        assert!(
            pic.contains("#c62828"),
            "an unhealthy resource is drawn red"
        );
        assert!(pic.contains("from this environment&#39;s instances only"));
        assert!(pic.contains("from the balancer and control plane only"));
    }

    #[test]
    fn chart_scales_to_a_round_top() {
        assert_eq!(nice_ceiling(0.3), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        let c = line_chart(
            "rps",
            "",
            &[Series {
                name: "rps",
                color: "#123",
                points: vec![(3600.0, 0.0), (0.0, 7.0)],
            }],
        );
        assert!(c.contains("polyline"));
        assert!(c.contains(">10<"), "top label is 10: {c}");
    }
}
