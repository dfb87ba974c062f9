//! The report: one row per comparison (ours, the baseline, the ratio, the
//! goal), the absolute figures of every measurement beside it, as Markdown
//! and JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::Measured;

/// One comparison.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// `1a`, `2b`, …
    pub(crate) id: String,
    /// What is compared.
    pub(crate) what: String,
    /// Our figure, with its unit.
    pub(crate) ours: String,
    /// The baseline's figure, with its unit.
    pub(crate) baseline: String,
    /// ours / baseline (or the figure the goal is about).
    pub(crate) ratio: String,
    /// The goal, when the issue sets one.
    pub(crate) goal: String,
    /// Whether the goal is met (`None`: no goal).
    pub(crate) met: Option<bool>,
}

impl Row {
    pub(crate) fn new(id: &str, what: impl Into<String>) -> Self {
        Self {
            id: id.to_owned(),
            what: what.into(),
            ours: String::new(),
            baseline: String::new(),
            ratio: String::new(),
            goal: "—".to_owned(),
            met: None,
        }
    }

    pub(crate) fn figures(mut self, ours: impl Into<String>, baseline: impl Into<String>) -> Self {
        self.ours = ours.into();
        self.baseline = baseline.into();
        self
    }

    pub(crate) fn ratio(mut self, ratio: impl Into<String>) -> Self {
        self.ratio = ratio.into();
        self
    }

    pub(crate) fn goal(mut self, goal: impl Into<String>, met: bool) -> Self {
        self.goal = goal.into();
        self.met = Some(met);
        self
    }
}

/// The absolute figures of one measurement.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figures {
    /// Which measurement.
    pub(crate) name: String,
    /// Successful requests (or operations) per second.
    pub(crate) rate: f64,
    /// Latency quantiles, µs.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    /// Successful requests in the measured window, and failed ones.
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// Concurrency it ran at.
    pub(crate) concurrency: usize,
    /// CPU time of the server under test per request, µs (when known).
    pub(crate) server_cpu_us: Option<f64>,
    /// CPU time of Redis per request, µs (when known).
    pub(crate) redis_cpu_us: Option<f64>,
    /// The first unexpected answer, if any.
    pub(crate) first_error: Option<String>,
}

impl Figures {
    pub(crate) fn of(name: impl Into<String>, measured: &Measured, concurrency: usize) -> Self {
        Self {
            name: name.into(),
            rate: measured.rate(),
            p50_us: measured.quantile_us(0.5),
            p99_us: measured.quantile_us(0.99),
            max_us: measured.quantile_us(1.0),
            ok: measured.ok,
            errors: measured.errors,
            concurrency,
            server_cpu_us: None,
            redis_cpu_us: None,
            first_error: measured.first_error.clone(),
        }
    }

    /// `12 345 req/s, p50 81 µs, p99 240 µs`
    pub(crate) fn summary(&self, unit: &str) -> String {
        format!(
            "{} {unit}/s (p50 {}, p99 {})",
            thousands(self.rate),
            micros(self.p50_us),
            micros(self.p99_us)
        )
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) command: String,
    pub(crate) machine: Machine,
    pub(crate) settings: String,
    pub(crate) rows: Vec<Row>,
    pub(crate) figures: Vec<Figures>,
    pub(crate) notes: Vec<String>,
}

/// Where the run happened.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) date: String,
    pub(crate) cores: usize,
    pub(crate) cpu: String,
    pub(crate) kernel: String,
    pub(crate) redis: String,
    pub(crate) rustc: String,
}

impl Machine {
    pub(crate) fn detect(redis_version: String) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("model name"))
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|text| text.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let rustc = std::process::Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        Self {
            date: time::OffsetDateTime::now_utc().to_string(),
            cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            cpu,
            kernel,
            redis: redis_version,
            rustc,
        }
    }
}

impl Report {
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let machine = &self.machine;
        let _ = writeln!(out, "# token-bench results\n");
        let _ = writeln!(out, "- command: `{}`", self.command);
        let _ = writeln!(out, "- date: {}", machine.date);
        let _ = writeln!(
            out,
            "- machine: {} cores, {}, Linux {}, Redis {}, {}",
            machine.cores, machine.cpu, machine.kernel, machine.redis, machine.rustc
        );
        let _ = writeln!(out, "- settings: {}\n", self.settings);
        let _ = writeln!(
            out,
            "| row | what | ours | baseline | ratio | goal | met? |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for row in &self.rows {
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.id, row.what, row.ours, row.baseline, row.ratio, row.goal, met
            );
        }
        let _ = writeln!(out, "\n## Absolute figures\n");
        let _ = writeln!(
            out,
            "| measurement | conc. | rate /s | p50 | p99 | max | ok | errors | server CPU / req | Redis CPU / req |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for figure in &self.figures {
            let cpu = |value: Option<f64>| value.map_or_else(|| "—".to_owned(), micros);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                figure.name,
                figure.concurrency,
                thousands(figure.rate),
                micros(figure.p50_us),
                micros(figure.p99_us),
                micros(figure.max_us),
                figure.ok,
                figure.errors,
                cpu(figure.server_cpu_us),
                cpu(figure.redis_cpu_us),
            );
        }
        let errors: Vec<&Figures> = self
            .figures
            .iter()
            .filter(|f| f.first_error.is_some())
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(out, "\nFirst unexpected answers:\n");
            for figure in errors {
                let _ = writeln!(
                    out,
                    "- {}: {}",
                    figure.name,
                    figure.first_error.as_deref().unwrap_or_default()
                );
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\n## Notes\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

/// `12 345` (rounded to a whole number, thin groups).
/// The run of median `rate` among `runs` (a whole round, so its latency and
/// CPU figures stay together); `runs` must not be empty.
pub(crate) fn median_run<T>(mut runs: Vec<T>, rate: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

pub(crate) fn thousands(value: f64) -> String {
    let rounded = format!("{value:.0}");
    let (sign, digits) = rounded
        .strip_prefix('-')
        .map_or(("", rounded.as_str()), |rest| ("-", rest));
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    format!("{sign}{out}")
}

/// `81 µs`, `1.24 ms`, `2.5 s`.
pub(crate) fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// `0.93×`
pub(crate) fn times(ratio: f64) -> String {
    format!("{ratio:.2}×")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figures print the way the README shows them.
    #[test]
    fn formatting() {
        assert_eq!(thousands(1_234_567.4), "1 234 567");
        assert_eq!(thousands(999.6), "1 000");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(micros(81.2), "81 µs");
        assert_eq!(micros(1240.0), "1.24 ms");
        assert_eq!(times(0.934), "0.93×");
    }
}
