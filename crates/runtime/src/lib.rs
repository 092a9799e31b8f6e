//! warden-runtime: the OCI container core shared by `warden-runc` and `wardend`.

pub mod cgroups;
pub mod checkpoint;
pub mod console;
pub mod container;
pub mod error;
pub mod hooks;
pub mod namespaces;
pub mod proc;
pub mod process;
pub mod rootfs;
pub mod security;
pub mod spec;
pub mod state;
pub mod steps;

pub use container::{create, list, Container, CreateOptions, Created, ExecOptions};
pub use error::{Error, Result};
pub use state::Status;
