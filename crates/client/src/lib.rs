//! warden-client
