//! clarateach-server
