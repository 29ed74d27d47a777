//! End-to-end tests with real clients and servers live here (not started yet).
