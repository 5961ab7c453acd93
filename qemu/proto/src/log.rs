//! The crash-cycle workload: an append-only log of checksummed 64-byte records.
//!
//! Record `i` of a log seeded `seed` is a pure function of `(seed, i)` ([`record`]), so
//! the verifier knows every byte it should find. The writer appends record `i` at byte
//! `i * 64` of the log region, persists it (one fence per record), and only then prints
//! `committed <i>`. A record is accepted when its checksum, index and seed match —
//! what a recovery without the expected contents would check; the verifier then also
//! compares accepted records with the expected bytes, which catches a torn record that
//! the checksum wrongly accepted.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | index `i` (LE) |
//! | 8 | 8 | seed (LE) |
//! | 16 | 40 | five payload words `mix64(seed ^ mix64(i) + j)` (LE) |
//! | 56 | 8 | checksum of bytes 0..56 ([`checksum`]) |
//!
//! An all-zero record is blank (its checksum field 0 never matches: see the tests).

use crate::mix64;

/// Bytes per record: one cache line, so a record is flushed as one line.
pub const RECORD_SIZE: usize = 64;
/// Offset of the record index.
pub const OFF_INDEX: usize = 0;
/// Offset of the seed.
pub const OFF_SEED: usize = 8;
/// Offset of the payload words.
pub const OFF_PAYLOAD: usize = 16;
/// Payload words per record.
pub const PAYLOAD_WORDS: usize = 5;
/// Offset of the checksum.
pub const OFF_CHECKSUM: usize = 56;
const _: () = assert!(OFF_PAYLOAD + PAYLOAD_WORDS * 8 == OFF_CHECKSUM);
const _: () = assert!(OFF_CHECKSUM + 8 == RECORD_SIZE);

fn word(bytes: &[u8; RECORD_SIZE], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[off..off + 8]);
    u64::from_le_bytes(w)
}

/// Checksum of a record's first 56 bytes: a chain of [`mix64`] over the words, so any
/// change of any word (a torn record) changes it with overwhelming probability.
pub fn checksum(bytes: &[u8; RECORD_SIZE]) -> u64 {
    (0..OFF_CHECKSUM / 8).fold(0x6c6f_675f_7265_6364, |h, w| mix64(h ^ word(bytes, w * 8)))
}

/// Record `index` of the log seeded `seed`.
pub fn record(seed: u64, index: u64) -> [u8; RECORD_SIZE] {
    let mut r = [0u8; RECORD_SIZE];
    r[OFF_INDEX..OFF_INDEX + 8].copy_from_slice(&index.to_le_bytes());
    r[OFF_SEED..OFF_SEED + 8].copy_from_slice(&seed.to_le_bytes());
    for j in 0..PAYLOAD_WORDS {
        let v = mix64((seed ^ mix64(index)).wrapping_add(j as u64));
        let off = OFF_PAYLOAD + j * 8;
        r[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    let sum = checksum(&r);
    r[OFF_CHECKSUM..].copy_from_slice(&sum.to_le_bytes());
    r
}

/// What a record slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// Checksum, index and seed match the slot.
    Valid,
    /// All zero: never written.
    Blank,
    /// Checksum does not match: partly written (or damaged).
    Torn,
    /// A checksummed record, but of another slot or another log.
    Foreign {
        /// The index it carries.
        index: u64,
        /// The seed it carries.
        seed: u64,
    },
}

/// Classifies the bytes found in slot `index` of the log seeded `seed`.
pub fn classify(bytes: &[u8; RECORD_SIZE], seed: u64, index: u64) -> RecordState {
    if bytes.iter().all(|&b| b == 0) {
        return RecordState::Blank;
    }
    if word(bytes, OFF_CHECKSUM) != checksum(bytes) {
        return RecordState::Torn;
    }
    let (found_index, found_seed) = (word(bytes, OFF_INDEX), word(bytes, OFF_SEED));
    if found_index == index && found_seed == seed {
        RecordState::Valid
    } else {
        RecordState::Foreign {
            index: found_index,
            seed: found_seed,
        }
    }
}

/// What a scan of a log region found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogScan {
    /// Length of the accepted prefix: slots `0..valid` are all [`RecordState::Valid`].
    pub valid: u64,
    /// The state of slot `valid`, or `None` when the region is full.
    pub end: Option<RecordState>,
    /// The first accepted slot whose bytes differ from [`record`] (a torn record the
    /// checksum let through, or a writer bug).
    pub mismatched: Option<u64>,
    /// The first slot after the end of the prefix holding a valid record: the writer
    /// appends only after the previous record is durable, so there must be none.
    pub stray: Option<u64>,
}

/// A broken log invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogError {
    /// An accepted record differs from what the writer wrote.
    Mismatched {
        /// Its slot.
        index: u64,
    },
    /// A valid record after the end of the accepted prefix.
    Stray {
        /// Its slot.
        index: u64,
    },
    /// A record reported committed is not in the accepted prefix (durability).
    Lost {
        /// Records reported committed.
        committed: u64,
        /// Records found.
        valid: u64,
    },
    /// More records survived than were written: at most the one in flight may exceed
    /// the committed count.
    Phantom {
        /// Records reported committed.
        committed: u64,
        /// Records found.
        valid: u64,
    },
}

impl core::fmt::Display for LogError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LogError::Mismatched { index } => {
                write!(f, "record {index} passed its checksum but differs")
            }
            LogError::Stray { index } => {
                write!(f, "valid record {index} after the end of the log")
            }
            LogError::Lost { committed, valid } => write!(
                f,
                "{committed} records reported committed, only {valid} survived"
            ),
            LogError::Phantom { committed, valid } => write!(
                f,
                "{valid} records survived but only {committed} were reported committed \
                 (at most one more may be in flight)"
            ),
        }
    }
}

impl core::error::Error for LogError {}

impl LogScan {
    /// Scans `capacity` slots of the log seeded `seed`; `read(i, buf)` fills `buf`
    /// with slot `i`.
    pub fn run(
        capacity: u64,
        seed: u64,
        mut read: impl FnMut(u64, &mut [u8; RECORD_SIZE]),
    ) -> Self {
        let mut buf = [0u8; RECORD_SIZE];
        let mut scan = LogScan {
            valid: 0,
            end: None,
            mismatched: None,
            stray: None,
        };
        for i in 0..capacity {
            read(i, &mut buf);
            let state = classify(&buf, seed, i);
            if scan.end.is_none() {
                if state == RecordState::Valid {
                    scan.valid = i + 1;
                    if scan.mismatched.is_none() && buf != record(seed, i) {
                        scan.mismatched = Some(i);
                    }
                } else {
                    scan.end = Some(state);
                }
            } else if state == RecordState::Valid {
                scan.stray = Some(i);
                break;
            }
        }
        scan
    }

    /// The log's own invariants: accepted records are exact, nothing valid follows.
    pub fn check(&self) -> Result<(), LogError> {
        if let Some(index) = self.mismatched {
            return Err(LogError::Mismatched { index });
        }
        if let Some(index) = self.stray {
            return Err(LogError::Stray { index });
        }
        Ok(())
    }

    /// The invariants plus durability against the writer's report: `committed`
    /// records were reported durable, so all of them survive, and at most one more
    /// (persisted, but killed before it could report). A lost commit is reported first: it is the failure that matters most.
    pub fn check_against(&self, committed: u64) -> Result<(), LogError> {
        if self.valid < committed {
            return Err(LogError::Lost {
                committed,
                valid: self.valid,
            });
        }
        self.check()?;
        if self.valid > committed + 1 {
            return Err(LogError::Phantom {
                committed,
                valid: self.valid,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(seed: u64, n: u64, capacity: u64) -> Vec<u8> {
        let mut v = vec![0u8; capacity as usize * RECORD_SIZE];
        for i in 0..n {
            let at = i as usize * RECORD_SIZE;
            v[at..at + RECORD_SIZE].copy_from_slice(&record(seed, i));
        }
        v
    }

    fn scan(bytes: &[u8], seed: u64) -> LogScan {
        let cap = (bytes.len() / RECORD_SIZE) as u64;
        LogScan::run(cap, seed, |i, buf| {
            let at = i as usize * RECORD_SIZE;
            buf.copy_from_slice(&bytes[at..at + RECORD_SIZE]);
        })
    }

    #[test]
    fn written_records_are_accepted_and_blank_ends_the_log() {
        let s = scan(&log_of(5, 10, 16), 5);
        assert_eq!(s.valid, 10);
        assert_eq!(s.end, Some(RecordState::Blank));
        assert_eq!(s.check(), Ok(()));
        assert_eq!(s.check_against(10), Ok(()));
        assert_eq!(
            s.check_against(9),
            Ok(()),
            "one persisted, not yet reported"
        );
        let full = scan(&log_of(5, 16, 16), 5);
        assert_eq!((full.valid, full.end), (16, None));
    }

    #[test]
    fn a_torn_record_at_any_word_is_rejected() {
        for word in 0..RECORD_SIZE / 8 {
            let mut log = log_of(3, 4, 8);
            // Record 4 half written: only this word reached media.
            let rec = record(3, 4);
            let at = 4 * RECORD_SIZE + word * 8;
            log[at..at + 8].copy_from_slice(&rec[word * 8..word * 8 + 8]);
            let s = scan(&log, 3);
            assert_eq!(s.valid, 4, "word {word}");
            assert_eq!(s.end, Some(RecordState::Torn));
            // And the other way round: all but this word.
            let mut log = log_of(3, 5, 8);
            log[at..at + 8].fill(0);
            assert_eq!(scan(&log, 3).valid, 4, "all but word {word}");
        }
    }

    #[test]
    fn lost_phantom_stray_and_foreign_records_are_reported() {
        let s = scan(&log_of(1, 3, 8), 1);
        assert_eq!(
            s.check_against(4),
            Err(LogError::Lost {
                committed: 4,
                valid: 3
            })
        );
        assert_eq!(
            s.check_against(1),
            Err(LogError::Phantom {
                committed: 1,
                valid: 3
            })
        );

        let mut log = log_of(1, 6, 8);
        log[2 * RECORD_SIZE..3 * RECORD_SIZE].fill(0);
        let s = scan(&log, 1);
        assert_eq!((s.valid, s.stray), (2, Some(3)));
        assert_eq!(s.check(), Err(LogError::Stray { index: 3 }));
        assert_eq!(s.check_against(2), Err(LogError::Stray { index: 3 }));
        // Losing a commit outranks the stray record behind it.
        assert_eq!(
            s.check_against(6),
            Err(LogError::Lost {
                committed: 6,
                valid: 2
            })
        );

        // Another seed's log is foreign, not valid.
        let s = scan(&log_of(2, 3, 4), 1);
        assert_eq!(s.valid, 0);
        assert_eq!(s.end, Some(RecordState::Foreign { index: 0, seed: 2 }));
    }

    #[test]
    fn a_record_that_passes_its_checksum_but_differs_is_mismatched() {
        let mut log = log_of(9, 3, 4);
        // A forged record 1: new payload, checksum recomputed (what a buggy writer or a
        // checksum collision would leave).
        let mut forged = record(9, 1);
        forged[OFF_PAYLOAD] ^= 1;
        let sum = checksum(&forged);
        forged[OFF_CHECKSUM..].copy_from_slice(&sum.to_le_bytes());
        log[RECORD_SIZE..2 * RECORD_SIZE].copy_from_slice(&forged);
        let s = scan(&log, 9);
        assert_eq!(s.valid, 3);
        assert_eq!(s.check(), Err(LogError::Mismatched { index: 1 }));
    }

    #[test]
    fn blank_record_checksum_never_matches() {
        let blank = [0u8; RECORD_SIZE];
        assert_ne!(checksum(&blank), 0);
        assert_eq!(classify(&blank, 0, 0), RecordState::Blank);
        assert_ne!(record(0, 0), record(0, 1));
        assert_ne!(record(0, 0), record(1, 0));
    }
}
