//! Front doors: the hyper server and the AWS Lambda runtime. Each door turns its transport into
//! `http::Request`s and calls the one edge service, telling it the client's address: the server
//! per connection ([`crate::edge::EdgeService::for_peer`]), the Lambda door per request
//! ([`crate::client_ip::PeerIp`]).

pub mod lambda;
pub mod server;
