//! Host-side test infrastructure: the crash explorer (`explorer`) and helpers shared by
//! the integration tests in `tests/`.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod explorer;
pub mod heap_scenario;
pub mod tx_scenario;
