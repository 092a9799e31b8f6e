//! `wardend`: the Warden daemon. See docs/daemon.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

use warden_daemon::config::{Config, Host, Overrides};
use warden_daemon::listen::{bind_unix, Pidfile};
use warden_daemon::manager::Manager;
use warden_daemon::server::{serve, ServerOptions};
use warden_daemon::{health, logging};

/// The Warden container daemon.
#[derive(Debug, Parser)]
#[command(name = "wardend", version)]
struct Args {
    /// YAML configuration file (every key has a default; without it, the defaults).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Unix socket to listen on (overrides server.unix_domain_path).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Container depot directory (overrides server.container_depot_path).
    #[arg(long, value_name = "DIR")]
    depot: Option<PathBuf>,
    /// Default container rootfs (overrides server.container_rootfs_path).
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Runtime worker threads: 0 runs everything on one thread; default: one per CPU.
    #[arg(long, value_name = "N")]
    worker_threads: Option<usize>,
    /// Check the configuration, print it resolved, and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    // The single-threaded helpers wardend re-executes itself as, before any thread starts.
    if let Some(code) = warden_daemon::jobs::keeper::main_if_keeper() {
        std::process::exit(code);
    }
    if let Some(code) = warden_daemon::container::runtime::main_if_create() {
        return ExitCode::from(code as u8);
    }
    let args = Args::parse();
    let overrides = Overrides {
        socket: args.socket.clone(),
        depot: args.depot.clone(),
        rootfs: args.rootfs.clone(),
    };
    let config = match Config::load(args.config.as_deref(), &overrides, Host::detect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wardend: {e}");
            return ExitCode::from(2);
        }
    };
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        if let Err(e) = config.check_host(&passwd) {
            eprintln!("wardend: {e}");
            return ExitCode::from(2);
        }
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    if let Err(e) = config.check_namespace(
        &read("/etc/passwd"),
        &read("/etc/group"),
        &read("/etc/subuid"),
        &read("/etc/subgid"),
    ) {
        eprintln!("wardend: {e}");
        return ExitCode::from(2);
    }
    if args.check_config {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logging::init(&config.logging) {
        eprintln!("wardend: {e:#}");
        return ExitCode::from(2);
    }
    match run(config, args.worker_threads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("wardend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft open-files limit to the hard one: every client connection is an fd.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised RLIMIT_NOFILE"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise RLIMIT_NOFILE"),
        },
        Ok((soft, _)) => tracing::debug!(limit = soft, "RLIMIT_NOFILE"),
        Err(e) => tracing::warn!(error = %e, "cannot read RLIMIT_NOFILE"),
    }
}

fn run(config: Config, worker_threads: Option<usize>) -> anyhow::Result<()> {
    raise_nofile();
    if config.logging.syslog.is_some() {
        tracing::warn!("logging.syslog is not supported and is ignored; use logging.file");
    }
    let runtime = match worker_threads {
        Some(0) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .context("cannot start the tokio runtime")?;
    runtime.block_on(daemon(config))
}

async fn daemon(config: Config) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    // The original's drain (SPEC 3.11); here every shutdown drains.
    let mut sigusr2 = signal(SignalKind::user_defined2()).context("cannot handle SIGUSR2")?;

    let server = &config.server;
    let (listener, mut socket_file) =
        bind_unix(&server.unix_domain_path, server.unix_domain_permissions)?;
    let pidfile = server.pidfile.as_deref().map(Pidfile::create).transpose()?;
    let health = match config.health_check_port {
        Some(port) => {
            let listener = health::bind(port).await.with_context(|| {
                format!("cannot listen on 127.0.0.1:{port} (health_check_server.port)")
            })?;
            Some(tokio::spawn(health::serve(listener)))
        }
        None => None,
    };
    tracing::info!(
        socket = %server.unix_domain_path.display(),
        health_check_port = config.health_check_port,
        pid = std::process::id(),
        "wardend listening"
    );

    let exe = std::env::current_exe().context("cannot find wardend's own executable")?;
    let manager = Manager::start(config.clone(), exe).await?;
    let options = ServerOptions {
        max_payload: server.max_payload,
        shutdown_timeout: server.shutdown_timeout,
    };
    let shutdown = async {
        let name = tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
            _ = sigusr2.recv() => "SIGUSR2",
        };
        tracing::info!(signal = name, "shutdown requested");
        // New clients get ECONNREFUSED/ENOENT from now on, not a socket nobody serves.
        socket_file.remove();
    };
    let report = serve(listener, ArcHandler(manager), options, shutdown).await;
    if let Some(h) = health {
        h.abort();
    }
    drop(pidfile);
    tracing::info!(
        connections = report.connections,
        timed_out = report.timed_out,
        "wardend stopped"
    );
    Ok(())
}

/// The server takes its handler by value; the manager is shared with its own timers.
struct ArcHandler(Arc<Manager>);

impl warden_daemon::Handler for ArcHandler {
    async fn on_connect(&self, conn: &warden_daemon::ConnectionContext) {
        self.0.on_connect(conn).await
    }
    async fn handle(
        &self,
        ctx: &warden_daemon::RequestContext<'_>,
        request: warden_protocol::Request,
    ) -> warden_daemon::Reply {
        self.0.handle(ctx, request).await
    }
    async fn on_disconnect(&self, conn: &warden_daemon::ConnectionContext) {
        self.0.on_disconnect(conn).await
    }
    async fn on_shutdown(&self) {
        self.0.on_shutdown().await
    }
}
