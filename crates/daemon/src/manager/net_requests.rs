//! The network requests (SPEC 3.6): net_in and net_out, and the host's packet filter and
//! forwarding they rely on, set up once before the first container. The rules are
//! [`crate::net::firewall`].

use std::sync::Arc;

use warden_protocol::{NetInRequest, NetInResponse, NetOutRequest};

use super::{blocking, Container, Manager};
use crate::container::{Error, State};
use crate::net;

impl Manager {
    /// Sets up the host's network once, before the daemon's first container has a network
    /// (a daemon that never runs a container leaves the host alone): the daemon's packet
    /// filter, then IPv4 forwarding (net::host), so the filter is in place before anything
    /// is forwarded.
    pub(super) async fn ensure_firewall(&self) -> Result<(), Error> {
        let mut done = self.firewall.lock().await;
        if !*done {
            let net = self.config.network.clone();
            blocking(move || {
                net::firewall::install(&net.nftables_table, &net)
                    .map_err(|e| Error::Network(e.to_string()))?;
                if net::host::enable_forwarding().map_err(|e| Error::Network(e.to_string()))? {
                    tracing::info!("turned on IPv4 forwarding (net.ipv4.ip_forward was 0)");
                }
                Ok(())
            })
            .await?;
            *done = true;
        }
        Ok(())
    }

    pub(super) async fn net_in(
        &self,
        c: &Arc<Container>,
        req: NetInRequest,
    ) -> Result<NetInResponse, Error> {
        let mut inner = c.inner.lock().await;
        inner.state.check(&[State::Active])?;
        let port = |p: u32, what: &str| {
            u16::try_from(p)
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| Error::Request(format!("Invalid {what}: {p}")))
        };
        let container_port = req
            .container_port
            .map(|p| port(p, "container port"))
            .transpose()?;
        let (host_port, from_pool) = match req.host_port {
            // An explicit port is used as is; one inside the pool that is free is taken out
            // of it, so the pool never hands it to another container.
            Some(p) => {
                let p = port(p, "host port")?;
                (p, self.ports.remove(p))
            }
            None => (
                self.ports
                    .acquire()
                    .map_err(|e| Error::Request(e.to_string()))?,
                true,
            ),
        };
        let container_port = container_port.unwrap_or(host_port);
        let (table, ip) = (
            self.config.network.nftables_table.clone(),
            c.network.container_ip(),
        );
        let added = blocking(move || {
            net::firewall::net_in(&table, host_port, ip, container_port)
                .map_err(|e| Error::Network(e.to_string()))
        })
        .await;
        if let Err(e) = added {
            if from_pool {
                self.ports.release(host_port);
            }
            return Err(e);
        }
        if from_pool {
            inner.ports.push(host_port);
        }
        inner.net_in.push((host_port, container_port));
        c.save(&inner);
        Ok(NetInResponse {
            host_port: host_port.into(),
            container_port: container_port.into(),
        })
    }

    pub(super) async fn net_out(
        &self,
        c: &Arc<Container>,
        req: NetOutRequest,
    ) -> Result<(), Error> {
        let mut inner = c.inner.lock().await;
        inner.state.check(&[State::Active])?;
        let rule = net::firewall::NetOut::from_request(&req).map_err(Error::Request)?;
        let (table, id, ip, r) = (
            self.config.network.nftables_table.clone(),
            c.id.clone(),
            c.network.container_ip(),
            rule.clone(),
        );
        blocking(move || {
            net::firewall::net_out(&table, &id, ip, &r).map_err(|e| Error::Network(e.to_string()))
        })
        .await?;
        inner.net_out.push(rule);
        c.save(&inner);
        Ok(())
    }
}
