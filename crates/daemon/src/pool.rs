//! Pools of networks (/30s), uids and ports (SPEC 3.4, 3.10).
//!
//! Every pool is a FIFO queue, as in the original: [`acquire`](UidPool::acquire) takes the head,
//! a release goes to the tail, so the next port after a release is still the previous one + 1.
//! The network pool also holds a released network back for `network.release_delay`: each queue
//! entry carries the instant it becomes free again, so no timer or background task is needed.
//!
//! Each pool is thread-safe (a [`Mutex`] inside) and has a `remove` for restore: a recovered
//! container's network, uid and ports are taken out of the pools before anything is handed out.
//! Releasing a value that is outside the pool, or already free, is ignored (as the original
//! ignores networks that do not belong to it), so a double release never hands one value out
//! twice.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::{Ipv4Cidr, NetworkConfig, PortConfig, UserConfig};

/// Why a pool could not hand out a value. The messages are the original's (SPEC 4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The network pool has no free /30.
    #[error("Could not acquire network")]
    NoNetwork,
    /// The requested network is outside the pool, taken, or in its release delay. Carries the
    /// address as requested.
    #[error("Could not acquire network: {0}")]
    NetworkUnavailable(Ipv4Addr),
    #[error("Warden::Pool::Uid::NoUidAvailable")]
    NoUid,
    #[error("Warden::Pool::Port::NoPortAvailable")]
    NoPort,
}

// ---------------------------------------------------------------------------------------------
// The queue shared by the three pools: entries are indexes 0..size into the pool.

/// A FIFO of the indexes `0..size`, kept lazily so that a large pool (a /8 network) costs only
/// what is handed out: the never-used indexes come first, in order (`next..size`, minus the
/// ones taken out of order), then the released ones, in release order.
#[derive(Debug)]
struct Fifo {
    size: u32,
    /// Indexes from here on have never been handed out, except those in `skipped`.
    next: u32,
    /// Indexes `>= next` taken out of order (acquired by value, or removed).
    skipped: BTreeSet<u32>,
    /// Released indexes, oldest first, each with the instant it may be handed out again.
    released: VecDeque<(u32, Option<Instant>)>,
    /// The indexes in `released`.
    in_released: HashSet<u32>,
}

impl Fifo {
    fn new(size: u32) -> Fifo {
        Fifo {
            size,
            next: 0,
            skipped: BTreeSet::new(),
            released: VecDeque::new(),
            in_released: HashSet::new(),
        }
    }

    fn ready(free_at: Option<Instant>, now: Instant) -> bool {
        free_at.is_none_or(|t| t <= now)
    }

    fn is_fresh(&self, i: u32) -> bool {
        i >= self.next && i < self.size && !self.skipped.contains(&i)
    }

    /// The head of the queue: the next never-used index, else the oldest released one that is
    /// free at `now` (released with one constant delay, so that is the oldest unless it is
    /// still held back).
    fn pop(&mut self, now: Instant) -> Option<u32> {
        while self.next < self.size {
            let i = self.next;
            self.next += 1;
            if !self.skipped.remove(&i) {
                return Some(i);
            }
        }
        let pos = self
            .released
            .iter()
            .position(|&(_, t)| Self::ready(t, now))?;
        let (i, _) = self.released.remove(pos)?;
        self.in_released.remove(&i);
        Some(i)
    }

    /// Takes `i` out of the queue if it is there and (unless `any_time`) free at `now`.
    fn take(&mut self, i: u32, now: Instant, any_time: bool) -> bool {
        if self.is_fresh(i) {
            self.skipped.insert(i);
            return true;
        }
        if !self.in_released.contains(&i) {
            return false;
        }
        let Some(pos) = self.released.iter().position(|&(e, _)| e == i) else {
            return false;
        };
        if !any_time && !Self::ready(self.released[pos].1, now) {
            return false;
        }
        self.released.remove(pos);
        self.in_released.remove(&i);
        true
    }

    /// Puts `i` back at the tail, free from `free_at`. False if out of range or already queued.
    fn push(&mut self, i: u32, free_at: Option<Instant>) -> bool {
        if i >= self.size || self.is_fresh(i) || !self.in_released.insert(i) {
            return false;
        }
        // An index taken out of order stays in `skipped` (so the in-order walk passes it): it
        // is now queued as a released one.
        self.released.push_back((i, free_at));
        true
    }

    /// Indexes free at `now`.
    fn available(&self, now: Instant) -> usize {
        let fresh = (self.size - self.next) as usize - self.skipped.len();
        let released = self
            .released
            .iter()
            .filter(|&&(_, t)| Self::ready(t, now))
            .count();
        fresh + released
    }
}

fn lock(m: &Mutex<Fifo>) -> MutexGuard<'_, Fifo> {
    // A panic while holding the lock cannot leave the queue half-updated in a way that matters
    // more than refusing every later request would.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Networks

/// One container's /30: the network address, the host's end (net+1) and the container's end
/// (net+2). Written (`Display`, serde) as the network address, `10.254.0.4`; parsing masks any
/// address of the /30 down to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Network(Ipv4Addr);

impl Network {
    /// The prefix length of every container network.
    pub const PREFIX_LEN: u8 = 30;
    /// 255.255.255.252.
    pub const NETMASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 252);

    /// The /30 holding `addr`.
    pub fn containing(addr: Ipv4Addr) -> Network {
        Network(Ipv4Addr::from(u32::from(addr) & u32::from(Self::NETMASK)))
    }

    /// The network address.
    pub fn address(&self) -> Ipv4Addr {
        self.0
    }

    /// net+1, the host side of the veth pair.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.0) + 1)
    }

    /// net+2, the container side.
    pub fn container_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.0) + 2)
    }

    /// 255.255.255.252.
    pub fn netmask(&self) -> Ipv4Addr {
        Self::NETMASK
    }

    /// 30.
    pub fn prefix_len(&self) -> u8 {
        Self::PREFIX_LEN
    }

    /// As a CIDR (`10.254.0.4/30`).
    pub fn cidr(&self) -> Ipv4Cidr {
        Ipv4Cidr::new(self.0, Self::PREFIX_LEN).expect("a /30 network address")
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Network {
    type Err = std::net::AddrParseError;

    /// `a.b.c.d`, masked to its /30.
    fn from_str(s: &str) -> Result<Network, Self::Err> {
        Ok(Network::containing(s.parse()?))
    }
}

impl serde::Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Network, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The pool network cut into /30s, handed out in address order, then FIFO.
#[derive(Debug)]
pub struct NetworkPool {
    pool: Ipv4Cidr,
    release_delay: Duration,
    fifo: Mutex<Fifo>,
}

impl NetworkPool {
    /// Every /30 of `pool` (which holds at least one, as the config checks); a released network
    /// comes back after `release_delay`.
    pub fn new(pool: Ipv4Cidr, release_delay: Duration) -> NetworkPool {
        // At most 2^30 /30s (a /0): lazily kept, so a big pool costs nothing.
        let count = (pool.size() / 4) as u32;
        NetworkPool {
            pool,
            release_delay,
            fifo: Mutex::new(Fifo::new(count)),
        }
    }

    /// From `network.pool_network` and `network.release_delay`.
    pub fn from_config(c: &NetworkConfig) -> NetworkPool {
        NetworkPool::new(c.pool_network, c.release_delay)
    }

    /// The pool network.
    pub fn pool(&self) -> Ipv4Cidr {
        self.pool
    }

    /// The number of /30s in the pool, free or not.
    pub fn size(&self) -> usize {
        lock(&self.fifo).size as usize
    }

    /// The number of /30s that could be acquired now.
    pub fn available(&self) -> usize {
        lock(&self.fifo).available(Instant::now())
    }

    fn index(&self, net: Network) -> Option<u32> {
        if !self.pool.contains(net.address()) {
            return None;
        }
        let off = u32::from(net.address()) - u32::from(self.pool.addr());
        Some(off / 4)
    }

    fn network(&self, i: u32) -> Network {
        Network(Ipv4Addr::from(u32::from(self.pool.addr()) + 4 * i))
    }

    /// The next free /30. `Could not acquire network` when there is none.
    pub fn acquire(&self) -> Result<Network, PoolError> {
        self.acquire_at(Instant::now())
    }

    fn acquire_at(&self, now: Instant) -> Result<Network, PoolError> {
        let i = lock(&self.fifo).pop(now).ok_or(PoolError::NoNetwork)?;
        Ok(self.network(i))
    }

    /// The /30 holding `addr`, which must be in the pool and free (not taken, not in its
    /// release delay), else `Could not acquire network: <addr>`.
    pub fn acquire_specific(&self, addr: Ipv4Addr) -> Result<Network, PoolError> {
        self.acquire_specific_at(addr, Instant::now())
    }

    fn acquire_specific_at(&self, addr: Ipv4Addr, now: Instant) -> Result<Network, PoolError> {
        let net = Network::containing(addr);
        match self.index(net) {
            Some(i) if lock(&self.fifo).take(i, now, false) => Ok(net),
            _ => Err(PoolError::NetworkUnavailable(addr)),
        }
    }

    /// Gives `net` back; it can be acquired again after the release delay. Returns false (and
    /// does nothing) if `net` is not in the pool or is already free.
    pub fn release(&self, net: Network) -> bool {
        self.release_at(net, Instant::now())
    }

    fn release_at(&self, net: Network, now: Instant) -> bool {
        let Some(i) = self.index(net) else {
            return false;
        };
        let free_at = (!self.release_delay.is_zero()).then(|| now + self.release_delay);
        lock(&self.fifo).push(i, free_at)
    }

    /// Takes `net` out of the pool (restore: a recovered container's network). Returns false if
    /// it is not in the pool or not free.
    pub fn remove(&self, net: Network) -> bool {
        match self.index(net) {
            Some(i) => lock(&self.fifo).take(i, Instant::now(), true),
            None => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Uids and ports

/// A FIFO of consecutive integers `start..start+size`.
#[derive(Debug)]
struct RangePool {
    start: u32,
    size: u32,
    fifo: Mutex<Fifo>,
}

impl RangePool {
    fn new(start: u32, size: u32) -> RangePool {
        RangePool {
            start,
            size,
            fifo: Mutex::new(Fifo::new(size)),
        }
    }

    fn index(&self, v: u32) -> Option<u32> {
        v.checked_sub(self.start).filter(|&i| i < self.size)
    }

    fn acquire(&self) -> Option<u32> {
        lock(&self.fifo).pop(Instant::now()).map(|i| self.start + i)
    }

    fn release(&self, v: u32) -> bool {
        match self.index(v) {
            Some(i) => lock(&self.fifo).push(i, None),
            None => false,
        }
    }

    fn remove(&self, v: u32) -> bool {
        match self.index(v) {
            Some(i) => lock(&self.fifo).take(i, Instant::now(), true),
            None => false,
        }
    }

    fn available(&self) -> usize {
        lock(&self.fifo).available(Instant::now())
    }
}

/// The container users' uids: `pool_start_uid .. pool_start_uid + pool_size`, FIFO.
#[derive(Debug)]
pub struct UidPool(RangePool);

impl UidPool {
    pub fn new(start: u32, size: u32) -> UidPool {
        UidPool(RangePool::new(start, size))
    }

    /// From `user.pool_start_uid` and `user.pool_size`.
    pub fn from_config(c: &UserConfig) -> UidPool {
        UidPool::new(c.pool_start_uid, c.pool_size)
    }

    /// The head of the queue, else `Warden::Pool::Uid::NoUidAvailable`.
    pub fn acquire(&self) -> Result<u32, PoolError> {
        self.0.acquire().ok_or(PoolError::NoUid)
    }

    /// Back to the tail at once. False (ignored) if outside the pool or already free.
    pub fn release(&self, uid: u32) -> bool {
        self.0.release(uid)
    }

    /// Takes `uid` out (restore). False if outside the pool or not free.
    pub fn remove(&self, uid: u32) -> bool {
        self.0.remove(uid)
    }

    /// Free uids.
    pub fn available(&self) -> usize {
        self.0.available()
    }
}

/// The host ports for net_in: `pool_start_port .. pool_start_port + pool_size`, FIFO.
#[derive(Debug)]
pub struct PortPool(RangePool);

impl PortPool {
    /// Ports past 65535 are left out.
    pub fn new(start: u16, size: u32) -> PortPool {
        let size = size.min(65536 - u32::from(start));
        PortPool(RangePool::new(u32::from(start), size))
    }

    /// From `port.pool_start_port` and `port.pool_size`.
    pub fn from_config(c: &PortConfig) -> PortPool {
        PortPool::new(c.pool_start_port, c.pool_size)
    }

    /// The head of the queue, else `Warden::Pool::Port::NoPortAvailable`.
    pub fn acquire(&self) -> Result<u16, PoolError> {
        let p = self.0.acquire().ok_or(PoolError::NoPort)?;
        Ok(p as u16)
    }

    /// Back to the tail at once. False (ignored) if outside the pool or already free.
    pub fn release(&self, port: u16) -> bool {
        self.0.release(u32::from(port))
    }

    /// Takes `port` out (restore). False if outside the pool or not free.
    pub fn remove(&self, port: u16) -> bool {
        self.0.remove(u32::from(port))
    }

    /// Free ports.
    pub fn available(&self) -> usize {
        self.0.available()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn pool(cidr: &str, delay: Duration) -> NetworkPool {
        NetworkPool::new(cidr.parse().unwrap(), delay)
    }

    #[test]
    fn network_math() {
        let n = Network::containing(ip("10.254.0.7"));
        assert_eq!(n.address(), ip("10.254.0.4"));
        assert_eq!(n.host_ip(), ip("10.254.0.5"));
        assert_eq!(n.container_ip(), ip("10.254.0.6"));
        assert_eq!(n.netmask(), ip("255.255.255.252"));
        assert_eq!(n.prefix_len(), 30);
        assert_eq!(n.to_string(), "10.254.0.4");
        assert_eq!(n.cidr().to_string(), "10.254.0.4/30");
        assert_eq!("10.254.0.5".parse::<Network>().unwrap(), n);
        let json = serde_json_like(&n);
        assert_eq!(json, "10.254.0.4");
    }

    /// Network's serde form, through the YAML serializer the crate already has.
    fn serde_json_like(n: &Network) -> String {
        let text = serde_yaml_ng::to_string(n).unwrap();
        let back: Network = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(&back, n);
        text.trim().to_string()
    }

    #[test]
    fn networks_in_order_then_empty() {
        let p = pool("10.254.0.0/28", Duration::ZERO);
        assert_eq!(p.size(), 4);
        let got: Vec<String> = (0..4).map(|_| p.acquire().unwrap().to_string()).collect();
        assert_eq!(
            got,
            ["10.254.0.0", "10.254.0.4", "10.254.0.8", "10.254.0.12"]
        );
        let e = p.acquire().unwrap_err();
        assert_eq!(e, PoolError::NoNetwork);
        assert_eq!(e.to_string(), "Could not acquire network");
    }

    #[test]
    fn a_single_slash_30_pool() {
        let p = pool("10.254.0.8/30", Duration::ZERO);
        assert_eq!(p.size(), 1);
        assert_eq!(p.acquire().unwrap().to_string(), "10.254.0.8");
        assert!(p.acquire().is_err());
    }

    #[test]
    fn released_networks_go_to_the_tail() {
        let p = pool("10.254.0.0/28", Duration::ZERO);
        let a = p.acquire().unwrap();
        let b = p.acquire().unwrap();
        assert!(p.release(a));
        assert_eq!(p.acquire().unwrap().to_string(), "10.254.0.8");
        assert_eq!(p.acquire().unwrap().to_string(), "10.254.0.12");
        assert_eq!(p.acquire().unwrap(), a);
        assert!(p.acquire().is_err());
        assert!(p.release(b));
        assert_eq!(p.acquire().unwrap(), b);
    }

    #[test]
    fn release_delay_holds_a_network_back() {
        let delay = Duration::from_secs(5);
        let p = pool("10.254.0.0/30", delay);
        let t0 = Instant::now();
        let n = p.acquire_at(t0).unwrap();
        assert!(p.release_at(n, t0));
        assert_eq!(p.acquire_at(t0), Err(PoolError::NoNetwork));
        assert_eq!(
            p.acquire_at(t0 + delay - Duration::from_millis(1)),
            Err(PoolError::NoNetwork)
        );
        assert_eq!(
            p.acquire_specific_at(n.host_ip(), t0 + Duration::from_secs(1)),
            Err(PoolError::NetworkUnavailable(n.host_ip()))
        );
        assert_eq!(p.acquire_at(t0 + delay), Ok(n));
    }

    #[test]
    fn release_delay_in_real_time() {
        let p = pool("10.254.0.0/29", Duration::from_millis(50));
        let a = p.acquire().unwrap();
        assert!(p.release(a));
        // The other /30 is free at once; `a` is not.
        let b = p.acquire().unwrap();
        assert_ne!(a, b);
        assert_eq!(p.acquire(), Err(PoolError::NoNetwork));
        assert_eq!(p.available(), 0);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(p.available(), 1);
        assert_eq!(p.acquire(), Ok(a));
    }

    #[test]
    fn never_used_networks_come_before_released_ones() {
        let p = pool("10.254.0.0/29", Duration::from_secs(60));
        let a = p.acquire().unwrap();
        assert!(p.release(a));
        assert_eq!(p.acquire().unwrap().to_string(), "10.254.0.4");
        assert_eq!(p.acquire(), Err(PoolError::NoNetwork));
    }

    #[test]
    fn a_huge_pool_costs_nothing_up_front() {
        let p = pool("10.0.0.0/8", Duration::ZERO);
        assert_eq!(p.size(), 1 << 22);
        assert_eq!(p.available(), 1 << 22);
        assert_eq!(p.acquire().unwrap().to_string(), "10.0.0.0");
        let n = p.acquire_specific(ip("10.200.3.9")).unwrap();
        assert_eq!(n.to_string(), "10.200.3.8");
        assert_eq!(p.available(), (1 << 22) - 2);
        // Taken out of order, then released: queued at the tail, not twice.
        assert!(p.release(n));
        assert!(!p.release(n));
        assert_eq!(p.available(), (1 << 22) - 1);
        assert_eq!(p.acquire_specific(ip("10.200.3.8")).unwrap(), n);
        assert!(p.acquire_specific(ip("10.200.3.8")).is_err());
    }

    #[test]
    fn specific_networks() {
        let p = pool("10.254.0.0/24", Duration::ZERO);
        let n = p.acquire_specific(ip("10.254.0.9")).unwrap();
        assert_eq!(n.to_string(), "10.254.0.8");
        // Taken.
        let e = p.acquire_specific(ip("10.254.0.10")).unwrap_err();
        assert_eq!(e.to_string(), "Could not acquire network: 10.254.0.10");
        // Outside the pool.
        let e = p.acquire_specific(ip("10.1.2.3")).unwrap_err();
        assert_eq!(e.to_string(), "Could not acquire network: 10.1.2.3");
        let e = p.acquire_specific(ip("10.254.1.0")).unwrap_err();
        assert_eq!(e, PoolError::NetworkUnavailable(ip("10.254.1.0")));
        // The in-order acquisition skips it.
        assert_eq!(p.acquire().unwrap().to_string(), "10.254.0.0");
        assert_eq!(p.acquire().unwrap().to_string(), "10.254.0.4");
        assert_eq!(p.acquire().unwrap().to_string(), "10.254.0.12");
        // Released, it can be asked for again.
        assert!(p.release(n));
        assert_eq!(p.acquire_specific(ip("10.254.0.8")).unwrap(), n);
    }

    #[test]
    fn foreign_and_double_releases_are_ignored() {
        let p = pool("10.254.0.0/29", Duration::ZERO);
        assert!(!p.release(Network::containing(ip("10.1.0.0"))));
        let a = p.acquire().unwrap();
        assert!(p.release(a));
        assert!(!p.release(a));
        assert_eq!(p.available(), 2);
        let x = p.acquire().unwrap();
        let y = p.acquire().unwrap();
        assert_ne!(x, y);
        assert!(p.acquire().is_err());
    }

    #[test]
    fn remove_for_restore() {
        let p = pool("10.254.0.0/28", Duration::from_secs(60));
        assert!(p.remove(Network::containing(ip("10.254.0.4"))));
        assert!(!p.remove(Network::containing(ip("10.254.0.4"))));
        assert!(!p.remove(Network::containing(ip("10.9.0.4"))));
        assert_eq!(p.acquire().unwrap().to_string(), "10.254.0.0");
        assert_eq!(p.acquire().unwrap().to_string(), "10.254.0.8");
        // A network in its release delay can be removed too.
        let n = p.acquire().unwrap();
        assert!(p.release(n));
        assert!(p.remove(n));
        assert!(p.acquire().is_err());
    }

    #[test]
    fn from_config() {
        let c = crate::config::Config::resolve(
            &crate::config::RawConfig::default(),
            crate::config::Host {
                ephemeral_port_top: 60999,
            },
        )
        .unwrap();
        let n = NetworkPool::from_config(&c.network);
        assert_eq!(n.size(), 64);
        assert_eq!(n.pool().to_string(), "10.254.0.0/24");
        let u = UidPool::from_config(&c.user);
        assert_eq!(u.available(), 64);
        assert_eq!(u.acquire().unwrap(), 10000);
        let p = PortPool::from_config(&c.port);
        assert_eq!(p.available(), 4001);
        assert_eq!(p.acquire().unwrap(), 61000);
    }

    #[test]
    fn uids_fifo() {
        let p = UidPool::new(10000, 3);
        assert_eq!(p.acquire(), Ok(10000));
        assert_eq!(p.acquire(), Ok(10001));
        assert!(p.release(10000));
        assert_eq!(p.acquire(), Ok(10002));
        assert_eq!(p.acquire(), Ok(10000));
        let e = p.acquire().unwrap_err();
        assert_eq!(e.to_string(), "Warden::Pool::Uid::NoUidAvailable");
        assert!(!p.release(9999));
        assert!(!p.release(10003));
        assert!(p.release(10001));
        assert!(!p.release(10001));
        assert_eq!(p.available(), 1);
    }

    #[test]
    fn uid_remove() {
        let p = UidPool::new(10000, 3);
        assert!(p.remove(10001));
        assert!(!p.remove(10001));
        assert!(!p.remove(5));
        assert_eq!(p.acquire(), Ok(10000));
        assert_eq!(p.acquire(), Ok(10002));
        assert_eq!(p.acquire(), Err(PoolError::NoUid));
    }

    #[test]
    fn ports_fifo_next_is_previous_plus_one() {
        let p = PortPool::new(61000, 3);
        let a = p.acquire().unwrap();
        assert_eq!(a, 61000);
        assert!(p.release(a));
        // Released to the tail: the next one is still the previous + 1.
        assert_eq!(p.acquire(), Ok(61001));
        assert_eq!(p.acquire(), Ok(61002));
        assert_eq!(p.acquire(), Ok(61000));
        let e = p.acquire().unwrap_err();
        assert_eq!(e.to_string(), "Warden::Pool::Port::NoPortAvailable");
    }

    #[test]
    fn port_remove_and_top_of_range() {
        let p = PortPool::new(65534, 5);
        assert_eq!(p.available(), 2);
        assert!(p.remove(65534));
        assert_eq!(p.acquire(), Ok(65535));
        assert_eq!(p.acquire(), Err(PoolError::NoPort));
        assert!(!p.release(1));
    }

    #[test]
    fn pools_are_shared_between_threads() {
        let p = std::sync::Arc::new(PortPool::new(20000, 1000));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    (0..250).map(|_| p.acquire().unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u16> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 1000);
        assert!(p.acquire().is_err());
    }
}
