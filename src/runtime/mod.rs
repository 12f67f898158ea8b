//! Front doors and the private listener. Each door turns its transport into `http::Request`s and
//! calls the one edge service, telling it the client's address: the server per connection
//! ([`crate::edge::EdgeService::for_peer`]), the Lambda door per request
//! ([`crate::params::PeerIp`]).
//!
//! * [`server`] — the hyper accept loop: connection cap, header deadline, graceful shutdown.
//! * [`lane`] — where each connection starts: plain pixel reads answered from their parsed
//!   heads, the connection handed to hyper at the first request the lane does not take.
//! * [`lambda`] — the Lambda runtime and its drain extension.
//! * [`metrics_listener`] — Prometheus `/metrics` on its own address.

pub mod lambda;
mod lane;
pub mod metrics_listener;
pub mod server;
