//! The owner loop.
