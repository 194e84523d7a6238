//! Helpers shared by the fuzz targets: unpacking a bundle in a sandbox and checking that
//! nothing left it, and driving hyper's HTTP/1.1 server and client over in-memory bytes
//! (the reference the balancer's parser is compared with).

pub mod bundle;
pub mod hyper_ref;
