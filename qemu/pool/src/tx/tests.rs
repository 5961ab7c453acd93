//! The writer and verifier on simulated media (crashed by taking the durable image),
//! and the oracle against altered histories and states: each way a crash could break
//! a transaction must be reported.

use std::fmt::Write as _;

use arch::sim::SimMedia;
use pm_qemu_proto::tx::POOL_LEN;

use super::*;

const SEED: u64 = 0x7e57;

/// Runs the writer for `txs` transactions and returns its lines and the image a crash
/// right after the last one leaves (only what was flushed and fenced).
fn crashed_writer(txs: u32) -> (Vec<TxLine>, SimMedia) {
    let media = SimMedia::new(POOL_LEN as usize);
    let mut lines = Vec::new();
    let pool = write(&media, SEED, txs, &|| media.counters().fences, &mut |l| {
        lines.push(l);
    })
    .unwrap();
    drop(pool);
    (lines, SimMedia::from_image(media.durable_image()))
}

fn history(lines: &[TxLine], txs: u32) -> Result<TxHistory, TxHistoryError> {
    let mut h = TxHistory::new(SEED, txs);
    for &l in lines {
        h.record(l)?;
    }
    Ok(h)
}

fn verified(media: &SimMedia, txs: u32) -> Model {
    match verify(media, SEED, txs, &mut |_| {}).unwrap() {
        Verified::Pool(m) => m,
        Verified::NoPool(e) => panic!("no pool: {e}"),
    }
}

/// The recovered state `check` takes for a pool holding `m`.
fn state(m: &Model) -> (u64, u64) {
    (m.count, m.digest())
}

#[test]
fn a_crashed_writer_recovers_to_its_last_commit_and_its_lines_replay() {
    let (lines, media) = crashed_writer(150);
    let m = verified(&media, 150);
    let h = history(&lines, 150).unwrap();
    assert_eq!(m.count, h.committed());
    assert!(
        m.count > 100 && m.count < 150,
        "some plans abort: {}",
        m.count
    );
    let v = h.check(Some(state(&m))).unwrap();
    assert!(v.ready && v.in_flight.is_none() && !v.applied, "{v}");
    assert_eq!(Some(m.clone()), Model::replay(SEED, 150, m.count));
    // Serial text replays; a cut last line is ignored.
    let text = lines.iter().fold(String::new(), |mut t, l| {
        let _ = writeln!(t, "{l}");
        t
    });
    let h2 = TxHistory::from_serial(SEED, 150, &text).unwrap();
    assert_eq!(h2.committed(), h.committed());
    let cut = TxHistory::from_serial(SEED, 150, &text[..text.len() - 2]).unwrap();
    assert!(cut.in_flight().is_some());
    // The verifier's exercise and close left the state as it was.
    assert_eq!(verified(&media, 150), m);
}

#[test]
fn the_transaction_in_flight_may_be_applied_or_not_and_nothing_else() {
    let (lines, media) = crashed_writer(60);
    let m = verified(&media, 60);
    let last_commit = lines
        .iter()
        .rposition(|l| matches!(l, TxLine::Commit { .. }))
        .unwrap();
    // Forget the last commit's report: it is in flight, and found applied.
    let h = history(&lines[..last_commit], 60).unwrap();
    let v = h.check(Some(state(&m))).unwrap();
    assert!(v.applied && v.in_flight.is_some_and(|i| i.commits), "{v}");
    // The state before it is allowed too.
    let before = Model::replay(SEED, 60, m.count - 1).unwrap();
    assert!(!h.check(Some(state(&before))).unwrap().applied);
    // With every report kept: one commit fewer is a lost commit, one more a phantom,
    // and a state the model does not have (a partly applied transaction) a bad digest.
    let h = history(&lines, 60).unwrap();
    assert!(matches!(
        h.check(Some(state(&before))),
        Err(TxHistoryError::Lost { .. })
    ));
    assert!(matches!(
        h.check(Some((m.count + 1, 0))),
        Err(TxHistoryError::Phantom { .. })
    ));
    let mut partial = m.clone();
    partial.map.insert(KEYS + 7, 1);
    assert!(matches!(
        h.check(Some(state(&partial))),
        Err(TxHistoryError::Digest { .. })
    ));
    // A ready pool must not vanish.
    assert_eq!(h.check(None), Err(TxHistoryError::PoolLost));
}

#[test]
fn writer_lines_that_break_the_plan_or_the_order_are_reported() {
    let (lines, _) = crashed_writer(40);
    let abort_at = lines
        .iter()
        .position(|l| matches!(l, TxLine::Abort { .. }))
        .expect("seed has an abort in 40");
    let mut forged = lines.clone();
    if let TxLine::Abort { tx, fences } = forged[abort_at] {
        forged[abort_at] = TxLine::Commit {
            tx,
            count: 99,
            fences,
        };
    }
    assert!(matches!(
        history(&forged, 40),
        Err(TxHistoryError::Plan {
            planned_abort: true,
            ..
        })
    ));
    let mut skipped = lines.clone();
    skipped.remove(2);
    assert!(matches!(
        history(&skipped, 40),
        Err(TxHistoryError::Sequence { .. })
    ));
    let mut counted = lines.clone();
    for l in &mut counted {
        if let TxLine::Commit { count, .. } = l {
            *count += 1;
        }
    }
    assert!(matches!(
        history(&counted, 40),
        Err(TxHistoryError::Counter { .. })
    ));
    let h = history(&lines, 40).unwrap();
    let (TxLine::Commit { fences, .. } | TxLine::Abort { fences, .. }) = lines[lines.len() - 1]
    else {
        panic!("last line {:?}", lines[lines.len() - 1]);
    };
    assert!(h.check_crash_fence(fences + 1).is_ok());
    assert!(matches!(
        h.check_crash_fence(fences),
        Err(TxHistoryError::CrashFence { .. })
    ));
}

#[test]
fn plans_cover_every_action_mode_and_the_undo_logged_object() {
    let mut m = Model::default();
    let (mut aborts, mut coalesces, mut lanes) = (0, 0, [0; LANES as usize]);
    let mut seen = [false; 9];
    for n in 0..1500 {
        let p = plan(SEED, n);
        assert_eq!(p, plan(SEED, n));
        aborts += u32::from(p.abort);
        coalesces += u32::from(p.coalesce);
        lanes[p.lane] += 1;
        for &a in &p.actions {
            let op = m.resolve(a);
            let kind = match &op {
                Op::Alloc { slot, bytes } if *slot == BIG_SLOT => {
                    assert_eq!(bytes.len(), BIG_SIZE);
                    0
                }
                Op::Alloc { .. } => 1,
                Op::Free { .. } => 2,
                Op::Update { mode: None, .. } => 3,
                Op::Update {
                    mode: Some(Mode::Delta),
                    ..
                } => 4,
                Op::Update {
                    mode: Some(Mode::Full),
                    ..
                } => 5,
                Op::Update {
                    mode: Some(Mode::CriticalSection),
                    explicit,
                    ..
                } => 6 + usize::from(*explicit),
                Op::Put { .. } | Op::Remove { .. } => 8,
            };
            seen[kind] = true;
            m.apply(&op);
        }
    }
    assert_eq!(seen, [true; 9], "every kind of op occurs");
    assert!(aborts > 50 && coalesces > 20, "{aborts} {coalesces}");
    assert!(lanes.iter().all(|&n| n > 500), "{lanes:?}");
    assert_ne!(plan(SEED, 3), plan(SEED + 1, 3));
}

#[test]
fn a_damaged_slot_byte_is_reported_as_a_state_difference() {
    let (_, media) = crashed_writer(80);
    let m = verified(&media, 80);
    let slot = (0..SLOTS).find(|&i| m.slots[i].is_some()).unwrap();
    let (pool, _, _) = Pool::open(&media, &OpenOptions::default()).unwrap();
    let root = pool.read(pool.root::<TxRoot>().unwrap()).unwrap();
    let at = root.slots[slot] as usize + 3;
    let mut b = [0u8; 1];
    media.read(at, &mut b);
    media.write(at, &[!b[0]]);
    media.persist(at, 1);
    drop(pool);
    let e = verify(&media, SEED, 80, &mut |_| {}).unwrap_err();
    assert!(
        matches!(
            e,
            TxWorkloadError::State(StateDiff::SlotByte { offset: 3, .. })
        ),
        "{e}"
    );
}

#[test]
fn before_ready_only_no_pool_or_the_empty_state_is_allowed() {
    let media = SimMedia::new(POOL_LEN as usize);
    assert!(matches!(
        verify(&media, SEED, 10, &mut |_| {}).unwrap(),
        Verified::NoPool(_)
    ));
    let h = TxHistory::new(SEED, 10);
    assert!(!h.check(None).unwrap().ready);
    assert!(h.check(Some(state(&Model::default()))).is_ok());
    let one = Model::replay(SEED, 10, 1).unwrap();
    assert!(matches!(
        h.check(Some(state(&one))),
        Err(TxHistoryError::EarlyState { count: 1 })
    ));
}

#[test]
fn the_verifier_passes_when_its_exercise_rebuilds_the_map() {
    // Keys inserted and removed again leave tombstones: the state is unchanged, but
    // sooner or later the verifier's own insert rebuilds the bucket array, freeing the
    // old one inside a transaction (the heap check must then wait for coalescing).
    let (_, media) = crashed_writer(120);
    let m = verified(&media, 120);
    for j in 0..48 {
        let (pool, _, _) = Pool::open(&media, &OpenOptions::default()).unwrap();
        let map = pool.read(pool.root::<TxRoot>().unwrap()).unwrap().map;
        pool.transaction(|tx| map.insert(tx, 1000 + j, 1).map(drop))
            .unwrap();
        pool.transaction(|tx| map.remove(tx, &(1000 + j)).map(drop))
            .unwrap();
        pool.close();
        let again = verify(&media, SEED, 120, &mut |_| {}).unwrap_or_else(|e| panic!("{j}: {e}"));
        assert_eq!(again, Verified::Pool(m.clone()), "{j}");
    }
}
