//! The Patroni-compatible REST API (axum). Placeholder until the REST helper lands it.
