//! clarateach-agent
