//! clarateach-store
