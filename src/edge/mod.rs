//! Edges: thin adapters behind traits, each with a simulated twin.
