//! Tables, the machine they were measured on, and `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::Part;

/// What a part measured: tables plus notes printed under them.
#[derive(Default)]
pub struct Section {
    pub title: String,
    pub intro: String,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
}

/// A Markdown table.
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let cols = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).map_or("", String::as_str);
                let _ = write!(s, " {c:<w$} |");
            }
            s
        };
        let mut out = line(&self.headers);
        out.push('\n');
        out.push('|');
        for w in widths.iter().take(cols) {
            let _ = write!(out, "{}|", "-".repeat(w + 2));
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

impl Section {
    /// The section as Markdown, between markers so a later run can replace it alone.
    pub fn render(&self, machine: &Machine, part: Part) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", start_marker(part));
        let _ = writeln!(out, "## {}\n", self.title);
        if !self.intro.is_empty() {
            let _ = writeln!(out, "{}\n", self.intro);
        }
        let _ = writeln!(
            out,
            "Measured {} on {}.  \nCommand: `{}`\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            machine.describe(),
            command_line()
        );
        for table in &self.tables {
            out.push_str(&table.render());
            out.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "{}", end_marker(part));
        out
    }
}

/// The command that produced the figures, as a user would type it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run --release -p sprout-bench -- {}", args.join(" "))
}

/// The machine the figures come from.
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub cpu: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: mem_kib / (1024.0 * 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            cpu,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB memory, Linux {}",
            self.cores, self.cpu, self.memory_gib, self.kernel
        )
    }
}

/// The repository root when run from a checkout (where `BENCHMARKS.md` belongs), else `.`.
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if root.join("Cargo.toml").is_file() {
        root.canonicalize().unwrap_or(root)
    } else {
        PathBuf::from(".")
    }
}

fn start_marker(part: Part) -> String {
    format!("<!-- sprout-bench:{} -->", part.name())
}

fn end_marker(part: Part) -> String {
    format!("<!-- /sprout-bench:{} -->", part.name())
}

const HEADER: &str = "# Sprout benchmarks\n\n\
Written by `cargo run --release -p sprout-bench -- all` (or one part: `proxy`, `containers`, \
`deploy`, `heal`, `worker`, `footprint`, `resources`, which rewrites only its own section). Figures are \
printed, not asserted: they depend on the machine, named in each section. The command needs \
`wrk`, `nginx` and `haproxy` (`apt-get install wrk nginx-light haproxy`), Docker and the \
platform images for the parts that start environments.\n";

/// Replaces (or adds) one part's section of the report, keeping the others.
pub fn write_section(path: &Path, part: Part, text: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::from(HEADER);
    for p in Part::ALL {
        let section = if p == part {
            Some(text.trim_end().to_string())
        } else {
            extract(&old, p)
        };
        if let Some(s) = section {
            out.push('\n');
            out.push_str(&s);
            out.push('\n');
        }
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

fn extract(text: &str, part: Part) -> Option<String> {
    let start = text.find(&start_marker(part))?;
    let end_marker = end_marker(part);
    let end = text[start..].find(&end_marker)? + start + end_marker.len();
    Some(text[start..end].to_string())
}

/// `12345.6` → `12,346`.
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub fn secs(d: std::time::Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place_and_kept_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("B.md");
        let sec = |part: Part, body: &str| {
            format!("{}\n{body}\n{}\n", start_marker(part), end_marker(part))
        };
        write_section(&path, Part::Heal, &sec(Part::Heal, "heal-1")).unwrap();
        write_section(&path, Part::Proxy, &sec(Part::Proxy, "proxy-1")).unwrap();
        write_section(&path, Part::Heal, &sec(Part::Heal, "heal-2")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Sprout benchmarks"));
        assert!(!text.contains("heal-1"));
        let (p, h) = (text.find("proxy-1").unwrap(), text.find("heal-2").unwrap());
        assert!(p < h, "sections follow the parts' order:\n{text}");
    }

    #[test]
    fn tables_render_as_markdown() {
        let mut t = Table::new(&["a", "bb"]);
        t.row(vec!["1".into(), "22222".into()]);
        assert_eq!(t.render(), "| a | bb    |\n|---|-------|\n| 1 | 22222 |\n");
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
