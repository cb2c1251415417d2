//! clarateach-workspace
