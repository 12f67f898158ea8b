//! Front doors and the private listener. Each door turns its transport into `http::Request`s and
//! calls the one edge service, telling it the client's address: the server per connection
//! ([`crate::edge::EdgeService::for_peer`]), the Lambda door per request
//! ([`crate::params::PeerIp`]).
//!
//! * [`server`] — the hyper accept loop: connection cap, header deadline, graceful shutdown.
//! * [`lambda`] — the Lambda runtime and its drain extension.
//! * [`metrics_listener`] — Prometheus `/metrics` on its own address.

pub mod lambda;
pub mod metrics_listener;
pub mod server;
