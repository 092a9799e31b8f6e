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
            logger.fatal(&format!("{e:#}"));
            std::process::exit(1);
        }
    }
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
