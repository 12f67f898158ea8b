//! Front doors: the hyper server here; the Lambda adapter joins it later. Each door turns its
//! transport into `http::Request`s carrying a [`crate::client_ip::PeerIp`] and calls the one edge
//! service.

pub mod server;
