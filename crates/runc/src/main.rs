//! warden-runc: a runc-compatible OCI runtime. Flags, output and error wording follow runc
//! closely enough that containerd, podman and Docker can call it in runc's place.

mod cli;
mod commands;
mod events;
mod log;
mod tty;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let logger = match log::Logger::new(
        cli.global.log.as_deref(),
        cli.global.log_format,
        cli.global.debug,
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("open log {:?}: {e}", cli.global.log);
            std::process::exit(1);
        }
    };
    let logger = std::sync::Arc::new(logger);
    let _ = tracing::subscriber::set_global_default(SharedLogger(logger.clone()));
    match commands::run(&cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            logger.fatal(&error_line(&e));
            std::process::exit(1);
        }
    }
}

/// The error and its causes on one line, `a: b: c` as anyhow's `{:#}` prints them, but a
/// cause whose text already ends the line is not said again: the runtime's errors name their
/// io error in their own message (`write "99" to .../cpuset.cpus: Numerical result out of
/// range (os error 34)`) and also give it as their source, which `{:#}` then repeated.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Lets main keep a handle on the logger it installed as the global subscriber.
struct SharedLogger(std::sync::Arc<log::Logger>);

impl tracing::Subscriber for SharedLogger {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        self.0.enabled(m)
    }
    fn new_span(&self, a: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.0.new_span(a)
    }
    fn record(&self, s: &tracing::span::Id, r: &tracing::span::Record<'_>) {
        self.0.record(s, r)
    }
    fn record_follows_from(&self, s: &tracing::span::Id, f: &tracing::span::Id) {
        self.0.record_follows_from(s, f)
    }
    fn event(&self, e: &tracing::Event<'_>) {
        self.0.event(e)
    }
    fn enter(&self, s: &tracing::span::Id) {
        self.0.enter(s)
    }
    fn exit(&self, s: &tracing::span::Id) {
        self.0.exit(s)
    }
}

#[cfg(test)]
mod tests {
    use super::error_line;

    /// An error in the runtime's manner: its message names its source, which it also gives.
    #[derive(Debug)]
    struct Write {
        path: &'static str,
        value: &'static str,
        source: std::io::Error,
    }

    impl std::fmt::Display for Write {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "write {:?} to {}: {}",
                self.value, self.path, self.source
            )
        }
    }

    impl std::error::Error for Write {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(libc::ERANGE);
        let want = format!("write \"99\" to cpuset.cpus: {io}");
        let e = anyhow::Error::new(Write {
            path: "cpuset.cpus",
            value: "99",
            source: io,
        });
        assert_eq!(error_line(&e), want);
        // Context the message does not carry is still said.
        let e = e.context("update");
        assert_eq!(error_line(&e), format!("update: {want}"));
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_line(&e), "outer: inner");
    }
}
