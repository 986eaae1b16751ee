//! commerce-graph: a GraphQL federation subgraph server for a product/order graph.
//!
//! `http` is the transport, `graph` the schema, `store` the SQL; `config`,
//! `cli` and `server` are how it is started. See ARCHITECTURE.md for the shape.

pub mod auth;
pub mod cli;
pub mod config;
pub mod events;
pub mod graph;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod persisted;
pub mod server;
pub mod store;
pub mod telemetry;
