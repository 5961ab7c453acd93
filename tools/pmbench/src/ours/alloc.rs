//! w4 and w5 on our stack: allocation and free.

use super::{EngineError, OursConfig};
use crate::round::RoundResult;
use crate::workload::{AllocJob, TxAllocJob};

/// w4: a root array of `job.initial_sizes.len()` slots, each holding an object of its
/// initial size (setup, untimed); then per operation `(slot, size)`: free the slot's
/// object and allocate one of `size` bytes into the slot, with the atomic
/// (non-transactional) API, publishing the slot crash-consistently.
pub fn run_atomic(_job: &AllocJob, _cfg: &OursConfig) -> Result<RoundResult, EngineError> {
    Err(EngineError::NotBuilt)
}

/// w5: `job.slots` slots with objects of `job.size` bytes (setup); then per operation one
/// transaction that frees the object in `slot`, allocates a new one of `job.size` bytes
/// and stores it in the slot.
pub fn run_tx(_job: &TxAllocJob, _cfg: &OursConfig) -> Result<RoundResult, EngineError> {
    Err(EngineError::NotBuilt)
}
