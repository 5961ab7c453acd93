//! The oracle of a transaction cycle: the writer's reported progress, replayed, and
//! the judgement of the state the verifier found.

use core::fmt;

use pm_qemu_proto::tx::TxLine;

use super::{plan, Model};

/// The transaction the writer was running when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Its number.
    pub tx: u64,
    /// Whether its plan commits (else it aborts, and can never become visible).
    pub commits: bool,
}

/// What a judged cycle showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxVerdict {
    /// Whether the pool (with its root) had been reported ready.
    pub ready: bool,
    /// Transactions reported (committed or aborted).
    pub reported: u64,
    /// Commits reported.
    pub committed: u64,
    /// The transaction in flight, if the writer stopped inside the workload.
    pub in_flight: Option<InFlight>,
    /// Whether the transaction in flight is visible (it committed but was not
    /// reported).
    pub applied: bool,
}

impl fmt::Display for TxVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.ready {
            return write!(f, "stopped before the pool was ready");
        }
        write!(
            f,
            "{} transactions reported ({} commits)",
            self.reported, self.committed
        )?;
        match self.in_flight {
            Some(i) if self.applied => write!(f, ", tx {} in flight: applied", i.tx),
            Some(i) if i.commits => write!(f, ", tx {} in flight: not applied", i.tx),
            Some(i) => write!(f, ", tx {} in flight: an abort, not applied", i.tx),
            None => write!(f, ", all done"),
        }
    }
}

/// Where the writer's lines or the recovered state broke the workload's invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxHistoryError {
    /// A writer line out of order (a transaction before `ready`, a skipped number, a
    /// second `ready`): the number expected and the one found (`u64::MAX`: `ready`).
    Sequence {
        /// Expected.
        expected: u64,
        /// Found.
        found: u64,
    },
    /// A transaction committed that its plan aborts, or the reverse.
    Plan {
        /// The transaction.
        tx: u64,
        /// Whether its plan aborts.
        planned_abort: bool,
    },
    /// A commit reported another counter than one more than the last.
    Counter {
        /// The transaction.
        tx: u64,
        /// Expected counter.
        expected: u64,
        /// Reported counter.
        found: u64,
    },
    /// The fence count went backwards.
    Fences {
        /// The transaction.
        tx: u64,
        /// Fences at the line before.
        before: u64,
        /// Fences reported.
        found: u64,
    },
    /// A crash at fence `fence`, but a line reported that fence or a later one.
    CrashFence {
        /// The crash fence.
        fence: u64,
        /// Fences the last line reported.
        last: u64,
    },
    /// The pool was reported ready, but no pool was found.
    PoolLost,
    /// Before `ready`, only no pool or the empty state is possible.
    EarlyState {
        /// The counter found.
        count: u64,
    },
    /// Fewer commits are visible than were reported (durability).
    Lost {
        /// Commits reported.
        committed: u64,
        /// The counter found.
        found: u64,
    },
    /// More commits are visible than were reported or in flight (a phantom).
    Phantom {
        /// The most that may be visible.
        allowed: u64,
        /// The counter found.
        found: u64,
    },
    /// The state's digest is not the model's after its counter's commits (atomicity:
    /// a transaction partly visible, or bytes wrong).
    Digest {
        /// The counter.
        count: u64,
        /// The model's digest.
        expected: u64,
        /// The digest found.
        found: u64,
    },
}

impl fmt::Display for TxHistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxHistoryError::Sequence { expected, found } => write!(
                f,
                "writer lines out of order: expected tx {expected}, got {found}"
            ),
            TxHistoryError::Plan { tx, planned_abort } => write!(
                f,
                "tx {tx} {} although its plan {}",
                if *planned_abort { "committed" } else { "aborted" },
                if *planned_abort { "aborts" } else { "commits" }
            ),
            TxHistoryError::Counter {
                tx,
                expected,
                found,
            } => write!(f, "tx {tx} reported counter {found}, expected {expected}"),
            TxHistoryError::Fences { tx, before, found } => {
                write!(f, "tx {tx}: fences went from {before} back to {found}")
            }
            TxHistoryError::CrashFence { fence, last } => write!(
                f,
                "crash at fence {fence}, but a line reported {last} fences"
            ),
            TxHistoryError::PoolLost => write!(f, "the pool was reported ready but is gone"),
            TxHistoryError::EarlyState { count } => write!(
                f,
                "counter {count} or a non-empty state although the pool was never ready"
            ),
            TxHistoryError::Lost { committed, found } => write!(
                f,
                "{committed} commits reported, only {found} visible: a committed transaction was lost"
            ),
            TxHistoryError::Phantom { allowed, found } => write!(
                f,
                "{found} commits visible, at most {allowed} possible: a phantom transaction"
            ),
            TxHistoryError::Digest {
                count,
                expected,
                found,
            } => write!(
                f,
                "state digest {found:#x} is not the model's {expected:#x} after {count} commits"
            ),
        }
    }
}

impl core::error::Error for TxHistoryError {}

/// The writer's reported progress, replayed: the oracle of a transaction cycle.
#[derive(Debug, Clone)]
pub struct TxHistory {
    seed: u64,
    txs: u32,
    ready: bool,
    next: u64,
    count: u64,
    fences: u64,
}

impl TxHistory {
    /// Nothing reported yet, for a writer of `txs` transactions seeded `seed`.
    pub fn new(seed: u64, txs: u32) -> Self {
        TxHistory {
            seed,
            txs,
            ready: false,
            next: 0,
            count: 0,
            fences: 0,
        }
    }

    /// Replays the writer's serial output. Other lines are skipped, and so is a last
    /// line without its line end (a kill can cut a number short).
    pub fn from_serial(seed: u64, txs: u32, serial: &str) -> Result<Self, TxHistoryError> {
        let mut h = TxHistory::new(seed, txs);
        let complete = serial.rfind('\n').map_or("", |end| &serial[..end]);
        for line in complete.lines().filter_map(TxLine::parse) {
            h.record(line)?;
        }
        Ok(h)
    }

    /// Replays one writer line, checking it: `ready` once and first; transactions in
    /// order, each committed or aborted as planned; the counter one up per commit;
    /// fences never going back.
    pub fn record(&mut self, line: TxLine) -> Result<(), TxHistoryError> {
        let (tx, fences, commit) = match line {
            TxLine::Ready { fences, .. } => {
                if self.ready {
                    return Err(TxHistoryError::Sequence {
                        expected: self.next,
                        found: u64::MAX,
                    });
                }
                self.ready = true;
                self.fences = fences;
                return Ok(());
            }
            TxLine::Commit { tx, count, fences } => (tx, fences, Some(count)),
            TxLine::Abort { tx, fences } => (tx, fences, None),
            _ => return Ok(()),
        };
        if !self.ready || tx != self.next {
            return Err(TxHistoryError::Sequence {
                expected: if self.ready { self.next } else { u64::MAX },
                found: tx,
            });
        }
        let planned_abort = plan(self.seed, tx).abort;
        if planned_abort != commit.is_none() {
            return Err(TxHistoryError::Plan { tx, planned_abort });
        }
        if let Some(count) = commit {
            if count != self.count + 1 {
                return Err(TxHistoryError::Counter {
                    tx,
                    expected: self.count + 1,
                    found: count,
                });
            }
            self.count = count;
        }
        if fences < self.fences {
            return Err(TxHistoryError::Fences {
                tx,
                before: self.fences,
                found: fences,
            });
        }
        self.fences = fences;
        self.next += 1;
        Ok(())
    }

    /// Commits reported.
    pub fn committed(&self) -> u64 {
        self.count
    }

    /// The transaction running when the writer stopped (`None` before `ready`, or
    /// when every transaction was reported).
    pub fn in_flight(&self) -> Option<InFlight> {
        (self.ready && self.next < u64::from(self.txs)).then(|| InFlight {
            tx: self.next,
            commits: !plan(self.seed, self.next).abort,
        })
    }

    /// For a writer stopped by `crash_at=fence`: every line came before that fence
    /// was issued.
    pub fn check_crash_fence(&self, fence: u64) -> Result<(), TxHistoryError> {
        if self.ready && self.fences >= fence {
            return Err(TxHistoryError::CrashFence {
                fence,
                last: self.fences,
            });
        }
        Ok(())
    }

    /// Judges the recovered state: `(counter, digest)` from the verifier's `tx state`
    /// line, `None` if it found no pool.
    pub fn check(&self, state: Option<(u64, u64)>) -> Result<TxVerdict, TxHistoryError> {
        let mut verdict = TxVerdict {
            ready: self.ready,
            reported: self.next,
            committed: self.count,
            in_flight: self.in_flight(),
            applied: false,
        };
        let Some((count, digest)) = state else {
            return if self.ready {
                Err(TxHistoryError::PoolLost)
            } else {
                Ok(verdict)
            };
        };
        if !self.ready && (count != 0 || digest != Model::default().digest()) {
            return Err(TxHistoryError::EarlyState { count });
        }
        if count < self.count {
            return Err(TxHistoryError::Lost {
                committed: self.count,
                found: count,
            });
        }
        let allowed = self.count + u64::from(verdict.in_flight.is_some_and(|i| i.commits));
        if count > allowed {
            return Err(TxHistoryError::Phantom {
                allowed,
                found: count,
            });
        }
        verdict.applied = count > self.count;
        let expected = Model::replay(self.seed, self.txs, count)
            .map(|m| m.digest())
            .ok_or(TxHistoryError::Phantom {
                allowed,
                found: count,
            })?;
        if digest != expected {
            return Err(TxHistoryError::Digest {
                count,
                expected,
                found: digest,
            });
        }
        Ok(verdict)
    }
}
