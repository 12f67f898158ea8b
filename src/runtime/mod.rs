//! Front doors: the hyper server and the AWS Lambda runtime. Each door turns its transport into
//! `http::Request`s carrying a [`crate::client_ip::PeerIp`] and calls the one edge service.

pub mod lambda;
pub mod server;
