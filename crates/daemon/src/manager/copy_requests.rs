//! The copy_in and copy_out requests, over the container's rootfs; the copying itself is
//! [`crate::copy`].

use std::path::Path;
use std::sync::Arc;

use warden_protocol::{CopyInRequest, CopyOutRequest};

use super::{blocking, Container, Manager};
use crate::container::{rootfs, Error, State};

impl Manager {
    pub(super) async fn copy_in(
        &self,
        c: &Arc<Container>,
        req: CopyInRequest,
    ) -> Result<(), Error> {
        c.inner.lock().await.state.check(&[State::Active])?;
        let root = rootfs::rootfs_dir(&c.dir);
        let uid = crate::container::userns::host_uid(&c.runtime_root(), &c.id, c.uid);
        blocking(move || {
            crate::copy::copy_in(
                &root,
                Path::new(&req.src_path),
                Path::new(&req.dst_path),
                (uid, uid),
            )
            .map_err(|e| Error::Request(e.to_string()))
        })
        .await
    }

    pub(super) async fn copy_out(
        &self,
        c: &Arc<Container>,
        req: CopyOutRequest,
    ) -> Result<(), Error> {
        c.inner
            .lock()
            .await
            .state
            .check(&[State::Active, State::Stopped])?;
        let root = rootfs::rootfs_dir(&c.dir);
        blocking(move || {
            let owner = match &req.owner {
                Some(o) => {
                    Some(crate::copy::resolve_owner(o).map_err(|e| Error::Request(e.to_string()))?)
                }
                None => None,
            };
            crate::copy::copy_out(
                &root,
                Path::new(&req.src_path),
                Path::new(&req.dst_path),
                owner,
            )
            .map_err(|e| Error::Request(e.to_string()))
        })
        .await
    }
}
