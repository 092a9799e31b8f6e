//! Argument structs only: what runc accepts, parsed. Behaviour lives in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::log;

#[derive(Parser, Debug)]
#[command(
    name = "warden-runc",
    version,
    about = "A runc-compatible OCI container runtime"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct Global {
    /// Root directory for the state of containers.
    #[arg(long, global = true, default_value = "/run/warden-runc")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: log::Format,
    /// Log debug messages too.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Let systemd make the container's cgroup: cgroupsPath is `slice:prefix:name` (default
    /// `system.slice:runc:<id>`) and the container gets the transient scope
    /// `<prefix>-<name>.scope`. Where systemd does not manage the host, the path is mapped to
    /// a plain cgroupfs path instead.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility (auto-detected). Before the command only, as in
    /// runc: `spec --rootless` is the spec command's own flag.
    #[arg(long, value_name = "true|false|auto")]
    pub rootless: Option<String>,
    /// The CRIU binary `checkpoint` and `restore` run (default: `criu` on PATH).
    #[arg(long, global = true)]
    pub criu: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Container id.
    pub id: String,
    /// Path to the bundle (default: the current directory).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// A unix socket that receives the master end of the container's console.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Write the init's pid to this file.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Use chroot(2) (after moving the rootfs to /) instead of pivot_root(2).
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not give the container a new session keyring.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (from 3 on) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a default config.json to the bundle.
    Spec {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        /// A spec for a rootless container (a user namespace mapping the caller to root).
        #[arg(long)]
        rootless: bool,
    },
    /// Create a container; its init waits for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container, wait for it and delete it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container is started.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Do not delete the container after it exits.
        #[arg(long)]
        keep: bool,
        /// Do not make this process a child subreaper.
        #[arg(long = "no-subreaper")]
        no_subreaper: bool,
    },
    /// Run a process in a running container.
    Exec(Box<ExecArgs>),
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal to a container's init (default SIGTERM).
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Signal every process in the container.
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// Delete a stopped container.
    Delete {
        id: String,
        /// Kill the container first if it is still running.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// List containers.
    List {
        #[arg(long, short = 'f', value_enum, default_value = "table")]
        format: ListFormat,
        /// Print only the ids.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the processes of a container.
    Ps {
        id: String,
        #[arg(long, short = 'f', value_enum, default_value = "table")]
        format: ListFormat,
        /// Options passed to ps(1).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print what this runtime supports, as JSON.
    Features,
    /// Change a running (or paused, or created) container's resource limits.
    Update(Box<UpdateArgs>),
    /// Checkpoint a running container with CRIU (it is removed unless --leave-running).
    Checkpoint(Box<CheckpointArgs>),
    /// Restore a container from a CRIU checkpoint.
    Restore(Box<RestoreArgs>),
    /// Print a container's usage (and OOM kills) as JSON lines until it stops.
    Events {
        id: String,
        /// Print one stats line and exit.
        #[arg(long)]
        stats: bool,
        /// Time between stats lines (`5s`, `500ms`, `1m`).
        #[arg(long, default_value = "5s", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
}

/// runc's `--interval` (a Go duration): a number and a unit of ms, s, m or h.
fn parse_interval(v: &str) -> Result<std::time::Duration, String> {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: f64 = digits
        .parse()
        .map_err(|_| format!("{v:?}: want a duration such as 5s or 500ms"))?;
    let secs = match &v[digits.len()..] {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("{v:?}: unknown unit {u:?} (want ms, s, m or h)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{v:?}: not a duration"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// runc's `update` flags: `--resources FILE` (an OCI `linux.resources` object as JSON, `-`
/// for stdin; containerd sends it that way) and one flag per common limit, which win over
/// the file. Sizes take runc's suffixes (`64m`, `1g`); `-1` is unlimited.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    pub id: String,
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    #[arg(long = "memory", allow_hyphen_values = true)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    #[arg(long = "kernel-memory", allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    pub cpu_share: Option<u64>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Intel RDT: refused (this runtime has no resctrl support).
    #[arg(long = "l3-cache-schema")]
    pub l3_cache_schema: Option<String>,
    #[arg(long = "mem-bw-schema")]
    pub mem_bw_schema: Option<String>,
}

/// runc 1.1's `checkpoint` flags. Those this runtime does not do are parsed so that they can
/// be refused by name.
#[derive(Args, Debug)]
pub struct CheckpointArgs {
    pub id: String,
    /// Where the images go (default: ./checkpoint).
    #[arg(long = "image-path")]
    pub image_path: Option<PathBuf>,
    /// Where CRIU writes its log, dump.log (default: the image path).
    #[arg(long = "work-path")]
    pub work_path: Option<PathBuf>,
    /// Keep the container running after the checkpoint.
    #[arg(long = "leave-running")]
    pub leave_running: bool,
    /// Checkpoint established TCP connections.
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Allow a shell job (a process tree sharing its session with the caller).
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// Checkpoint file locks.
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// soft, full, strict or ignore.
    #[arg(long = "manage-cgroups-mode")]
    pub manage_cgroups_mode: Option<String>,
    /// Deduplicate the images against a parent's.
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    /// Refused: incremental checkpoints are not supported.
    #[arg(long = "parent-path")]
    pub parent_path: Option<PathBuf>,
    /// Refused: incremental checkpoints are not supported.
    #[arg(long = "pre-dump")]
    pub pre_dump: bool,
    /// Refused.
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
    /// Refused.
    #[arg(long = "status-fd")]
    pub status_fd: Option<String>,
    /// Refused.
    #[arg(long = "page-server")]
    pub page_server: Option<String>,
    /// Refused.
    #[arg(long = "empty-ns")]
    pub empty_ns: Vec<String>,
}

/// runc 1.1's `restore` flags; as for checkpoint, the ones not done are refused by name.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    pub id: String,
    /// Where the images are (default: ./checkpoint).
    #[arg(long = "image-path")]
    pub image_path: Option<PathBuf>,
    /// Where CRIU writes its log, restore.log (default: the image path).
    #[arg(long = "work-path")]
    pub work_path: Option<PathBuf>,
    /// The bundle of the restored container (default: the current directory).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Return once the container is restored.
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the master end of the restored terminal.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Do not make this process a child subreaper (foreground restore).
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    /// Accepted for runc compatibility: CRIU sets up the root of the restored tree itself.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    #[arg(long = "manage-cgroups-mode")]
    pub manage_cgroups_mode: Option<String>,
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    /// Refused.
    #[arg(long = "empty-ns")]
    pub empty_ns: Vec<String>,
    /// Refused.
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
    /// Refused.
    #[arg(long = "lsm-profile")]
    pub lsm_profile: Option<String>,
    /// Refused.
    #[arg(long = "lsm-mount-context")]
    pub lsm_mount_context: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    pub id: String,
    /// The command and its arguments (default: the --process file's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// A JSON file with the process to run (the `process` object of a config.json).
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Working directory in the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables (KEY=VALUE).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// Allocate a terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// uid[:gid] to run as.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Extra capabilities (e.g. CAP_NET_ADMIN).
    #[arg(long, short = 'c')]
    pub cap: Vec<String>,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Return once the process has started.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Exec even if the container is paused.
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Accepted for runc compatibility (SELinux is not supported).
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// The AppArmor profile of the process (where the host enforces AppArmor).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Run the process in an existing sub-cgroup of the container's: `PATH` in every
    /// hierarchy, or `CONTROLLER[,CONTROLLER...]:PATH` for those (cgroup v1); repeatable.
    #[arg(long)]
    pub cgroup: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::parse_interval;
    use std::time::Duration;

    #[test]
    fn intervals_as_go_durations() {
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_interval("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_interval("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_interval("5").is_err());
        assert!(parse_interval("5d").is_err());
        assert!(parse_interval("-1s").is_err());
    }
}
