//! The transaction crash-cycle workload (`pm_qemu_proto::tx`, `pm_qemu_pool::tx`):
//! boot 1 (`suite=tx`) creates a `pmrt` pool over the first `POOL_LEN` bytes of NVDIMM
//! 0 and runs seeded transactions on its slots and hash map in every mode, printing
//! each as it returns; it is killed, or crashes itself at a fence (`crash_at=`). Boot 2
//! (`suite=tx-verify`) opens (recovers) the pool, checks the state against the seed's
//! model and prints it; the runner judges that against the commits boot 1 reported.
//!
//! `mode=direct` runs on the NVDIMM; `mode=adr` on an `AdrMedia` working copy, so a
//! kill loses whatever was not flushed.

use pm_qemu_pool::tx::{self, TxWorkloadError, Verified};
use pm_qemu_proto::tx::POOL_LEN;

use super::workload_boot;
use crate::testing::{Env, Test, TestFailure};

/// Boot 1.
pub fn writer_tests() -> &'static [Test] {
    &[Test {
        name: "tx_workload",
        run: write,
    }]
}

/// Boot 2.
pub fn verifier_tests() -> &'static [Test] {
    &[Test {
        name: "tx_recovered",
        run: verify,
    }]
}

/// Creates the pool and runs `ops=` transactions, printing `tx ready` and one line per
/// transaction as it returns. The pool is dropped unclosed (see `tx::write`).
fn write(env: &Env) -> Result<(), TestFailure> {
    workload_boot(env, POOL_LEN, |media, seed, txs, fences, out| {
        tx::write(media, seed, txs, fences, out).map(drop)
    })
}

/// Opens the pool, checks it against the model and prints its state (see
/// `tx::verify`); a missing pool is reported, not failed: only the runner knows
/// whether create had finished.
fn verify(env: &Env) -> Result<(), TestFailure> {
    workload_boot(env, POOL_LEN, |media, seed, txs, _, out| {
        if let Verified::NoPool(e) = tx::verify(media, seed, txs, out)? {
            println!("tx: no valid pool: {e}");
        }
        Ok::<_, TxWorkloadError>(())
    })
}
