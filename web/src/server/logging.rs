//! Logging in Prometheus's style: one logfmt line per event,
//! `ts=2024-01-01T00:00:00.000Z level=info msg="Server is ready" key=value`, or one JSON object
//! per line with `--log.format=json`. Built on `tracing-subscriber`; the level comes from
//! `--log.level` unless `RUST_LOG` is set.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Installs the global logger. `level` is one of `debug info warn error`, `format` one of
/// `logfmt json`. Calling it twice is harmless (the second call does nothing).
pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let fmt = PromFormat {
        json: format == "json",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(fmt)
        .try_init();
}

/// The event formatter: logfmt or JSON lines.
#[derive(Clone, Copy, Debug)]
pub struct PromFormat {
    json: bool,
}

impl<S, N> FormatEvent<S, N> for PromFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ts = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let meta = event.metadata();
        let level = match *meta.level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            _ => "debug",
        };
        let caller = meta
            .module_path()
            .unwrap_or("")
            .rsplit("::")
            .next()
            .unwrap_or("");
        let caller = format!("{}:{}", caller, meta.line().unwrap_or(0));
        let mut v = Fields::default();
        event.record(&mut v);
        let mut line = String::with_capacity(128);
        if self.json {
            line.push('{');
            let mut pairs = vec![("ts", ts), ("caller", caller), ("level", level.to_string())];
            pairs.push(("msg", v.msg));
            for (i, (k, val)) in pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .chain(v.kv)
                .enumerate()
            {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "{}:{}", json_str(&k), json_str(&val));
            }
            line.push('}');
        } else {
            let _ = write!(line, "ts={ts} caller={caller} level={level}");
            if !v.msg.is_empty() {
                let _ = write!(line, " msg={}", logfmt_value(&v.msg));
            }
            for (k, val) in &v.kv {
                let _ = write!(line, " {}={}", k, logfmt_value(val));
            }
        }
        writeln!(w, "{line}")
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Quotes a logfmt value when it has spaces, quotes, `=` or control characters.
pub fn logfmt_value(s: &str) -> String {
    if !s.is_empty()
        && !s
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c.is_control())
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default)]
struct Fields {
    msg: String,
    kv: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.kv.push((field.name().to_string(), value.to_string()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let s = format!("{value:?}");
        if field.name() == "message" {
            self.msg = s;
        } else {
            self.kv.push((field.name().to_string(), s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_only_when_needed() {
        assert_eq!(logfmt_value("ready"), "ready");
        assert_eq!(logfmt_value("Server is ready"), "\"Server is ready\"");
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
    }
}
