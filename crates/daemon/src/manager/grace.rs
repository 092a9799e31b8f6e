//! Grace time (SPEC 3.1, 3.3): which connections reference a container, and the timer that
//! destroys it once none has for its grace time.

use std::sync::Arc;

use super::{Container, Manager};

impl Manager {
    pub(super) fn reference(&self, conn: u64, c: &Arc<Container>) {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(conn)
            .or_default()
            .insert(c.handle.clone());
        let mut g = c.grace.lock().unwrap_or_else(|e| e.into_inner());
        if g.refs.insert(conn) {
            g.epoch += 1; // cancels a pending timer
        }
    }

    pub(super) fn release_reference(&self, conn: u64, c: &Arc<Container>) {
        let mut g = c.grace.lock().unwrap_or_else(|e| e.into_inner());
        g.refs.remove(&conn);
        if g.refs.is_empty() {
            drop(g);
            self.arm_grace(c);
        }
    }

    /// Starts the container's grace timer (a no-op without a grace time).
    pub(super) fn arm_grace(&self, c: &Arc<Container>) {
        let Some(after) = c.grace_time else { return };
        let epoch = {
            let mut g = c.grace.lock().unwrap_or_else(|e| e.into_inner());
            g.epoch += 1;
            g.epoch
        };
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let c = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let fire = {
                let g = c.grace.lock().unwrap_or_else(|e| e.into_inner());
                g.epoch == epoch && g.refs.is_empty()
            };
            if fire {
                tracing::info!(handle = %c.handle, "grace time expired: destroying");
                if let Err(e) = this.destroy(&c).await {
                    tracing::warn!(handle = %c.handle, "grace-time destroy: {e}");
                }
            }
        });
    }
}
