//! The transaction crash-cycle workload (`suite=tx`, then `suite=tx-verify`): the
//! serial lines both boots print. What the transactions do is in
//! `pm_qemu_pool::tx` (it needs `pmrt`).
//!
//! The writer creates a pool over the first [`POOL_LEN`] bytes of NVDIMM 0 and
//! publishes its root (a commit counter, a hash map, [`SLOTS`] object slots) in one
//! transaction, then prints `tx ready`. Transaction `n`'s plan is a function of the seed;
//! only after it returned does the writer print `tx <n> commit count=<c> fences=<k>`
//! (`c`: the root's counter, the commits so far) or `tx <n> abort fences=<k>` (a
//! planned abort). The verifier opens the pool (which recovers it), prints what
//! recovery did and the state it found (`tx state`: the counter and a digest of every
//! slot's bytes and every map entry), after checking it against the seed's model.
//!
//! ```text
//! tx ready root=0x103000 fences=4
//! tx 0 commit count=1 fences=5
//! tx 1 abort fences=5
//! tx no-pool
//! tx opened records=12 committed=11 incomplete=1 rolled_back=1 replayed=20
//! tx state count=41 slots=5 keys=17 digest=0x5e1d2c3b4a596877
//! ```

use core::fmt;

use crate::words::{keyed, Keyed};

/// Object slots in the root.
pub const SLOTS: usize = 8;
/// Bytes of NVDIMM 0 (from offset 0) the pool occupies.
pub const POOL_LEN: u64 = 16 << 20;
/// The pool's layout name.
pub const LAYOUT: &str = "pm-qemu-tx";

/// One serial line of the tx workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxLine {
    /// Writer: the pool exists and its root is published; `fences` issued so far.
    Ready {
        /// The root object's offset.
        root: u64,
        /// Fences issued by the media so far.
        fences: u64,
    },
    /// Writer: transaction `tx` committed (its commit returned); the root's counter
    /// is now `count`.
    Commit {
        /// The transaction's number (its plan).
        tx: u64,
        /// Commits so far, as stored in the root.
        count: u64,
        /// Fences issued by the media so far.
        fences: u64,
    },
    /// Writer: transaction `tx` aborted as planned.
    Abort {
        /// The transaction's number.
        tx: u64,
        /// Fences issued so far.
        fences: u64,
    },
    /// Verifier: no valid pool on the media.
    NoPool,
    /// Verifier: the pool opened; what the runtime's recovery did.
    Opened {
        /// Log records scanned.
        records: u64,
        /// Committed transactions found in the logs.
        committed: u64,
        /// Transactions without a commit record (discarded or rolled back).
        incomplete: u64,
        /// Of those, transactions whose in-place writes were rolled back.
        rolled_back: u64,
        /// Log groups replayed.
        replayed: u64,
    },
    /// Verifier: the recovered state, which matched the seed's model.
    State {
        /// The root's commit counter.
        count: u64,
        /// Non-empty slots.
        slots: u64,
        /// Map entries.
        keys: u64,
        /// Digest of the state (`pm_qemu_pool::tx::Model::digest`).
        digest: u64,
    },
}

impl fmt::Display for TxLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TxLine::Ready { root, fences } => write!(f, "tx ready root={root:#x} fences={fences}"),
            TxLine::Commit { tx, count, fences } => {
                write!(f, "tx {tx} commit count={count} fences={fences}")
            }
            TxLine::Abort { tx, fences } => write!(f, "tx {tx} abort fences={fences}"),
            TxLine::NoPool => write!(f, "tx no-pool"),
            TxLine::Opened {
                records,
                committed,
                incomplete,
                rolled_back,
                replayed,
            } => write!(
                f,
                "tx opened records={records} committed={committed} incomplete={incomplete} \
                 rolled_back={rolled_back} replayed={replayed}"
            ),
            TxLine::State {
                count,
                slots,
                keys,
                digest,
            } => write!(
                f,
                "tx state count={count} slots={slots} keys={keys} digest={digest:#x}"
            ),
        }
    }
}

impl TxLine {
    /// Whether it is a verifier's `tx state` line.
    pub fn is_state(&self) -> bool {
        matches!(self, TxLine::State { .. })
    }

    /// Recognises one line (without its line end); `None` for anything else, including
    /// a line cut short by a kill.
    pub fn parse(line: &str) -> Option<Self> {
        let (kind, mut w) = match keyed(line, "tx")? {
            Keyed::NoPool => return Some(TxLine::NoPool),
            Keyed::Kind(kind, w) => (kind, w),
        };
        match kind {
            "ready" => {
                let root = w.key("root")?;
                let fences = w.key("fences")?;
                w.end(TxLine::Ready { root, fences })
            }
            "opened" => {
                let records = w.key("records")?;
                let committed = w.key("committed")?;
                let incomplete = w.key("incomplete")?;
                let rolled_back = w.key("rolled_back")?;
                let replayed = w.key("replayed")?;
                w.end(TxLine::Opened {
                    records,
                    committed,
                    incomplete,
                    rolled_back,
                    replayed,
                })
            }
            "state" => {
                let count = w.key("count")?;
                let slots = w.key("slots")?;
                let keys = w.key("keys")?;
                let digest = w.key("digest")?;
                w.end(TxLine::State {
                    count,
                    slots,
                    keys,
                    digest,
                })
            }
            n => {
                let tx = crate::words::number(n).filter(|_| !n.starts_with("0x"))?;
                match w.word()? {
                    "commit" => {
                        let count = w.key("count")?;
                        let fences = w.key("fences")?;
                        w.end(TxLine::Commit { tx, count, fences })
                    }
                    "abort" => {
                        let fences = w.key("fences")?;
                        w.end(TxLine::Abort { tx, fences })
                    }
                    _ => None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_lines_parse_back() {
        let lines = [
            TxLine::Ready {
                root: 0x10_3000,
                fences: 4,
            },
            TxLine::Commit {
                tx: 7,
                count: 6,
                fences: 40,
            },
            TxLine::Abort { tx: 8, fences: 40 },
            TxLine::NoPool,
            TxLine::Opened {
                records: 12,
                committed: 11,
                incomplete: 1,
                rolled_back: 1,
                replayed: 20,
            },
            TxLine::State {
                count: 41,
                slots: 5,
                keys: 17,
                digest: u64::MAX,
            },
        ];
        for l in lines {
            let text = l.to_string();
            assert!(text.starts_with("tx "), "{text}");
            assert_eq!(TxLine::parse(&text), Some(l), "{text}");
            assert_eq!(TxLine::parse(&(text + "\r")), Some(l));
        }
    }

    #[test]
    fn cut_foreign_or_malformed_lines_are_not_recognised() {
        for line in [
            "tx",
            "tx ready root=0x10",
            "tx ready root=0x10 fences=1 extra",
            "tx 4 commit count=1",
            "tx 4 commit count=1 fences=",
            "tx 0x4 commit count=1 fences=2",
            "tx x commit count=1 fences=2",
            "tx 4 abort",
            "tx 4 frobnicate fences=1",
            "tx state count=1 slots=2 keys=3",
            "tx opened records=1",
            "tx no-pools",
            "heap op 1 field=1 value=0x0 fences=1",
        ] {
            assert_eq!(TxLine::parse(line), None, "{line:?}");
        }
    }
}
