//! Integration tests: the real server over HTTP, on SQLite and on PostgreSQL.

mod helpers;

mod auth;
mod authorization;
mod documents;
mod events;
mod http;
mod members;
