//! clarateach-client
