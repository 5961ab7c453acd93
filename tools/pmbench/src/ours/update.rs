//! w1, w2, w3, w6, w7 on our stack: transactional updates of existing objects.

use super::{EngineError, OursConfig};
use crate::round::RoundResult;
use crate::workload::{UpdateJob, WorkloadId};

/// One round: allocate `job.objects` objects of `job.object_size` bytes in a pool of
/// `cfg.params.pool_size`, run `job.warm` untimed, then time `job.timed`. Operation `i`
/// is one transaction that updates `[off[i], off[i] + job.len)` of object `obj[i]` with
/// 8-byte words of value `first + i` (`first` = 1 for warm-up, warm-up length + 1 for
/// the timed ops), as the PMDK shim does. With `job.threads == 2` the first half of the
/// operations runs on one thread and the second half on another, concurrently; the
/// region then lasts until both finish.
pub fn run(
    _id: WorkloadId,
    _job: &UpdateJob,
    _cfg: &OursConfig,
) -> Result<RoundResult, EngineError> {
    Err(EngineError::NotBuilt)
}
