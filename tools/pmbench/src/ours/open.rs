//! open and recover on our stack.

use super::{EngineError, OursConfig};
use crate::round::RoundResult;
use crate::workload::{OpenJob, RecoverJob};

/// open: build a pool of `job.pool_size` bytes holding one object per entry of
/// `job.sizes` (once, untimed; keep it between rounds), then per round time three
/// regions in a fresh mapping: the pool open, the first allocation after it (128 B),
/// and a walk over every live object reading its first 8 bytes (units = objects
/// walked). Free the allocation again so every round opens the same pool.
pub fn run_open(_job: &OpenJob, _cfg: &OursConfig) -> Result<RoundResult, EngineError> {
    Err(EngineError::NotBuilt)
}

/// recover: a pool of `job.pool_size` bytes with one object of `job.log_bytes` bytes
/// holding a committed pattern; a child process adds it to a transaction in
/// `job.chunk`-byte ranges, overwrites it and dies before the commit. Time the open
/// that recovers (check the pattern is back, untimed), then a clean open.
pub fn run_recover(_job: &RecoverJob, _cfg: &OursConfig) -> Result<RoundResult, EngineError> {
    Err(EngineError::NotBuilt)
}
