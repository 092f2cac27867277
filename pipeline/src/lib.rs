//! Placeholder: this crate is built out by a later issue (see ARCHITECTURE.md).
