//! Sprout's integration tests: one binary, modules inside. Every test starts the real
//! `sprout` binary on free ports with its own data directory, against the real Docker
//! engine and a real SQLite file, and cleans up the Docker objects it made.

mod auth;
mod bad_input;
mod confinement;
mod corrupt;
mod dashboard;
mod dataplane;
mod deploys;
mod firsthour;
mod harness;
mod openapi;
mod operations;
mod resources;
mod resources_ha;
mod resources_visible;
mod scaling;
mod secrets;
mod shop;
mod spine;
mod sqs_attacks;
mod worker;
