//! warden-protocol
