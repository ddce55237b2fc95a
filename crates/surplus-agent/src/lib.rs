//! The Surplus agent core.
