//! Tests of the classic coordinator.
