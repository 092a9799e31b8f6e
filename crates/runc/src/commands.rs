//! One function per command, each a thin layer over warden-runtime.

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use warden_runtime::{checkpoint, spec, state, Container, CreateOptions};

use crate::cli::{Cli, Command, CreateArgs, ExecArgs, ListFormat};

/// Runs the command; the result is the process's exit code.
pub fn run(cli: &Cli) -> Result<i32> {
    let root = cli.global.root.as_path();
    match &cli.command {
        Command::Spec { bundle, rootless } => spec_cmd(bundle, *rootless).map(|_| 0),
        Command::Create(args) => create(root, args, true, cli.global.systemd_cgroup).map(|_| 0),
        Command::Start { id } => Container::load(root, id)?
            .start()
            .map(|_| 0)
            .map_err(Into::into),
        Command::Run {
            create: args,
            detach,
            keep,
            no_subreaper,
        } => run_cmd(
            root,
            args,
            *detach,
            *keep,
            *no_subreaper,
            cli.global.systemd_cgroup,
        ),
        Command::Exec(args) => exec(root, args),
        Command::State { id } => {
            let c = Container::load(root, id)?;
            println!("{}", serde_json::to_string_pretty(&describe(&c))?);
            Ok(0)
        }
        Command::Kill { id, signal, all } => {
            let sig = parse_signal(signal)?;
            Container::load(root, id)?.kill(sig, *all)?;
            Ok(0)
        }
        Command::Delete { id, force } => delete(root, id, *force).map(|_| 0),
        Command::List { format, quiet } => list(root, *format, *quiet).map(|_| 0),
        Command::Pause { id } => Container::load(root, id)?
            .pause()
            .map(|_| 0)
            .map_err(Into::into),
        Command::Resume { id } => Container::load(root, id)?
            .resume()
            .map(|_| 0)
            .map_err(Into::into),
        Command::Ps {
            id,
            format,
            ps_args,
        } => ps(root, id, *format, ps_args).map(|_| 0),
        Command::Update(args) => update(root, args).map(|_| 0),
        Command::Checkpoint(args) => checkpoint(cli, args).map(|_| 0),
        Command::Restore(args) => restore(cli, args),
        Command::Events {
            id,
            stats,
            interval,
        } => crate::events::run(&Container::load(root, id)?, *stats, *interval).map(|_| 0),
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&features())?);
            Ok(0)
        }
    }
}

fn spec_cmd(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join(spec::CONFIG_FILE);
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let ids = rootless.then(|| {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    });
    let text = serde_json::to_string_pretty(&spec::default_spec(ids))?;
    std::fs::write(&path, text + "\n").with_context(|| format!("write {}", path.display()))
}

fn create_options(
    root: &Path,
    args: &CreateArgs,
    detach: bool,
    systemd_cgroup: bool,
) -> Result<CreateOptions> {
    Ok(CreateOptions {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        root: root.to_path_buf(),
        pid_file: args.pid_file.clone(),
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
        keyring_joined: false,
        preserve_fds: args.preserve_fds,
        console_socket: args.console_socket.clone(),
        detach,
        // Each warden-runc call compiles the profile (exec then reads create's program).
        seccomp_cache: None,
        // One create per process: read where it is needed.
        cgroup_mountinfo: None,
        systemd_cgroup,
        // runc's contract: the container's mount namespace is a copy of the caller's.
        mount_seed: None,
        mount_seed_shares: Vec::new(),
    })
}

fn create(
    root: &Path,
    args: &CreateArgs,
    detach: bool,
    systemd_cgroup: bool,
) -> Result<warden_runtime::Created> {
    Ok(warden_runtime::create(&create_options(
        root,
        args,
        detach,
        systemd_cgroup,
    )?)?)
}

/// The signals `run` passes on to the container instead of acting on them.
fn forwarded_signals() -> SigSet {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
    ] {
        set.remove(s);
    }
    set
}

fn run_cmd(
    root: &Path,
    args: &CreateArgs,
    detach: bool,
    keep: bool,
    no_subreaper: bool,
    systemd_cgroup: bool,
) -> Result<i32> {
    if detach {
        create(root, args, true, systemd_cgroup)?;
        Container::load(root, &args.id)?.start()?;
        return Ok(0);
    }
    if !no_subreaper {
        // Orphans of a container without its own pid namespace come to us, not to pid 1.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    // Block the signals we forward (SIGCHLD among them) before the init exists, so none is
    // lost; the init unblocks everything before exec.
    let signals = forwarded_signals();
    signals.thread_block().context("block signals")?;
    let created = create(root, args, false, systemd_cgroup)?;
    let container = Container::load(root, &args.id)?;
    let init = created.init;
    let tty = created.console.map(crate::tty::Proxy::start).transpose()?;
    let result = container
        .start()
        .map_err(anyhow::Error::from)
        .and_then(|_| wait_forwarding(init, &signals, tty.as_ref()));
    if let Some(tty) = tty {
        tty.finish();
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&signals), None);
    if !keep {
        if let Ok(c) = Container::load(root, &args.id) {
            c.delete(true)?;
        }
    }
    result
}

/// Waits for the init to exit, passing every other signal on to it. The exit code is the
/// init's, or 128 + the signal that killed it.
fn wait_forwarding(init: Pid, signals: &SigSet, tty: Option<&crate::tty::Proxy>) -> Result<i32> {
    loop {
        let sig = signals.wait().context("sigwait")?;
        if sig == Signal::SIGWINCH {
            // The pty tells the container's foreground group itself once its size changes.
            if let Some(tty) = tty {
                tty.resize();
            }
            continue;
        }
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(init, sig);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == init => return Ok(code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == init => return Ok(128 + s as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

/// The process `exec` runs: the --process file, or the container's own process with the
/// command and flags applied over it.
fn exec_process(c: &Container, args: &ExecArgs) -> Result<oci_spec::runtime::Process> {
    use oci_spec::runtime::{Capability, LinuxCapabilities};
    let mut p = match &args.process {
        Some(path) => {
            let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            spec::parse_process(&data)
                .map_err(|e| anyhow::anyhow!("parse {}: {e}", path.display()))?
        }
        None => {
            if args.command.is_empty() {
                bail!("exec needs a command or --process");
            }
            let mut p = c.config_process()?;
            p.set_terminal(Some(false));
            p
        }
    };
    if !args.command.is_empty() {
        p.set_args(Some(args.command.clone()));
    }
    if args.tty {
        p.set_terminal(Some(true));
    }
    if !args.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(args.env.iter().cloned());
        p.set_env(Some(env));
    }
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(profile) = &args.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(user) = &args.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u.parse::<u32>()?, g.parse::<u32>()?),
            None => (
                user.parse::<u32>()
                    .with_context(|| format!("user {user:?}: want uid[:gid]"))?,
                0,
            ),
        };
        p.user_mut().set_uid(uid);
        p.user_mut().set_gid(gid);
    }
    if !args.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(args.additional_gids.clone()));
    }
    if !args.cap.is_empty() {
        let mut caps = p
            .capabilities()
            .clone()
            .unwrap_or_else(LinuxCapabilities::default);
        for name in &args.cap {
            // runc takes `CAP_SYS_ADMIN`; oci-spec's names have no prefix.
            let bare = name.strip_prefix("CAP_").unwrap_or(name);
            let cap = Capability::from_str(bare)
                .map_err(|_| anyhow::anyhow!("unknown capability {name:?}"))?;
            let add = |set: Option<std::collections::HashSet<Capability>>| {
                let mut set = set.unwrap_or_default();
                set.insert(cap);
                Some(set)
            };
            caps.set_bounding(add(caps.bounding().clone()));
            caps.set_effective(add(caps.effective().clone()));
            caps.set_permitted(add(caps.permitted().clone()));
        }
        p.set_capabilities(Some(caps));
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

/// Fails naming the first flag that is set of those this runtime does not do.
fn refuse(flags: &[(bool, &str)]) -> Result<()> {
    match flags.iter().find(|(set, _)| *set) {
        Some((_, name)) => bail!("{name} is not supported"),
        None => Ok(()),
    }
}

/// runc's default image path: `checkpoint` in the current directory.
fn image_path(given: &Option<std::path::PathBuf>) -> Result<std::path::PathBuf> {
    let p = given
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("checkpoint"));
    std::path::absolute(&p).with_context(|| format!("resolve {}", p.display()))
}

fn cgroups_mode(v: &Option<String>) -> Result<Option<checkpoint::CgroupsMode>> {
    v.as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)
}

fn checkpoint(cli: &Cli, a: &crate::cli::CheckpointArgs) -> Result<()> {
    refuse(&[
        (a.pre_dump, "--pre-dump"),
        (a.parent_path.is_some(), "--parent-path"),
        (a.lazy_pages, "--lazy-pages"),
        (a.status_fd.is_some(), "--status-fd"),
        (a.page_server.is_some(), "--page-server"),
        (!a.empty_ns.is_empty(), "--empty-ns"),
    ])?;
    let opts = checkpoint::CheckpointOptions {
        criu: checkpoint::CriuOptions {
            criu: cli.global.criu.clone(),
            image_path: image_path(&a.image_path)?,
            work_path: a.work_path.clone(),
            tcp_established: a.tcp_established,
            ext_unix_sk: a.ext_unix_sk,
            shell_job: a.shell_job,
            file_locks: a.file_locks,
            auto_dedup: a.auto_dedup,
            manage_cgroups_mode: cgroups_mode(&a.manage_cgroups_mode)?,
        },
        leave_running: a.leave_running,
    };
    Ok(Container::load(&cli.global.root, &a.id)?.checkpoint(&opts)?)
}

/// runc's `restore`: with `--detach` it returns once the container runs; in the foreground
/// it stays, as `run` does, passing signals on and returning the container's exit code,
/// then deletes it.
fn restore(cli: &Cli, a: &crate::cli::RestoreArgs) -> Result<i32> {
    refuse(&[
        (!a.empty_ns.is_empty(), "--empty-ns"),
        (a.lazy_pages, "--lazy-pages"),
        (a.lsm_profile.is_some(), "--lsm-profile"),
        (a.lsm_mount_context.is_some(), "--lsm-mount-context"),
    ])?;
    let root = cli.global.root.as_path();
    let opts = checkpoint::RestoreOptions {
        criu: checkpoint::CriuOptions {
            criu: cli.global.criu.clone(),
            image_path: image_path(&a.image_path)?,
            work_path: a.work_path.clone(),
            tcp_established: a.tcp_established,
            ext_unix_sk: a.ext_unix_sk,
            shell_job: a.shell_job,
            file_locks: a.file_locks,
            auto_dedup: a.auto_dedup,
            manage_cgroups_mode: cgroups_mode(&a.manage_cgroups_mode)?,
        },
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        root: root.to_path_buf(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        detach: a.detach,
        systemd_cgroup: cli.global.systemd_cgroup,
    };
    if a.detach {
        checkpoint::restore(&opts)?;
        return Ok(0);
    }
    if !a.no_subreaper {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    // CRIU must not inherit a blocked SIGCHLD: block only once it is done, and look for an
    // init that is gone already (its SIGCHLD came before the block).
    let restored = checkpoint::restore(&opts)?;
    let signals = forwarded_signals();
    signals.thread_block().context("block signals")?;
    let tty = restored.console.map(crate::tty::Proxy::start).transpose()?;
    let result = match waitpid(restored.init, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(code),
        Ok(WaitStatus::Signaled(_, s, _)) => Ok(128 + s as i32),
        _ => wait_forwarding(restored.init, &signals, tty.as_ref()),
    };
    if let Some(tty) = tty {
        tty.finish();
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&signals), None);
    if let Ok(c) = Container::load(root, &a.id) {
        c.delete(true)?;
    }
    result
}

/// runc's `update`: the `--resources` document, then the flags over it.
fn update(root: &Path, args: &crate::cli::UpdateArgs) -> Result<()> {
    if args.l3_cache_schema.is_some() || args.mem_bw_schema.is_some() {
        bail!(
            "--l3-cache-schema and --mem-bw-schema are Intel RDT settings, which this runtime \
             does not support"
        );
    }
    let mut c = Container::load(root, &args.id)?;
    let mut r = match &args.resources {
        None => serde_json::json!({}),
        Some(path) => {
            let data = if path.as_os_str() == "-" {
                let mut d = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut d)
                    .context("read the resources from stdin")?;
                d
            } else {
                std::fs::read(path).with_context(|| format!("read {}", path.display()))?
            };
            serde_json::from_slice(&data).with_context(|| {
                format!(
                    "--resources {}: not a linux.resources object",
                    path.display()
                )
            })?
        }
    };
    if !r.is_object() {
        bail!("--resources: not a linux.resources object");
    }
    let mut set = |section: &str, key: &str, value: serde_json::Value| {
        if !r[section].is_object() {
            r[section] = serde_json::json!({});
        }
        r[section][key] = value;
    };
    for (flag, key, v) in [
        ("--memory", "limit", &args.memory),
        (
            "--memory-reservation",
            "reservation",
            &args.memory_reservation,
        ),
        ("--memory-swap", "swap", &args.memory_swap),
        ("--kernel-memory", "kernel", &args.kernel_memory),
        ("--kernel-memory-tcp", "kernelTCP", &args.kernel_memory_tcp),
    ] {
        if let Some(v) = v {
            set("memory", key, size(flag, v)?.into());
        }
    }
    if let Some(v) = args.cpu_share {
        set("cpu", "shares", v.into());
    }
    if let Some(v) = args.cpu_quota {
        set("cpu", "quota", v.into());
    }
    if let Some(v) = args.cpu_period {
        set("cpu", "period", v.into());
    }
    if let Some(v) = args.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", v.into());
    }
    if let Some(v) = args.cpu_rt_period {
        set("cpu", "realtimePeriod", v.into());
    }
    if let Some(v) = &args.cpuset_cpus {
        set("cpu", "cpus", v.clone().into());
    }
    if let Some(v) = &args.cpuset_mems {
        set("cpu", "mems", v.clone().into());
    }
    if let Some(v) = args.pids_limit {
        set("pids", "limit", v.into());
    }
    if let Some(v) = args.blkio_weight {
        set("blockIO", "weight", v.into());
    }
    let resources: oci_spec::runtime::LinuxResources =
        serde_json::from_value(r).context("the resources to update")?;
    spec::check_resources(&resources).map_err(anyhow::Error::msg)?;
    if let Some(m) = resources.memory() {
        // runc 1.2's checkBeforeUpdate: a limit below what the container uses now would
        // reclaim or OOM-kill it; refuse it instead, changing nothing.
        if let (Some(true), Some(limit)) = (m.check_before_update(), m.limit().filter(|&l| l > 0)) {
            let usage = c.stats()?.memory.usage.usage;
            if (limit as u64) < usage {
                bail!(
                    "linux.resources.memory.checkBeforeUpdate: the new limit {limit} is below \
                     the container's current memory usage {usage}"
                );
            }
        }
    }
    Ok(c.update(&resources)?)
}

/// A size as runc's update takes it: bytes, or a number with a k, m, g, t (or kb, mb...)
/// suffix in powers of 1024; `-1` is unlimited.
fn size(flag: &str, v: &str) -> Result<i64> {
    if v == "-1" {
        return Ok(-1);
    }
    let lower = v.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => bail!("{flag} {v:?}: unknown unit {unit:?} (want b, k, m, g or t)"),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag} {v:?}: not a size"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| anyhow::anyhow!("{flag} {v:?}: too large"))
}

/// runc's `exec --cgroup` values: `PATH` for every hierarchy, `CONTROLLER[,...]:PATH` for
/// those controllers.
fn sub_cgroup(values: &[String]) -> Result<warden_runtime::container::SubCgroup> {
    let mut sub = warden_runtime::container::SubCgroup::default();
    for v in values {
        match v.split_once(':') {
            Some((controllers, path)) => {
                for c in controllers.split(',') {
                    if c.is_empty() {
                        bail!("--cgroup {v:?}: empty controller name");
                    }
                    sub.per_controller
                        .insert(c.to_string(), std::path::PathBuf::from(path));
                }
            }
            None => sub.all = Some(std::path::PathBuf::from(v)),
        }
    }
    Ok(sub)
}

fn exec(root: &Path, args: &ExecArgs) -> Result<i32> {
    let c = Container::load(root, &args.id)?;
    let opts = warden_runtime::container::ExecOptions {
        process: exec_process(&c, args)?,
        console_socket: args.console_socket.clone(),
        detach: args.detach,
        pid_file: args.pid_file.clone(),
        preserve_fds: args.preserve_fds,
        ignore_paused: args.ignore_paused,
        sub_cgroup: sub_cgroup(&args.cgroup)?,
    };
    if args.detach {
        c.exec(&opts)?;
        return Ok(0);
    }
    let signals = forwarded_signals();
    signals.thread_block().context("block signals")?;
    let spawned = c.exec(&opts)?;
    let tty = spawned.console.map(crate::tty::Proxy::start).transpose()?;
    let result = wait_forwarding(spawned.pid, &signals, tty.as_ref());
    if let Some(tty) = tty {
        tty.finish();
    }
    result
}

fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    match Container::load(root, id) {
        Ok(c) => Ok(c.delete(force)?),
        // runc: deleting a container that is not there is fine with --force.
        Err(warden_runtime::Error::NotExist(_)) if force => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// runc's `state` document: the OCI state plus rootfs, created and owner.
fn describe(c: &Container) -> serde_json::Value {
    let mut v = c.oci_state();
    v["rootfs"] = c.state.rootfs.to_string_lossy().into();
    v["created"] = c.state.created.clone().into();
    v["owner"] = c.state.owner.clone().into();
    v
}

fn list(root: &Path, format: ListFormat, quiet: bool) -> Result<()> {
    let containers = warden_runtime::list(root)?;
    if quiet {
        for c in &containers {
            println!("{}", c.state.id);
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => {
            let all: Vec<_> = containers.iter().map(describe).collect();
            println!("{}", serde_json::to_string(&all)?);
        }
        ListFormat::Table => {
            let mut rows =
                vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
            for c in &containers {
                let status = c.status();
                let pid = if status == state::Status::Stopped {
                    0
                } else {
                    c.state.pid
                };
                rows.push([
                    c.state.id.clone(),
                    pid.to_string(),
                    status.to_string(),
                    c.state.bundle.to_string_lossy().into_owned(),
                    c.state.created.clone(),
                    c.state.owner.clone(),
                ]);
            }
            print_table(&rows);
        }
    }
    Ok(())
}

/// Columns padded to their widest cell plus 3 spaces, as Go's tabwriter does for runc.
fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[i] + 3));
            }
        }
        println!("{}", line.trim_end());
    }
}

fn ps(root: &Path, id: &str, format: ListFormat, ps_args: &[String]) -> Result<()> {
    let c = Container::load(root, id)?;
    let pids = c.pids()?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}

/// A signal by number (`9`) or name, with or without `SIG` (`KILL`, `SIGKILL`, `kill`).
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow::anyhow!("unknown signal {s:?}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| anyhow::anyhow!("unknown signal {s:?}"))
}

fn features() -> serde_json::Value {
    use warden_runtime::security::seccomp;
    let mut namespaces = vec!["cgroup", "ipc", "mount", "network", "pid"];
    if spec::kernel_has_time_namespaces() {
        namespaces.push("time");
    }
    namespaces.extend(["user", "uts"]);
    let mut mount_options = vec![
        "async",
        "atime",
        "bind",
        "defaults",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "idmap",
        "iversion",
        "lazytime",
        "loud",
        "mand",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "noiversion",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "nosymfollow",
        "private",
        "rbind",
        "relatime",
        "remount",
        "ridmap",
        "ro",
        "rprivate",
        "rshared",
        "rslave",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "symfollow",
        "sync",
        "tmpcopyup",
        "unbindable",
    ];
    mount_options.extend(
        warden_runtime::rootfs::mounts::RECURSIVE_OPTIONS
            .iter()
            .map(|(name, _, _)| *name),
    );
    mount_options.sort_unstable();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": namespaces,
            "capabilities": warden_runtime::security::caps::known(),
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": seccomp::ACTIONS,
                "operators": seccomp::OPERATORS,
                "archs": seccomp::ARCHS,
                "knownFlags": seccomp::KNOWN_FLAGS,
                "supportedFlags": seccomp::supported_flags()
            },
            "apparmor": {"enabled": true},
            "selinux": {"enabled": false},
            // runtime-spec features.md: what is not here (intelRdt, netDevices) is refused
            // by name at create. Idmapped mounts are bind mounts only, as runc's.
            "intelRdt": {"enabled": false},
            "memoryPolicy": {
                "modes": [
                    "MPOL_DEFAULT", "MPOL_PREFERRED", "MPOL_BIND", "MPOL_INTERLEAVE",
                    "MPOL_LOCAL", "MPOL_PREFERRED_MANY", "MPOL_WEIGHTED_INTERLEAVE"
                ],
                "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]
            },
            "netDevices": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "potentiallyUnsafeConfigAnnotations": [],
        "annotations": {
            "org.opencontainers.runc.version": env!("CARGO_PKG_VERSION"),
            "io.github.seccomp.libseccomp.version": seccomp::library_version(),
            // As runc's: checkpoint and restore are there (they need CRIU at run time).
            "org.opencontainers.runc.checkpoint.enabled": "true"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        assert_eq!(
            parse_signal("FOO").unwrap_err().to_string(),
            "unknown signal \"FOO\""
        );
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn sizes_as_runc_update_takes_them() {
        assert_eq!(size("--memory", "64m").unwrap(), 64 << 20);
        assert_eq!(size("--memory", "1G").unwrap(), 1 << 30);
        assert_eq!(size("--memory", "512kb").unwrap(), 512 << 10);
        assert_eq!(size("--memory", "4096").unwrap(), 4096);
        assert_eq!(size("--memory-swap", "-1").unwrap(), -1);
        assert!(size("--memory", "12x").is_err());
        assert!(size("--memory", "m").is_err());
        assert!(size("--memory", "99999999999t").is_err());
    }
}
