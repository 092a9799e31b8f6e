//! The job requests: spawn (with the job's environment and rlimits), link and stream; run
//! is spawn then link (see [`Manager::answer`]). The jobs themselves are [`crate::jobs`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nix::sys::signal::Signal;
use warden_protocol::{LinkResponse, ResourceLimits, Response, SpawnRequest, StreamResponse};

use super::{Container, Inner, Manager};
use crate::container::{rootfs, Error, State};
use crate::handler::Reply;
use crate::jobs;
use crate::steps::Steps;

impl Manager {
    pub(super) async fn spawn(&self, c: &Arc<Container>, req: SpawnRequest) -> Result<u32, Error> {
        // The job is in the container's list (and snapshot) before its keeper starts, so a
        // daemon dying meanwhile still finds it; the lock is not held while the keeper
        // starts, so other requests on the container go on.
        let mut steps = Steps::new();
        let mut inner = c.inner.lock().await;
        inner.state.check(&[State::Active])?;
        let job_id = self.next_job.fetch_add(1, Ordering::SeqCst);
        let dir = c.jobs_dir().join(job_id.to_string());
        inner.jobs.insert(job_id, dir.clone());
        c.save(&inner);
        drop(inner);
        steps.mark("record");
        let privileged = req.privileged.unwrap_or(false);
        let spec = jobs::JobSpec {
            runtime_root: c.runtime_root(),
            container_id: c.id.clone(),
            script: req.script,
            uid: if privileged { 0 } else { c.uid },
            gid: if privileged { 0 } else { c.uid },
            privileged,
            rlimits: self.rlimits(req.rlimits.as_ref()),
            env: if privileged {
                jobs::job_env("root", "/root")
            } else {
                jobs::job_env(rootfs::USER, &format!("/home/{}", rootfs::USER))
            },
            cwd: if privileged {
                "/root".into()
            } else {
                format!("/home/{}", rootfs::USER)
            },
            shell: rootfs::job_shell(&c.dir).into(),
            discard_output: req.discard_output.unwrap_or(false),
            output_limit: self.config.server.job_output_limit,
            log: req.log_tag.map(|tag| jobs::syslog::LogTarget {
                socket: (self.config.server.syslog_socket.clone())
                    .unwrap_or_else(|| jobs::syslog::DEFAULT_SOCKET.into()),
                tag,
            }),
        };
        let started = jobs::spawn(&self.keeper, &dir, &spec, &mut steps).await;
        let mut inner = c.inner.lock().await;
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                inner.jobs.remove(&job_id);
                c.save(&inner);
                // The protocol's message is exactly this (SPEC 4); the cause goes to the log.
                tracing::warn!(handle = %c.handle, job_id, "cannot start the job: {e}");
                return Err(Error::Request("iomux-spawn failed".into()));
            }
        };
        if inner.state != State::Active {
            // Stopped (or destroyed) while the keeper started: the job must not outlive that.
            jobs::kill(&dir, Signal::SIGKILL);
        }
        drop(inner);
        tracing::info!(handle = %c.handle, job_id, pid = started.job.job.map(|j| j.pid),
            steps = ?steps.to_string(), keeper_steps = ?started.keeper_steps, "job started");
        // Nothing to rewrite when the job ends: the snapshot lists the jobs not yet linked,
        // and how a job ended is in its dir (the keeper's `status`), where a restarted daemon
        // reads it.
        Ok(job_id)
    }

    /// The job's rlimits: SPEC 5's wsh defaults, then the config's container_rlimits, then
    /// the request's.
    fn rlimits(&self, req: Option<&ResourceLimits>) -> Vec<(String, u64)> {
        let mut out: BTreeMap<&'static str, u64> = BTreeMap::from([
            ("core", 0),
            ("memlock", 65536),
            ("msgqueue", 819200),
            ("nice", 0),
            ("nofile", 1024),
            ("nproc", 1024),
            ("rtprio", 0),
            ("sigpending", 1024),
            ("stack", 8 << 20),
        ]);
        // The config's and the request's limits have the same fields (`as` is `as_` in one
        // and a raw identifier in the other).
        macro_rules! named {
            ($r:expr, $as:ident) => {
                [
                    ("as", $r.$as),
                    ("core", $r.core),
                    ("cpu", $r.cpu),
                    ("data", $r.data),
                    ("fsize", $r.fsize),
                    ("locks", $r.locks),
                    ("memlock", $r.memlock),
                    ("msgqueue", $r.msgqueue),
                    ("nice", $r.nice),
                    ("nofile", $r.nofile),
                    ("nproc", $r.nproc),
                    ("rss", $r.rss),
                    ("rtprio", $r.rtprio),
                    ("sigpending", $r.sigpending),
                    ("stack", $r.stack),
                ]
            };
        }
        let config = named!(self.config.server.container_rlimits, as_);
        let request = req.map(|r| named!(r, r#as));
        for (k, v) in config.into_iter().chain(request.into_iter().flatten()) {
            if let Some(v) = v {
                out.insert(k, v);
            }
        }
        out.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn job_dir(inner: &Inner, job_id: u32) -> Result<PathBuf, Error> {
        inner
            .jobs
            .get(&job_id)
            .cloned()
            .ok_or_else(|| Error::Request("no such job".into()))
    }

    pub(super) async fn link(
        &self,
        c: &Arc<Container>,
        job_id: u32,
    ) -> Result<LinkResponse, Error> {
        let mut steps = Steps::new();
        let dir = {
            let mut inner = c.inner.lock().await;
            let dir = Self::job_dir(&inner, job_id)?;
            *inner.linking.entry(job_id).or_default() += 1;
            dir
        };
        let result = jobs::link(&dir, &mut steps).await;
        let mut inner = c.inner.lock().await;
        let still = inner.linking.get_mut(&job_id).map(|n| {
            *n -= 1;
            *n
        });
        if still == Some(0) {
            inner.linking.remove(&job_id);
        }
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                // The last reader of a job another link already took.
                if still == Some(0) && !inner.jobs.contains_key(&job_id) {
                    jobs::remove(&dir);
                }
                return Err(Error::Runtime(e.to_string()));
            }
        };
        // Only the first linker to finish takes the job from the container (a later link
        // is `no such job`); the others already linking still get its result, and the last
        // of them removes its dir (before, the first one did, while another was reading it).
        if inner.jobs.remove(&job_id).is_some() {
            // The container's events are the protocol's (SPEC 4): only the output limit.
            if result.error.as_deref() == Some(jobs::OUTPUT_LIMIT_ERROR) {
                inner.events.push(jobs::OUTPUT_LIMIT_ERROR.to_string());
            }
            c.save(&inner);
        }
        if still == Some(0) {
            jobs::remove(&dir);
        }
        drop(inner);
        steps.mark("record");
        let info = self.info(c).await.ok();
        steps.mark("info");
        tracing::info!(handle = %c.handle, job_id, exit_status = result.exit_status,
            steps = ?steps.to_string(), "job linked");
        Ok(LinkResponse {
            exit_status: Some(result.exit_status),
            stdout: Some(result.stdout),
            stderr: Some(result.stderr),
            info,
        })
    }

    pub(super) async fn stream(&self, c: &Arc<Container>, job_id: u32) -> Result<Reply, Error> {
        let dir = Self::job_dir(&*c.inner.lock().await, job_id)?;
        let (tx, reply) = Reply::channel(16);
        let this = self
            .this
            .upgrade()
            .expect("the manager is alive while it serves");
        let c = c.clone();
        tokio::spawn(async move {
            let mut chunks = jobs::stream(&dir);
            loop {
                // A client that went away leaves the job alone (SPEC 3.5): stop following it
                // at once, even while it writes nothing.
                let item = tokio::select! {
                    item = chunks.recv() => item,
                    _ = tx.closed() => return,
                };
                let Some(item) = item else { break };
                match item {
                    jobs::StreamItem::Chunk { name, data } => {
                        let r = StreamResponse {
                            name: Some(name.into()),
                            data: Some(data),
                            ..Default::default()
                        };
                        if tx.send(r.into()).await.is_err() {
                            // The client went away: the job is kept (SPEC 3.5).
                            return;
                        }
                    }
                    jobs::StreamItem::Exit { exit_status, .. } => {
                        if tx.is_closed() {
                            return;
                        }
                        let mut inner = c.inner.lock().await;
                        if inner.jobs.remove(&job_id).is_some() {
                            c.save(&inner);
                            jobs::remove(&dir);
                        }
                        drop(inner);
                        let info = this.info(&c).await.ok();
                        let r = StreamResponse {
                            exit_status: Some(exit_status),
                            info,
                            ..Default::default()
                        };
                        let _ = tx.send(r.into()).await;
                        return;
                    }
                    jobs::StreamItem::Error(e) => {
                        let _ = tx.send(Response::error(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(reply)
    }
}
