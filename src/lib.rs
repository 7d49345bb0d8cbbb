//! Stoa: a self-hosted, actor-based real-time collaboration server.
//!
//! This crate is the server: configuration, the HTTP API, storage adapters and the wiring
//! that builds them into one application ([`startup::Application`]).

pub mod amqp;
pub mod api;
pub mod auth;
pub mod blobs;
pub mod bus;
pub mod config;
pub mod console;
pub mod digest;
pub mod domain;
pub mod files;
pub mod history;
pub mod identity;
pub mod longpoll;
pub mod mail;
pub mod metrics;
pub mod ops;
pub mod realtime;
pub mod search;
pub mod seed;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod views;
pub mod webhooks;
