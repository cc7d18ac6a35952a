//! Writing metrics in Prometheus text format (version 0.0.4), shared by the agent's REST
//! `GET /metrics` (Patroni's names) and the client port's `GET /metrics` (etcd's names):
//! one family at a time, each with HELP and TYPE.
//!
//! Owns: the text layout only. What is measured, and the names, belong to the callers.

use std::fmt::Write;

/// A histogram as Prometheus shows it: cumulative counts per upper bound (seconds), the
/// total count and the sum.
#[derive(Debug, Clone, Copy)]
pub struct Histogram<'a> {
    pub buckets: &'a [(f64, u64)],
    pub count: u64,
    pub sum: f64,
}

/// A metrics page being written.
#[derive(Debug, Default)]
pub struct Page {
    out: String,
}

/// `{labels}`, with `extra` appended; nothing when both are empty.
fn braces(labels: &str, extra: &str) -> String {
    match (labels.is_empty(), extra.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!("{{{labels}}}"),
        (true, false) => format!("{{{extra}}}"),
        (false, false) => format!("{{{labels},{extra}}}"),
    }
}

impl Page {
    pub fn new() -> Self {
        Self::default()
    }

    fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One gauge; `labels` is `key="value",...` (escape values with [`escape`]) or empty.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &str, value: f64) {
        self.family(name, help, "gauge");
        let _ = writeln!(self.out, "{name}{} {value}", braces(labels, ""));
    }

    /// One counter.
    pub fn counter(&mut self, name: &str, help: &str, labels: &str, value: f64) {
        self.family(name, help, "counter");
        let _ = writeln!(self.out, "{name}{} {value}", braces(labels, ""));
    }

    /// One histogram: cumulative `_bucket`s, `+Inf`, `_sum`, `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, labels: &str, h: Histogram<'_>) {
        self.family(name, help, "histogram");
        for (bound, count) in h.buckets {
            let _ = writeln!(self.out, "{name}_bucket{} {count}", braces(labels, &format!("le=\"{bound}\"")));
        }
        let _ = writeln!(self.out, "{name}_bucket{} {}", braces(labels, "le=\"+Inf\""), h.count);
        let _ = writeln!(self.out, "{name}_sum{} {}", braces(labels, ""), h.sum);
        let _ = writeln!(self.out, "{name}_count{} {}", braces(labels, ""), h.count);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value escaped for the text format.
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use prometheus_parse::{Scrape, Value};

    use super::*;

    #[test]
    fn families_parse_with_and_without_labels() {
        let mut page = Page::new();
        page.gauge("up", "Whether it is up.", "", 1.0);
        page.counter("seen_total", "Things seen.", &format!("name=\"{}\"", escape("a\"b")), 3.0);
        let buckets = [(0.001, 1), (0.5, 2)];
        page.histogram("took_seconds", "How long.", "", Histogram { buckets: &buckets, count: 3, sum: 2.5 });
        let text = page.finish();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("text format");
        let value = |name: &str| scrape.samples.iter().find(|s| s.metric == name).map(|s| s.value.clone());
        assert!(matches!(value("up"), Some(Value::Gauge(v)) if v == 1.0), "{text}");
        let seen = scrape.samples.iter().find(|s| s.metric == "seen_total").expect("counter");
        // The parser keeps escapes as written.
        assert_eq!(seen.labels.get("name"), Some(r#"a\"b"#));
        let Some(Value::Histogram(h)) = value("took_seconds") else { panic!("{text}") };
        let counts: Vec<f64> = h.iter().map(|b| b.count).collect();
        assert_eq!(counts, [1.0, 2.0, 3.0]);
    }
}
