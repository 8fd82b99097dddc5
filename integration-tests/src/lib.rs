//! End-to-end tests for klaxon live in `tests/`.
