//! Integration tests: the real server over HTTP, on SQLite and on PostgreSQL.

#[path = "../common/mod.rs"]
mod common;
mod helpers;
mod ldap;
#[path = "../webhooks/receiver.rs"]
mod receiver;

mod abuse;
mod account;
mod api_tokens;
mod attachments;
mod auth;
mod auth_limits;
mod authorization;
mod console;
mod documents;
mod events;
mod http;
mod members;
mod notifications;
mod publish;
mod realtime;
mod reports;
mod search;
mod search_indexer;
mod sessions;
mod versions;
mod webhooks;
mod ws;
