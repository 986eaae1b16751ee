//! End-to-end tests: each spawns the server and talks HTTP to it.

mod auth;
mod caching;
mod cli;
mod faults;
mod federation;
mod graph;
mod graphiql;
mod helpers;
mod hostile;
mod http;
mod lifecycle;
mod limits;
mod manifests;
mod operations;
mod persisted;
mod posture;
mod replicas;
mod subscriptions;
mod writes;
