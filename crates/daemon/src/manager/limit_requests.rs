//! The limit requests (SPEC 3.8): limit_memory, limit_cpu, limit_disk and limit_bandwidth,
//! and the OOM notifier the first memory limit arms. The cgroup writes are
//! [`crate::container::limits`], the disk quotas [`crate::container::disk`], the qdiscs
//! [`crate::net::bandwidth`].

use std::sync::Arc;

use warden_protocol::{LimitDiskRequest, LimitDiskResponse};

use super::{blocking, Container, Manager};
use crate::container::disk::{self, Disks};
use crate::container::{limits, Error, State};
use crate::net::bandwidth;

/// The container event of an OOM (SPEC 4).
const OUT_OF_MEMORY: &str = "out of memory";

impl Manager {
    pub(super) async fn limit_memory(
        &self,
        c: &Arc<Container>,
        limit: Option<u64>,
    ) -> Result<u64, Error> {
        c.inner
            .lock()
            .await
            .state
            .check(&[State::Active, State::Stopped])?;
        let (root, id) = (c.runtime_root(), c.id.clone());
        let value = blocking(move || limits::set_memory(&root, &id, limit)).await?;
        if limit.is_some() {
            let mut inner = c.inner.lock().await;
            inner.limit_memory = limit;
            c.save(&inner);
            drop(inner);
            self.arm_oom(c).await;
        }
        Ok(value)
    }

    pub(super) async fn limit_cpu(
        &self,
        c: &Arc<Container>,
        shares: Option<u64>,
    ) -> Result<u64, Error> {
        c.inner
            .lock()
            .await
            .state
            .check(&[State::Active, State::Stopped])?;
        let (root, id) = (c.runtime_root(), c.id.clone());
        let last = c.inner.lock().await.limit_cpu;
        let value = blocking(move || limits::set_cpu_shares(&root, &id, shares, last)).await?;
        if shares.is_some() {
            let mut inner = c.inner.lock().await;
            inner.limit_cpu = shares;
            c.save(&inner);
        }
        Ok(value)
    }

    /// Shapes the container's traffic both ways to `rate` bytes per second with a bucket of
    /// `burst` bytes, and answers with the values set (SPEC 3.8 echoes them).
    pub(super) async fn limit_bandwidth(
        &self,
        c: &Arc<Container>,
        rate: u64,
        burst: u64,
    ) -> Result<(u64, u64), Error> {
        let limit = bandwidth::Limit::new(rate, burst).map_err(Error::Request)?;
        let mut inner = c.inner.lock().await;
        inner.state.check(&[State::Active, State::Stopped])?;
        bandwidth::apply(&c.netns(), &self.net_spec(c), limit)
            .await
            .map_err(|e| Error::Network(e.to_string()))?;
        inner.limit_bandwidth = Some((rate, burst));
        c.save(&inner);
        Ok((rate, burst))
    }

    /// SPEC 3.8: from the current limits, the request's fields by the original's precedence;
    /// the reply has all twelve fields read back. Quotas disabled: the original's empty reply.
    pub(super) async fn limit_disk(
        &self,
        c: &Arc<Container>,
        req: &LimitDiskRequest,
    ) -> Result<LimitDiskResponse, Error> {
        c.inner
            .lock()
            .await
            .state
            .check(&[State::Active, State::Stopped])?;
        match &*self.disks {
            Disks::Disabled => return Ok(LimitDiskResponse::default()),
            Disks::Unsupported(why) => {
                return Err(Error::Request(format!(
                    "Failed setting disk limit: no disk quota backend: {why}"
                )))
            }
            Disks::On(b) if Some(b.kind()) != c.disk_quota => {
                return Err(Error::Request(format!(
                    "Failed setting disk limit: the container was created without a {} disk quota",
                    b.kind().as_str()
                )))
            }
            Disks::On(_) => {}
        }
        let (disks, kind, layer, uid) = (self.disks.clone(), c.disk_quota, c.layer(), c.uid);
        let req = req.clone();
        let limits = blocking(move || {
            let b = disks.backend_for(kind).expect("checked above");
            let (cur, _) = b
                .get(&layer, uid)
                .map_err(|e| Error::Request(format!("Failed getting disk usage: {e}")))?;
            let want = disk::apply_request(cur, &req);
            b.check(&want)?;
            b.set(&layer, uid, &want)
                .map_err(|e| Error::Request(format!("Failed setting disk limit: {e}")))?;
            let (now, _) = b
                .get(&layer, uid)
                .map_err(|e| Error::Request(format!("Failed getting disk usage: {e}")))?;
            Ok(now)
        })
        .await?;
        let mut inner = c.inner.lock().await;
        inner.limit_disk = Some(limits);
        c.save(&inner);
        Ok(disk::response(&limits))
    }

    /// Starts the container's OOM notifier once: on an OOM the container gets the event
    /// `out of memory` and, if active, is stopped (SPEC 3.8).
    pub(super) async fn arm_oom(&self, c: &Arc<Container>) {
        {
            let mut inner = c.inner.lock().await;
            if inner.oom_armed {
                return;
            }
            inner.oom_armed = true;
        }
        let notifier = match limits::oom_notifier(&c.runtime_root(), &c.id) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(handle = %c.handle, "cannot watch for OOM: {e}");
                c.inner.lock().await.oom_armed = false;
                return;
            }
        };
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let c = c.clone();
        tokio::spawn(async move {
            // SAFETY: the AsyncFd owns the notifier, whose fd stays open and the same until
            // the notifier is dropped.
            let registered = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    notifier,
                    tokio::io::Interest::READABLE,
                )
            };
            let Ok(mut fd) = registered else {
                return;
            };
            loop {
                let Ok(mut ready) = fd.readable_mut().await else {
                    return;
                };
                match ready.get_inner_mut().check() {
                    limits::Oom::Happened => break,
                    limits::Oom::Gone => return,
                    limits::Oom::Nothing => ready.clear_ready(),
                }
            }
            tracing::info!(handle = %c.handle, "out of memory");
            let active = {
                let mut inner = c.inner.lock().await;
                inner.events.push(OUT_OF_MEMORY.to_string());
                c.save(&inner);
                inner.state == State::Active
            };
            if active {
                if let Err(e) = this.stop(&c, false).await {
                    tracing::warn!(handle = %c.handle, "stop after OOM: {e}");
                }
            }
        });
    }
}
