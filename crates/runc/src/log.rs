//! runc's logging contract: `--log FILE` (default stderr) and `--log-format text|json`.
//! Lines look like logrus's, because containerd reads the last `"level":"error"` entry of
//! the JSON log to report why a runtime call failed:
//!
//! ```text
//! {"level":"error","msg":"container does not exist","time":"2026-11-24T06:20:31.000000000Z"}
//! time="2026-11-24T06:20:31.000000000Z" level=error msg="container does not exist"
//! ```

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub struct Logger {
    out: Mutex<Box<dyn Write + Send>>,
    /// True when `out` is a file, so errors must also go to stderr.
    to_file: bool,
    format: Format,
    max: Level,
}

impl Logger {
    pub fn new(
        path: Option<&std::path::Path>,
        format: Format,
        debug: bool,
    ) -> std::io::Result<Logger> {
        let (out, to_file): (Box<dyn Write + Send>, bool) = match path {
            Some(p) => (
                Box::new(File::options().create(true).append(true).open(p)?),
                true,
            ),
            None => (Box::new(std::io::stderr()), false),
        };
        Ok(Logger {
            out: Mutex::new(out),
            to_file,
            format,
            max: if debug { Level::DEBUG } else { Level::WARN },
        })
    }

    pub fn line(&self, level: Level, msg: &str) -> String {
        let level = level.as_str().to_ascii_lowercase();
        let level = if level == "warn" {
            "warning".to_string()
        } else {
            level
        };
        let time = warden_runtime::state::rfc3339_now();
        match self.format {
            Format::Json => {
                serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
            }
            Format::Text => format!("time={time:?} level={level} msg={msg:?}"),
        }
    }

    pub fn write(&self, level: Level, msg: &str) {
        let line = self.line(level, msg);
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }

    /// The way runc reports a fatal error: to the log, and plainly to stderr if the log is
    /// a file.
    pub fn fatal(&self, msg: &str) {
        self.write(Level::ERROR, msg);
        if self.to_file {
            eprintln!("{msg}");
        }
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut msg = Message(String::new());
        event.record(&mut msg);
        self.write(*event.metadata().level(), &msg.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_logrus() {
        let l = Logger::new(None, Format::Json, false).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&l.line(Level::ERROR, "container does not exist")).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container does not exist");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        let l = Logger::new(None, Format::Text, false).unwrap();
        let t = l.line(Level::WARN, "a \"b\"");
        assert!(t.contains("level=warning msg=\"a \\\"b\\\"\""), "{t}");
    }
}
