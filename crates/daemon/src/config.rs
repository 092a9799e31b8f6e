//! wardend's configuration: the YAML file of the original Warden (SPEC 3.10), typed.
//!
//! Reading is two steps. [`RawConfig`] mirrors the file: every key is optional, has a default,
//! and an unknown key is an error naming it (`server: unknown field `foo``). [`Config::resolve`]
//! then checks every value and derives what the original derives (the legacy network pool, the
//! port pool from the kernel's ephemeral range), so the rest of the daemon only sees valid,
//! resolved values. Every error names the key and the value.
//!
//! Host checks that need the machine (`/etc/passwd` for the uid pool) are kept apart in
//! [`Config::check_host`], so that parsing stays pure and testable.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The largest `server.max_payload` accepted: 1 GiB.
pub const MAX_PAYLOAD_LIMIT: u64 = 1 << 30;

/// The longest unix socket path (`sun_path` is 108 bytes, NUL included).
const MAX_SOCKET_PATH: usize = 107;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML, or a key is unknown or of the wrong type.
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A value is out of range or inconsistent with another.
    #[error("config key {key}: {value}: {reason}")]
    Invalid {
        /// The key's dotted path, e.g. `network.pool_network`.
        key: String,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(
    key: impl Into<String>,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written

/// The configuration file as written: every key optional, unknown keys refused.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    pub health_check_server: RawHealthCheck,
    pub logging: RawLogging,
    pub network: RawNetwork,
    pub port: RawPort,
    pub user: RawUser,
}

/// `server:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    pub unix_domain_path: PathBuf,
    pub unix_domain_permissions: FileMode,
    /// The original's backend class. Accepted so that its config files load; wardend has one
    /// backend (Linux) and ignores the value.
    pub container_klass: Option<String>,
    /// Seconds; `null` turns the grace timer off.
    pub container_grace_time: Option<u64>,
    pub container_rootfs_path: PathBuf,
    pub container_depot_path: PathBuf,
    pub container_rlimits: Rlimits,
    pub job_output_limit: u64,
    pub quota: RawQuota,
    pub allow_nested_warden: bool,
    pub pidfile: Option<PathBuf>,
    pub syslog_socket: Option<PathBuf>,
    /// Ours: the largest frame payload accepted from a client, in bytes.
    pub max_payload: u64,
    /// Ours: seconds to let in-flight requests finish at SIGTERM/SIGINT.
    pub shutdown_timeout: f64,
    /// Ours: the cgroup (under each hierarchy) that holds the containers' cgroups, so that
    /// several daemons (and tests) can share a host.
    pub cgroup_parent: String,
    /// Ours: the seccomp profile of every container: `default` (the built-in allow list),
    /// `unconfined` (none), or the absolute path of an OCI `linux.seccomp` JSON file.
    pub container_seccomp_profile: String,
    /// Ours: every container's pids.max, so one fork bomb cannot take the host; `null` for
    /// no limit.
    pub container_pids_limit: Option<u64>,
}

/// The default `server.container_pids_limit`: room for builds with many threads, far from
/// what takes a host down.
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            unix_domain_path: PathBuf::from("/tmp/warden.sock"),
            unix_domain_permissions: FileMode::Text("0755".into()),
            container_klass: None,
            container_grace_time: Some(300),
            container_rootfs_path: PathBuf::from("/tmp/warden/rootfs"),
            container_depot_path: PathBuf::from("/tmp/warden/containers"),
            container_rlimits: Rlimits::default(),
            job_output_limit: 10 * 1024 * 1024,
            quota: RawQuota::default(),
            allow_nested_warden: false,
            pidfile: None,
            syslog_socket: None,
            max_payload: warden_protocol::DEFAULT_MAX_PAYLOAD as u64,
            shutdown_timeout: 10.0,
            cgroup_parent: "warden".into(),
            container_seccomp_profile: "default".into(),
            container_pids_limit: Some(DEFAULT_PIDS_LIMIT),
        }
    }
}

/// A file mode as YAML gives it: `0755` is a string to a YAML 1.2 reader (leading zero), read
/// here as octal like Ruby's YAML 1.1 did; an integer (`493`, or `0o755`) is the mode's value.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum FileMode {
    Number(u64),
    Text(String),
}

/// `server.quota:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawQuota {
    pub disk_quota_enabled: bool,
    /// Ours: `auto` (whatever the depot's filesystem supports), `xfs` or `btrfs` (that one,
    /// or the daemon does not start).
    pub disk_quota_backend: String,
}

impl Default for RawQuota {
    fn default() -> Self {
        RawQuota {
            disk_quota_enabled: true,
            disk_quota_backend: "auto".into(),
        }
    }
}

/// `server.container_rlimits:` (and a job's rlimits): unset means the container's default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Rlimits {
    #[serde(rename = "as")]
    pub as_: Option<u64>,
    pub core: Option<u64>,
    pub cpu: Option<u64>,
    pub data: Option<u64>,
    pub fsize: Option<u64>,
    pub locks: Option<u64>,
    pub memlock: Option<u64>,
    pub msgqueue: Option<u64>,
    pub nice: Option<u64>,
    pub nofile: Option<u64>,
    pub nproc: Option<u64>,
    pub rss: Option<u64>,
    pub rtprio: Option<u64>,
    pub sigpending: Option<u64>,
    pub stack: Option<u64>,
}

/// `health_check_server:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawHealthCheck {
    /// `null` or 0 turns the health check off.
    pub port: Option<u16>,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        RawHealthCheck { port: Some(2345) }
    }
}

/// `logging:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawLogging {
    pub level: LogLevel,
    /// Append logs to this file instead of stderr.
    pub file: Option<PathBuf>,
    /// The original's Steno syslog tag. Not supported: wardend warns and ignores it.
    pub syslog: Option<String>,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging {
            level: LogLevel::Debug2,
            file: None,
            syslog: None,
        }
    }
}

/// The original's (Steno's) log levels.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Off,
    Fatal,
    Error,
    Warn,
    Info,
    Debug,
    Debug1,
    Debug2,
    All,
}

impl LogLevel {
    /// The tracing filter directive for this level: fatal→error, debug1→debug, debug2 and
    /// all→trace.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Fatal | LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug | LogLevel::Debug1 => "debug",
            LogLevel::Debug2 | LogLevel::All => "trace",
        }
    }
}

/// `network:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawNetwork {
    pub pool_network: Option<String>,
    /// Legacy form, with `pool_size`: the first address of the pool.
    pub pool_start_address: Option<String>,
    /// Legacy form: the number of /30 networks.
    pub pool_size: Option<u32>,
    /// Seconds before a released network can be handed out again.
    pub release_delay: f64,
    pub mtu: u32,
    pub allow_networks: Vec<String>,
    pub allow_host_access: bool,
    pub dns_servers: Vec<String>,
    /// Ours: the prefix of the containers' interface names (`w-` gives `w-<id>-0`).
    pub interface_prefix: String,
    /// Ours: the daemon's own nftables table (family ip).
    pub nftables_table: String,
}

impl Default for RawNetwork {
    fn default() -> Self {
        RawNetwork {
            pool_network: None,
            pool_start_address: None,
            pool_size: None,
            release_delay: 5.0,
            mtu: 1500,
            allow_networks: Vec::new(),
            allow_host_access: false,
            dns_servers: Vec::new(),
            interface_prefix: "w-".into(),
            nftables_table: "warden".into(),
        }
    }
}

/// `port:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawPort {
    /// Default: the top of the kernel's ephemeral port range + 1.
    pub pool_start_port: Option<u16>,
    /// Default: 65001 − pool_start_port.
    pub pool_size: Option<u32>,
}

/// `user:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RawUser {
    pub pool_start_uid: u32,
    pub pool_size: u32,
    /// Ours: the host uid (and gid) that root of every container maps to; the user namespace
    /// maps container ids `0..namespace_size` to host ids from here on.
    pub namespace_start_uid: u32,
    pub namespace_size: u32,
    /// Ours: how the base rootfs is shown to the mapped ids: `auto` (an idmapped mount where
    /// the kernel and the filesystem allow it, else a chowned copy) or `copy` (always the copy).
    pub namespace_rootfs: NamespaceRootfs,
    /// Ours: no user namespace; container root is the host's root and the pool's uids are
    /// host uids, as in the original Warden. For operators who need a privileged job to be
    /// root on the host.
    pub container_root_is_host_root: bool,
}

/// `user.namespace_rootfs`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceRootfs {
    #[default]
    Auto,
    Copy,
}

/// The default `user.namespace_start_uid`: far above the uids distributions hand out
/// (`/etc/login.defs` and `/etc/subuid` stay below 2^31 in practice).
pub const DEFAULT_NAMESPACE_START_UID: u32 = 2_000_000_000;
/// The default `user.namespace_size`: every 16-bit id, as Docker's and Garden's maps.
pub const DEFAULT_NAMESPACE_SIZE: u32 = 65536;

impl Default for RawUser {
    fn default() -> Self {
        RawUser {
            pool_start_uid: 10000,
            pool_size: 64,
            namespace_start_uid: DEFAULT_NAMESPACE_START_UID,
            namespace_size: DEFAULT_NAMESPACE_SIZE,
            namespace_rootfs: NamespaceRootfs::Auto,
            container_root_is_host_root: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resolved

/// An IPv4 network in CIDR form, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix`, refused if `prefix > 32` or `addr` has host bits set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, String> {
        if prefix > 32 {
            return Err(format!("prefix length {prefix} is over 32"));
        }
        let net = Ipv4Cidr { addr, prefix };
        if net.network() != addr {
            return Err(format!(
                "host bits are set (the network is {}/{prefix})",
                net.network()
            ));
        }
        Ok(net)
    }

    /// The first address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network mask as an integer.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = String;

    /// `a.b.c.d/n`, or a bare address meaning `/32`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                let p: u8 = p
                    .parse()
                    .map_err(|_| format!("prefix length {p:?} is not a number from 0 to 32"))?;
                (a, p)
            }
            None => (s, 32),
        };
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        Ipv4Cidr::new(addr, prefix)
    }
}

/// The whole configuration, checked and resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    /// `None`: no health check listener.
    pub health_check_port: Option<u16>,
    pub logging: LoggingConfig,
    pub network: NetworkConfig,
    pub port: PortConfig,
    pub user: UserConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub unix_domain_path: PathBuf,
    /// Permission bits given to the socket (at most 0o777).
    pub unix_domain_permissions: u32,
    pub container_grace_time: Option<Duration>,
    pub container_rootfs_path: PathBuf,
    pub container_depot_path: PathBuf,
    pub container_rlimits: Rlimits,
    pub job_output_limit: u64,
    pub disk_quota_enabled: bool,
    pub disk_quota_backend: crate::container::disk::Choice,
    pub allow_nested_warden: bool,
    pub pidfile: Option<PathBuf>,
    pub syslog_socket: Option<PathBuf>,
    pub max_payload: usize,
    pub shutdown_timeout: Duration,
    pub cgroup_parent: String,
    pub seccomp_profile: SeccompProfile,
    pub pids_limit: Option<u64>,
}

/// `server.container_seccomp_profile`, resolved. The file is read and compiled when the
/// daemon starts (see `container::seccomp`), so a bad one stops it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompProfile {
    Default,
    Unconfined,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    pub level: LogLevel,
    pub file: Option<PathBuf>,
    pub syslog: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// The pool the containers' /30 networks come from.
    pub pool_network: Ipv4Cidr,
    pub release_delay: Duration,
    pub mtu: u32,
    pub allow_networks: Vec<Ipv4Cidr>,
    pub allow_host_access: bool,
    pub dns_servers: Vec<IpAddr>,
    pub interface_prefix: String,
    pub nftables_table: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    pub pool_start_port: u16,
    pub pool_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserConfig {
    pub pool_start_uid: u32,
    pub pool_size: u32,
    /// The containers' user namespace; `None` with `container_root_is_host_root`.
    pub namespace: Option<UserNamespace>,
}

/// One range of host ids shared by every container: container id `i` (uid and gid) is host
/// id `start + i`, for `i < size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserNamespace {
    pub start: u32,
    pub size: u32,
    pub rootfs: NamespaceRootfs,
}

impl UserNamespace {
    /// The host id of container id `id`.
    pub fn host_id(&self, id: u32) -> u32 {
        self.start + id
    }

    /// The last host id of the range.
    pub fn last(&self) -> u32 {
        self.start + (self.size - 1)
    }
}

/// Command-line values that take precedence over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub socket: Option<PathBuf>,
    pub depot: Option<PathBuf>,
    pub rootfs: Option<PathBuf>,
}

/// What the port pool's default depends on: the kernel's ephemeral port range
/// (`/proc/sys/net/ipv4/ip_local_port_range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// The highest ephemeral port.
    pub ephemeral_port_top: u16,
}

impl Host {
    /// Reads this machine's values; Linux's default range (ending at 60999) if unreadable.
    pub fn detect() -> Host {
        let top = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(60999);
        Host {
            ephemeral_port_top: top,
        }
    }
}

impl RawConfig {
    /// Parses YAML text; an empty document is the all-defaults configuration.
    pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        if text.trim().is_empty() {
            return Ok(RawConfig::default());
        }
        serde_yaml_ng::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Applies the command line's values.
    pub fn apply(&mut self, overrides: &Overrides) {
        if let Some(p) = &overrides.socket {
            self.server.unix_domain_path = p.clone();
        }
        if let Some(p) = &overrides.depot {
            self.server.container_depot_path = p.clone();
        }
        if let Some(p) = &overrides.rootfs {
            self.server.container_rootfs_path = p.clone();
        }
    }
}

fn parse_mode(mode: &FileMode) -> Result<u32, ConfigError> {
    const KEY: &str = "server.unix_domain_permissions";
    let value = match mode {
        FileMode::Number(n) => *n,
        FileMode::Text(s) => {
            let digits = s.trim();
            let digits = digits.strip_prefix("0o").unwrap_or(digits);
            u64::from_str_radix(digits, 8)
                .map_err(|_| invalid(KEY, s, "not an octal file mode such as 0755"))?
        }
    };
    if value > 0o777 {
        let hint = match mode {
            FileMode::Number(n) => format!(
                "over 0777 (an integer is the mode's value: {n} is 0o{n:o}; write 0{n} for octal)"
            ),
            FileMode::Text(_) => "over 0777".into(),
        };
        let shown = match mode {
            FileMode::Number(n) => n.to_string(),
            FileMode::Text(s) => s.clone(),
        };
        return Err(invalid(KEY, shown, hint));
    }
    Ok(value as u32)
}

fn seconds(key: &str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| invalid(key, value, "not a number of seconds (0 or more)"))
}

fn non_empty_path(key: &str, path: &Path) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(invalid(key, "\"\"", "must not be empty"));
    }
    Ok(())
}

/// The legacy pool: `pool_size` /30 networks from `start`, rounded up to a power of two.
fn legacy_pool(start: &str, size: u32) -> Result<Ipv4Cidr, ConfigError> {
    let addr: Ipv4Addr = start
        .parse()
        .map_err(|_| invalid("network.pool_start_address", start, "not an IPv4 address"))?;
    if size == 0 {
        return Err(invalid("network.pool_size", size, "must be at least 1"));
    }
    let bits = size.next_power_of_two().trailing_zeros() + 2;
    if bits > 32 {
        return Err(invalid(
            "network.pool_size",
            size,
            "too many /30 networks for IPv4",
        ));
    }
    let prefix = (32 - bits) as u8;
    Ipv4Cidr::new(addr, prefix).map_err(|reason| {
        invalid(
            "network.pool_start_address",
            start,
            format!("with pool_size {size} the pool is a /{prefix}, and {reason}"),
        )
    })
}

fn resolve_network(raw: &RawNetwork) -> Result<NetworkConfig, ConfigError> {
    let legacy = match (&raw.pool_start_address, raw.pool_size) {
        (Some(start), Some(size)) => Some(legacy_pool(start, size)?),
        (None, None) => None,
        (Some(start), None) => {
            return Err(invalid(
                "network.pool_start_address",
                start,
                "needs network.pool_size too (or use network.pool_network)",
            ))
        }
        (None, Some(size)) => {
            return Err(invalid(
                "network.pool_size",
                size,
                "needs network.pool_start_address too (or use network.pool_network)",
            ))
        }
    };
    let pool_network = match (&raw.pool_network, legacy) {
        (Some(text), legacy) => {
            let net: Ipv4Cidr = text
                .parse()
                .map_err(|reason: String| invalid("network.pool_network", text, reason))?;
            if let Some(legacy) = legacy {
                if legacy != net {
                    return Err(invalid(
                        "network.pool_network",
                        text,
                        format!(
                            "conflicts with pool_start_address and pool_size, which give {legacy}"
                        ),
                    ));
                }
            }
            net
        }
        (None, Some(legacy)) => legacy,
        (None, None) => Ipv4Cidr::new(Ipv4Addr::new(10, 254, 0, 0), 24).expect("valid default"),
    };
    if pool_network.prefix() > 30 {
        return Err(invalid(
            "network.pool_network",
            pool_network,
            "must hold at least one /30 (prefix 30 or less)",
        ));
    }
    if !(68..=65535).contains(&raw.mtu) {
        return Err(invalid("network.mtu", raw.mtu, "must be from 68 to 65535"));
    }
    let allow_networks = raw
        .allow_networks
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse().map_err(|reason: String| {
                invalid(format!("network.allow_networks[{i}]"), text, reason)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dns_servers = raw
        .dns_servers
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse().map_err(|_| {
                invalid(
                    format!("network.dns_servers[{i}]"),
                    text,
                    "not an IP address",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Interface names are at most 15 bytes: prefix + 11-char container id + "-N".
    let prefix = &raw.interface_prefix;
    if prefix.is_empty()
        || prefix.len() > 2
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(invalid(
            "network.interface_prefix",
            prefix,
            "must be 1 or 2 characters of [A-Za-z0-9-] (names are <prefix><11-char id>-N, at most 15)",
        ));
    }
    let table = &raw.nftables_table;
    if table.is_empty()
        || table.len() > 64
        || !table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "network.nftables_table",
            table,
            "must be 1 to 64 characters of [A-Za-z0-9_-]",
        ));
    }
    Ok(NetworkConfig {
        pool_network,
        release_delay: seconds("network.release_delay", raw.release_delay)?,
        mtu: raw.mtu,
        allow_networks,
        allow_host_access: raw.allow_host_access,
        dns_servers,
        interface_prefix: raw.interface_prefix.clone(),
        nftables_table: raw.nftables_table.clone(),
    })
}

fn resolve_port(raw: &RawPort, host: Host) -> Result<PortConfig, ConfigError> {
    let start = match raw.pool_start_port {
        Some(0) => {
            return Err(invalid(
                "port.pool_start_port",
                0,
                "must be from 1 to 65535",
            ))
        }
        Some(p) => p,
        None => host.ephemeral_port_top.checked_add(1).ok_or_else(|| {
            invalid(
                "port.pool_start_port",
                "(default)",
                "the ephemeral port range ends at 65535; set port.pool_start_port",
            )
        })?,
    };
    let size = match raw.pool_size {
        Some(n) => n,
        None => 65001u32.saturating_sub(u32::from(start)),
    };
    if size < 1000 {
        let value = match raw.pool_size {
            Some(n) => n.to_string(),
            None => format!("{size} (65001 - pool_start_port {start})"),
        };
        return Err(invalid("port.pool_size", value, "must be at least 1000"));
    }
    if u32::from(start) + size - 1 > 65535 {
        return Err(invalid(
            "port.pool_size",
            size,
            format!("pool_start_port {start} + pool_size goes past port 65535"),
        ));
    }
    Ok(PortConfig {
        pool_start_port: start,
        pool_size: size,
    })
}

fn resolve_user(raw: &RawUser) -> Result<UserConfig, ConfigError> {
    if raw.pool_size == 0 {
        return Err(invalid("user.pool_size", 0, "must be at least 1"));
    }
    if raw.pool_start_uid == 0 {
        return Err(invalid(
            "user.pool_start_uid",
            0,
            "must not include root (uid 0)",
        ));
    }
    if u64::from(raw.pool_start_uid) + u64::from(raw.pool_size) > u64::from(u32::MAX) {
        return Err(invalid(
            "user.pool_size",
            raw.pool_size,
            format!(
                "pool_start_uid {} + pool_size is past the last uid",
                raw.pool_start_uid
            ),
        ));
    }
    let namespace = if raw.container_root_is_host_root {
        None
    } else {
        Some(resolve_namespace(raw)?)
    };
    Ok(UserConfig {
        pool_start_uid: raw.pool_start_uid,
        pool_size: raw.pool_size,
        namespace,
    })
}

fn resolve_namespace(raw: &RawUser) -> Result<UserNamespace, ConfigError> {
    let (start, size) = (raw.namespace_start_uid, raw.namespace_size);
    if start == 0 {
        return Err(invalid(
            "user.namespace_start_uid",
            0,
            "container root must not be the host's root (uid 0); set user.container_root_is_host_root for that",
        ));
    }
    if u64::from(start) + u64::from(size) > u64::from(u32::MAX) {
        return Err(invalid(
            "user.namespace_size",
            size,
            format!("namespace_start_uid {start} + namespace_size is past the last uid"),
        ));
    }
    // The pool's uids are the containers' vcap users, inside the namespace: it must map them.
    let pool_end = u64::from(raw.pool_start_uid) + u64::from(raw.pool_size);
    if u64::from(size) < pool_end {
        return Err(invalid(
            "user.namespace_size",
            size,
            format!(
                "the namespace must map the uid pool (container uids up to {}): at least {pool_end}",
                pool_end - 1
            ),
        ));
    }
    let (first, last) = (u64::from(start), u64::from(start) + u64::from(size) - 1);
    let (pool_first, pool_last) = (u64::from(raw.pool_start_uid), pool_end - 1);
    if first <= pool_last && pool_first <= last {
        return Err(invalid(
            "user.namespace_start_uid",
            start,
            format!(
                "the host range {first}..={last} overlaps the uid pool {pool_first}..={pool_last}"
            ),
        ));
    }
    Ok(UserNamespace {
        start,
        size,
        rootfs: raw.namespace_rootfs,
    })
}

impl Config {
    /// Checks every value of `raw` and derives the resolved configuration.
    pub fn resolve(raw: &RawConfig, host: Host) -> Result<Config, ConfigError> {
        let s = &raw.server;
        non_empty_path("server.unix_domain_path", &s.unix_domain_path)?;
        let socket_len = s.unix_domain_path.as_os_str().len();
        if socket_len > MAX_SOCKET_PATH {
            return Err(invalid(
                "server.unix_domain_path",
                s.unix_domain_path.display(),
                format!(
                    "{socket_len} bytes long; a unix socket path holds at most {MAX_SOCKET_PATH}"
                ),
            ));
        }
        non_empty_path("server.container_rootfs_path", &s.container_rootfs_path)?;
        non_empty_path("server.container_depot_path", &s.container_depot_path)?;
        if let Some(p) = &s.pidfile {
            non_empty_path("server.pidfile", p)?;
        }
        let parent_ok = !s.cgroup_parent.is_empty()
            && s.cgroup_parent
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !parent_ok {
            return Err(invalid(
                "server.cgroup_parent",
                &s.cgroup_parent,
                "must be a relative cgroup path such as warden or a/b",
            ));
        }
        if s.max_payload < 64 || s.max_payload > MAX_PAYLOAD_LIMIT {
            return Err(invalid(
                "server.max_payload",
                s.max_payload,
                format!("must be from 64 to {MAX_PAYLOAD_LIMIT} bytes"),
            ));
        }
        let seccomp_profile = match s.container_seccomp_profile.as_str() {
            "default" => SeccompProfile::Default,
            "unconfined" => SeccompProfile::Unconfined,
            p if Path::new(p).is_absolute() => SeccompProfile::File(PathBuf::from(p)),
            p => {
                return Err(invalid(
                    "server.container_seccomp_profile",
                    p,
                    "want default, unconfined or the absolute path of a seccomp profile",
                ))
            }
        };
        if s.container_pids_limit == Some(0) {
            return Err(invalid(
                "server.container_pids_limit",
                0,
                "a container needs at least one process (null means no limit)",
            ));
        }
        use crate::container::disk::{Choice, Kind};
        let disk_quota_backend = match s.quota.disk_quota_backend.as_str() {
            "auto" => Choice::Auto,
            "xfs" => Choice::Required(Kind::Xfs),
            "btrfs" => Choice::Required(Kind::Btrfs),
            b => {
                return Err(invalid(
                    "server.quota.disk_quota_backend",
                    b,
                    "want auto, xfs or btrfs",
                ))
            }
        };
        let server = ServerConfig {
            unix_domain_path: s.unix_domain_path.clone(),
            unix_domain_permissions: parse_mode(&s.unix_domain_permissions)?,
            container_grace_time: s.container_grace_time.map(Duration::from_secs),
            container_rootfs_path: s.container_rootfs_path.clone(),
            container_depot_path: s.container_depot_path.clone(),
            container_rlimits: s.container_rlimits.clone(),
            job_output_limit: s.job_output_limit,
            disk_quota_enabled: s.quota.disk_quota_enabled,
            disk_quota_backend,
            allow_nested_warden: s.allow_nested_warden,
            pidfile: s.pidfile.clone(),
            syslog_socket: s.syslog_socket.clone(),
            max_payload: s.max_payload as usize,
            shutdown_timeout: seconds("server.shutdown_timeout", s.shutdown_timeout)?,
            cgroup_parent: s.cgroup_parent.clone(),
            seccomp_profile,
            pids_limit: s.container_pids_limit,
        };
        Ok(Config {
            server,
            health_check_port: raw.health_check_server.port.filter(|&p| p != 0),
            logging: LoggingConfig {
                level: raw.logging.level,
                file: raw.logging.file.clone(),
                syslog: raw.logging.syslog.clone(),
            },
            network: resolve_network(&raw.network)?,
            port: resolve_port(&raw.port, host)?,
            user: resolve_user(&raw.user)?,
        })
    }

    /// Loads `path` (or the defaults when `None`), applies `overrides` and resolves.
    pub fn load(
        path: Option<&Path>,
        overrides: &Overrides,
        host: Host,
    ) -> Result<Config, ConfigError> {
        let mut raw = match path {
            Some(p) => RawConfig::load(p)?,
            None => RawConfig::default(),
        };
        raw.apply(overrides);
        Config::resolve(&raw, host)
    }

    /// Checks the user namespace's host range against the machine: no user of `passwd`, no
    /// group of `group`, and no range of `subuid` or `subgid` (each the text of the /etc file,
    /// empty where there is none) may be inside it.
    pub fn check_namespace(
        &self,
        passwd: &str,
        group: &str,
        subuid: &str,
        subgid: &str,
    ) -> Result<(), ConfigError> {
        const KEY: &str = "user.namespace_start_uid";
        let Some(ns) = self.user.namespace else {
            return Ok(());
        };
        let (first, last) = (u64::from(ns.start), u64::from(ns.last()));
        let ids = |text: &str, file: &str, what: &str| -> Result<(), ConfigError> {
            for line in text.lines() {
                let mut f = line.split(':');
                let (Some(name), Some(id)) = (f.next(), f.nth(1)) else {
                    continue;
                };
                if let Ok(id) = id.parse::<u64>() {
                    if (first..=last).contains(&id) {
                        return Err(invalid(
                            KEY,
                            ns.start,
                            format!(
                                "the user namespace's host range {first}..={last} holds {what} {id} of {name:?} in {file}"
                            ),
                        ));
                    }
                }
            }
            Ok(())
        };
        ids(passwd, "/etc/passwd", "uid")?;
        ids(group, "/etc/group", "gid")?;
        for (text, file) in [(subuid, "/etc/subuid"), (subgid, "/etc/subgid")] {
            for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                let f: Vec<&str> = line.trim().split(':').collect();
                let [name, s, n] = f[..] else { continue };
                let (Ok(s), Ok(n)) = (s.parse::<u64>(), n.parse::<u64>()) else {
                    continue;
                };
                if n > 0 && s <= last && first < s + n {
                    return Err(invalid(
                        KEY,
                        ns.start,
                        format!(
                            "the user namespace's host range {first}..={last} overlaps {name}'s range {s}..={} in {file}",
                            s + n - 1
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks against the machine: no user in `passwd` (the text of `/etc/passwd`) may have a
    /// uid inside the uid pool.
    pub fn check_host(&self, passwd: &str) -> Result<(), ConfigError> {
        let first = self.user.pool_start_uid;
        let last = first + (self.user.pool_size - 1);
        let clashes: BTreeMap<u32, &str> = passwd
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let uid: u32 = fields.nth(1)?.parse().ok()?;
                (first..=last).contains(&uid).then_some((uid, name))
            })
            .collect();
        if let Some((uid, name)) = clashes.iter().next() {
            return Err(invalid(
                "user.pool_start_uid",
                first,
                format!(
                    "the uid pool {first}..={last} holds uid {uid} of user {name:?} in /etc/passwd"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Host = Host {
        ephemeral_port_top: 60999,
    };

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::resolve(&RawConfig::parse(text, Path::new("test.yml"))?, HOST)
    }

    fn err(text: &str) -> String {
        parse(text)
            .expect_err("config should be refused")
            .to_string()
    }

    #[test]
    fn seccomp_profile_and_pids_limit() {
        let c = parse(
            "server:\n  container_seccomp_profile: unconfined\n  container_pids_limit: null\n",
        )
        .unwrap();
        assert_eq!(c.server.seccomp_profile, SeccompProfile::Unconfined);
        assert_eq!(c.server.pids_limit, None);
        let c = parse("server:\n  container_seccomp_profile: /etc/warden/seccomp.json\n").unwrap();
        assert_eq!(
            c.server.seccomp_profile,
            SeccompProfile::File("/etc/warden/seccomp.json".into())
        );
        let e = err("server:\n  container_seccomp_profile: seccomp.json\n");
        assert!(
            e.contains("server.container_seccomp_profile: seccomp.json"),
            "{e}"
        );
        let e = err("server:\n  container_pids_limit: 0\n");
        assert!(e.contains("server.container_pids_limit: 0"), "{e}");
    }

    #[test]
    fn disk_quota_backend() {
        use crate::container::disk::{Choice, Kind};
        assert_eq!(parse("").unwrap().server.disk_quota_backend, Choice::Auto);
        let c = parse("server:\n  quota:\n    disk_quota_backend: btrfs\n").unwrap();
        assert_eq!(c.server.disk_quota_backend, Choice::Required(Kind::Btrfs));
        let c = parse("server:\n  quota:\n    disk_quota_backend: xfs\n").unwrap();
        assert_eq!(c.server.disk_quota_backend, Choice::Required(Kind::Xfs));
        let e = err("server:\n  quota:\n    disk_quota_backend: ext4\n");
        assert!(
            e.contains("server.quota.disk_quota_backend") && e.contains("ext4"),
            "{e}"
        );
    }

    #[test]
    fn defaults_without_a_file() {
        let c = Config::load(None, &Overrides::default(), HOST).unwrap();
        assert_eq!(c, parse("").unwrap());
        assert_eq!(c.server.unix_domain_path, Path::new("/tmp/warden.sock"));
        assert_eq!(c.server.unix_domain_permissions, 0o755);
        assert_eq!(
            c.server.container_grace_time,
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            c.server.container_rootfs_path,
            Path::new("/tmp/warden/rootfs")
        );
        assert_eq!(
            c.server.container_depot_path,
            Path::new("/tmp/warden/containers")
        );
        assert_eq!(c.server.container_rlimits, Rlimits::default());
        assert_eq!(c.server.job_output_limit, 10_485_760);
        assert_eq!(c.server.seccomp_profile, SeccompProfile::Default);
        assert_eq!(c.server.pids_limit, Some(DEFAULT_PIDS_LIMIT));
        assert!(c.server.disk_quota_enabled);
        assert!(!c.server.allow_nested_warden);
        assert_eq!(c.server.pidfile, None);
        assert_eq!(c.server.max_payload, 16 * 1024 * 1024);
        assert_eq!(c.server.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.health_check_port, Some(2345));
        assert_eq!(c.logging.level, LogLevel::Debug2);
        assert_eq!(c.network.pool_network.to_string(), "10.254.0.0/24");
        assert_eq!(c.network.release_delay, Duration::from_secs(5));
        assert_eq!(c.network.mtu, 1500);
        assert!(c.network.allow_networks.is_empty());
        assert!(!c.network.allow_host_access);
        assert!(c.network.dns_servers.is_empty());
        assert_eq!(
            c.port,
            PortConfig {
                pool_start_port: 61000,
                pool_size: 4001
            }
        );
        assert_eq!(
            c.user,
            UserConfig {
                pool_start_uid: 10000,
                pool_size: 64,
                namespace: Some(UserNamespace {
                    start: DEFAULT_NAMESPACE_START_UID,
                    size: DEFAULT_NAMESPACE_SIZE,
                    rootfs: NamespaceRootfs::Auto,
                }),
            }
        );
    }

    #[test]
    fn a_full_file() {
        let c = parse(
            r#"
server:
  unix_domain_path: /run/w.sock
  unix_domain_permissions: 0777
  container_klass: Warden::Container::Linux
  container_grace_time: ~
  container_rootfs_path: /srv/rootfs
  container_depot_path: /srv/depot
  container_rlimits:
    as: 4294967296
    nofile: 8192
    nproc: 512
  job_output_limit: 1024
  quota:
    disk_quota_enabled: false
  allow_nested_warden: true
  pidfile: /run/w.pid
  syslog_socket: /dev/log
  max_payload: 1048576
  shutdown_timeout: 0.5
health_check_server:
  port: 0
logging:
  level: info
  file: /var/log/w.log
network:
  pool_network: 10.244.0.0/16
  release_delay: 0
  mtu: 1454
  allow_networks: [10.0.0.0/8, 192.168.1.1]
  allow_host_access: true
  dns_servers: [8.8.8.8, "::1"]
port:
  pool_start_port: 20000
  pool_size: 5000
user:
  pool_start_uid: 20000
  pool_size: 256
"#,
        )
        .unwrap();
        assert_eq!(c.server.unix_domain_permissions, 0o777);
        assert_eq!(c.server.container_grace_time, None);
        assert_eq!(c.server.container_rlimits.as_, Some(4_294_967_296));
        assert_eq!(c.server.container_rlimits.nofile, Some(8192));
        assert_eq!(c.server.container_rlimits.core, None);
        assert!(!c.server.disk_quota_enabled);
        assert!(c.server.allow_nested_warden);
        assert_eq!(c.server.pidfile.as_deref(), Some(Path::new("/run/w.pid")));
        assert_eq!(c.server.max_payload, 1 << 20);
        assert_eq!(c.server.shutdown_timeout, Duration::from_millis(500));
        assert_eq!(c.health_check_port, None);
        assert_eq!(c.logging.level, LogLevel::Info);
        assert_eq!(c.network.pool_network.to_string(), "10.244.0.0/16");
        assert_eq!(c.network.release_delay, Duration::ZERO);
        assert_eq!(c.network.mtu, 1454);
        let allowed: Vec<String> = c
            .network
            .allow_networks
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(allowed, ["10.0.0.0/8", "192.168.1.1/32"]);
        assert_eq!(c.network.dns_servers.len(), 2);
        assert_eq!(c.port.pool_start_port, 20000);
        assert_eq!(c.user.pool_size, 256);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        assert!(err("server:\n  bogus_key: 1\n").contains("server: unknown field `bogus_key`"));
        assert!(err("bogus_section: {}\n").contains("unknown field `bogus_section`"));
        // The original has no deny_networks key.
        assert!(err("network:\n  deny_networks: []\n").contains("unknown field `deny_networks`"));
        assert!(err("server:\n  container_rlimits:\n    nofiles: 3\n")
            .contains("server.container_rlimits: unknown field `nofiles`"));
    }

    #[test]
    fn wrong_types_name_the_key() {
        let e = err("health_check_server:\n  port: 70000\n");
        assert!(e.contains("health_check_server.port"), "{e}");
        let e = err("server:\n  job_output_limit: lots\n");
        assert!(e.contains("server.job_output_limit"), "{e}");
        let e = err("logging:\n  level: loud\n");
        assert!(e.contains("logging.level") && e.contains("loud"), "{e}");
    }

    #[test]
    fn modes() {
        let mode = |v: &str| {
            parse(&format!("server:\n  unix_domain_permissions: {v}\n"))
                .map(|c| c.server.unix_domain_permissions)
        };
        assert_eq!(mode("0755").unwrap(), 0o755);
        assert_eq!(mode("0o700").unwrap(), 0o700);
        assert_eq!(mode("\"0660\"").unwrap(), 0o660);
        assert_eq!(mode("493").unwrap(), 0o755);
        let e = mode("755").unwrap_err().to_string();
        assert!(
            e.contains("server.unix_domain_permissions: 755") && e.contains("write 0755"),
            "{e}"
        );
        let e = mode("0999").unwrap_err().to_string();
        assert!(e.contains("server.unix_domain_permissions: 0999"), "{e}");
        assert!(mode("01777").is_err());
    }

    #[test]
    fn grace_time_null_turns_it_off() {
        let c = parse("server:\n  container_grace_time: null\n").unwrap();
        assert_eq!(c.server.container_grace_time, None);
        let c = parse("server:\n  container_grace_time: 5\n").unwrap();
        assert_eq!(c.server.container_grace_time, Some(Duration::from_secs(5)));
    }

    #[test]
    fn health_check_off() {
        assert_eq!(
            parse("health_check_server:\n  port: ~\n")
                .unwrap()
                .health_check_port,
            None
        );
        assert_eq!(
            parse("health_check_server:\n  port: 0\n")
                .unwrap()
                .health_check_port,
            None
        );
        assert_eq!(
            parse("health_check_server:\n  port: 8080\n")
                .unwrap()
                .health_check_port,
            Some(8080)
        );
    }

    #[test]
    fn log_levels_map_to_tracing() {
        for (steno, directive) in [
            ("off", "off"),
            ("fatal", "error"),
            ("error", "error"),
            ("warn", "warn"),
            ("info", "info"),
            ("debug", "debug"),
            ("debug1", "debug"),
            ("debug2", "trace"),
            ("all", "trace"),
        ] {
            let c = parse(&format!("logging:\n  level: {steno}\n")).unwrap();
            assert_eq!(c.logging.level.directive(), directive, "{steno}");
        }
    }

    #[test]
    fn bad_networks_name_key_and_value() {
        let e = err("network:\n  pool_network: 10.254.0.0/33\n");
        assert!(e.contains("network.pool_network: 10.254.0.0/33"), "{e}");
        let e = err("network:\n  pool_network: 10.254.0.1/24\n");
        assert!(
            e.contains("network.pool_network: 10.254.0.1/24") && e.contains("host bits"),
            "{e}"
        );
        let e = err("network:\n  pool_network: banana\n");
        assert!(e.contains("network.pool_network: banana"), "{e}");
        let e = err("network:\n  pool_network: 10.0.0.0/31\n");
        assert!(e.contains("at least one /30"), "{e}");
        let e = err("network:\n  allow_networks: [10.0.0.0/8, 300.1.1.1]\n");
        assert!(e.contains("network.allow_networks[1]: 300.1.1.1"), "{e}");
        let e = err("network:\n  dns_servers: [nameserver]\n");
        assert!(e.contains("network.dns_servers[0]: nameserver"), "{e}");
        let e = err("network:\n  mtu: 20\n");
        assert!(e.contains("network.mtu: 20"), "{e}");
        let e = err("network:\n  release_delay: -1\n");
        assert!(e.contains("network.release_delay: -1"), "{e}");
    }

    #[test]
    fn legacy_pool_start_address_and_size() {
        let net = |size: u32| {
            parse(&format!(
                "network:\n  pool_start_address: 10.254.0.0\n  pool_size: {size}\n"
            ))
            .map(|c| c.network.pool_network.to_string())
        };
        // 32 - (ceil(log2 n) + 2)
        assert_eq!(net(256).unwrap(), "10.254.0.0/22");
        assert_eq!(net(1).unwrap(), "10.254.0.0/30");
        assert_eq!(net(3).unwrap(), "10.254.0.0/28");
        assert_eq!(net(64).unwrap(), "10.254.0.0/24");
        let e = parse("network:\n  pool_start_address: 10.254.0.4\n  pool_size: 256\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("network.pool_start_address: 10.254.0.4"), "{e}");
        let e = err("network:\n  pool_size: 4\n");
        assert!(
            e.contains("network.pool_size: 4") && e.contains("pool_start_address"),
            "{e}"
        );
        let e = err("network:\n  pool_network: 10.1.0.0/24\n  pool_start_address: 10.254.0.0\n  pool_size: 64\n");
        assert!(e.contains("conflicts"), "{e}");
        let same = "network:\n  pool_network: 10.254.0.0/24\n  pool_start_address: 10.254.0.0\n  pool_size: 64\n";
        assert_eq!(
            parse(same).unwrap().network.pool_network.to_string(),
            "10.254.0.0/24"
        );
    }

    #[test]
    fn port_pool() {
        let c = parse("port:\n  pool_start_port: 30000\n").unwrap();
        assert_eq!(c.port.pool_size, 35001);
        let e = err("port:\n  pool_start_port: 64500\n");
        assert!(
            e.contains("port.pool_size") && e.contains("at least 1000"),
            "{e}"
        );
        let e = err("port:\n  pool_start_port: 65000\n  pool_size: 2000\n");
        assert!(
            e.contains("port.pool_size: 2000") && e.contains("65535"),
            "{e}"
        );
        let e = err("port:\n  pool_size: 10\n");
        assert!(e.contains("port.pool_size: 10"), "{e}");
        let host = Host {
            ephemeral_port_top: 64999,
        };
        let e = Config::resolve(&RawConfig::default(), host)
            .unwrap_err()
            .to_string();
        assert!(e.contains("port.pool_size"), "{e}");
    }

    #[test]
    fn user_pool() {
        let e = err("user:\n  pool_size: 0\n");
        assert!(e.contains("user.pool_size: 0"), "{e}");
        let e = err("user:\n  pool_start_uid: 4294967000\n  pool_size: 1000\n");
        assert!(e.contains("user.pool_size: 1000"), "{e}");
        let c = parse("").unwrap();
        let passwd = "root:x:0:0:root:/root:/bin/bash\nvcap:x:10005:10005::/home/vcap:/bin/sh\n";
        let e = c.check_host(passwd).unwrap_err().to_string();
        assert!(
            e.contains("user.pool_start_uid: 10000") && e.contains("\"vcap\""),
            "{e}"
        );
        c.check_host("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/bin/false\n")
            .unwrap();
    }

    #[test]
    fn user_namespace() {
        let c = parse("").unwrap();
        assert_eq!(
            c.user.namespace,
            Some(UserNamespace {
                start: DEFAULT_NAMESPACE_START_UID,
                size: DEFAULT_NAMESPACE_SIZE,
                rootfs: NamespaceRootfs::Auto
            })
        );
        let c = parse("user:\n  container_root_is_host_root: true\n  namespace_start_uid: 0\n")
            .unwrap();
        assert_eq!(c.user.namespace, None);
        let e = err("user:\n  namespace_start_uid: 0\n");
        assert!(e.contains("user.namespace_start_uid: 0"), "{e}");
        let e = err("user:\n  namespace_start_uid: 4294950000\n");
        assert!(e.contains("user.namespace_size: 65536"), "{e}");
        let e = err("user:\n  namespace_size: 10000\n");
        assert!(
            e.contains("user.namespace_size: 10000") && e.contains("at least 10064"),
            "{e}"
        );
        let e = err("user:\n  namespace_start_uid: 1\n");
        assert!(
            e.contains("user.namespace_start_uid: 1") && e.contains("uid pool 10000..=10063"),
            "{e}"
        );
        let e = err("user:\n  namespace_rootfs: chown\n");
        assert!(e.contains("namespace_rootfs"), "{e}");
        let c = parse("user:\n  namespace_start_uid: 100000\n  namespace_rootfs: copy\n").unwrap();
        assert_eq!(c.user.namespace.unwrap().rootfs, NamespaceRootfs::Copy);
        let e = c
            .check_namespace("", "", "# comment\nalice:100000:65536\n", "")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("user.namespace_start_uid: 100000")
                && e.contains("alice's range 100000..=165535 in /etc/subuid"),
            "{e}"
        );
        let e = c
            .check_namespace("", "", "", "bob:165535:10\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/subgid"), "{e}");
        let e = c
            .check_namespace("svc:x:120000:120000::/:/bin/false\n", "", "", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("uid 120000 of \"svc\" in /etc/passwd"), "{e}");
        let e = c
            .check_namespace("", "grp:x:100001:\n", "", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("gid 100001 of \"grp\" in /etc/group"), "{e}");
        c.check_namespace(
            "root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
            "root:x:0:\n",
            "alice:165536:65536\n",
            "alice:34464:65536\n",
        )
        .unwrap();
    }

    #[test]
    fn overrides_win() {
        let mut raw = RawConfig::parse(
            "server:\n  unix_domain_path: /a.sock\n  container_depot_path: /d\n",
            Path::new("t.yml"),
        )
        .unwrap();
        raw.apply(&Overrides {
            socket: Some("/b.sock".into()),
            depot: Some("/e".into()),
            rootfs: Some("/r".into()),
        });
        let c = Config::resolve(&raw, HOST).unwrap();
        assert_eq!(c.server.unix_domain_path, Path::new("/b.sock"));
        assert_eq!(c.server.container_depot_path, Path::new("/e"));
        assert_eq!(c.server.container_rootfs_path, Path::new("/r"));
    }

    #[test]
    fn server_limits() {
        let e = err("server:\n  max_payload: 10\n");
        assert!(e.contains("server.max_payload: 10"), "{e}");
        let long = format!("/tmp/{}.sock", "x".repeat(120));
        let e = err(&format!("server:\n  unix_domain_path: {long}\n"));
        assert!(e.contains("server.unix_domain_path"), "{e}");
        let e = err("server:\n  unix_domain_path: \"\"\n");
        assert!(e.contains("server.unix_domain_path"), "{e}");
    }

    #[test]
    fn cidr_parsing() {
        let n: Ipv4Cidr = "10.254.0.0/24".parse().unwrap();
        assert!(n.contains("10.254.0.255".parse().unwrap()));
        assert!(!n.contains("10.254.1.0".parse().unwrap()));
        assert_eq!(n.size(), 256);
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("1.2.3.4/x".parse::<Ipv4Cidr>().is_err());
    }
}
