//! warden-runtime: the OCI container core shared by `warden-runc` and `wardend`.
