//! Checks every notification store must pass, run by each backend's tests against a
//! store of its own (`sqlite.rs`, `postgres.rs`).

use std::time::Duration;

use super::{
    Delivery, NewEvent, NotificationStore, StoredEvent, SubscriptionRow, SubscriptionStatus,
};
use crate::{AuditStore, sample, sample_event};

/// A new subscription `id` of `supplier`, as the gateway makes one.
pub(crate) fn subscription(id: &str, supplier: &str) -> SubscriptionRow {
    SubscriptionRow {
        id: id.into(),
        supplier: supplier.into(),
        resource: format!(r#"{{"resourceType":"Subscription","id":"{id}"}}"#),
        topic: "https://example.org/topics/readings".into(),
        status: SubscriptionStatus::Requested,
        created: "2026-12-01T09:00:00.000Z".into(),
        events_since_start: 0,
        cursor: 0,
        failures: 0,
        next_attempt_ms: 0,
        last_sent_ms: 0,
        last_error: None,
    }
}

/// Events after `seq`, waiting up to five seconds for at least `count`: an audit row's
/// events reach the SQLite outbox with the indexer's next transaction, and PostgreSQL
/// answers an event once every transaction running when it committed has ended (another
/// test's, sharing the server, too).
pub(crate) async fn wait_for_events(
    n: &dyn NotificationStore,
    after: i64,
    count: usize,
) -> Vec<StoredEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let events = n.events_after(after, 10_000).await.unwrap();
        if events.len() >= count || tokio::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last seq, once `count` events are answered.
pub(crate) async fn last_seq(n: &dyn NotificationStore, count: usize) -> i64 {
    wait_for_events(n, 0, count).await;
    n.last_seq().await.unwrap()
}

/// The events only, in the order answered.
pub(crate) fn plain(events: &[StoredEvent]) -> Vec<NewEvent> {
    events.iter().map(|e| e.event.clone()).collect()
}

/// Rows appended with events, one after the other and then together: every event is in
/// the outbox once, in commit order (each row's events in its order, rows in the order
/// they were answered), and `events_after` pages through it from any `seq`.
pub(crate) async fn events_committed_with_rows_come_in_commit_order(
    store: std::sync::Arc<dyn AuditStore>,
) {
    let n = store.notifications().expect("the store keeps an outbox");
    assert_eq!(n.last_seq().await.unwrap(), 0, "a new outbox is empty");
    let at = "2026-12-01T10:00:00.000Z";
    let mut expected = Vec::new();
    for i in 0..3u32 {
        let events: Vec<NewEvent> = (0..=i)
            .map(|k| sample_event(i * 10 + k, "9000000009"))
            .collect();
        store
            .append_with_events(sample(i, "9000000009", "demo-consult", at), events.clone())
            .await
            .unwrap();
        expected.extend(events);
    }
    // A row without events, between.
    store
        .append_with_events(sample(3, "9000000009", "demo-consult", at), Vec::new())
        .await
        .unwrap();
    // Rows arriving together share a commit: each row's events stay together, in order.
    let mut tasks = Vec::new();
    for i in 4..12u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let events = vec![
                sample_event(i * 10, "9690937278"),
                sample_event(i * 10 + 1, "9690937278"),
            ];
            store
                .append_with_events(sample(i, "9690937278", "demo-consult", at), events)
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = wait_for_events(n.as_ref(), 0, expected.len() + 16).await;
    assert_eq!(all.len(), expected.len() + 16, "every event, once");
    assert_eq!(plain(&all[..expected.len()]), expected, "in commit order");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "in seq order");
    for pair in all[expected.len()..].chunks(2) {
        let first: u32 = pair[0].event.id[24..].parse().unwrap();
        assert_eq!(first % 10, 0, "{pair:?}");
        assert_eq!(
            pair[1].event.id,
            sample_event(first + 1, "").id,
            "a row's events stay together"
        );
    }
    // Paging from any seq, at most `limit`.
    let from = all[2].seq;
    let page = n.events_after(from, 3).await.unwrap();
    assert_eq!(page, all[3..6].to_vec());
    assert_eq!(
        last_seq(n.as_ref(), all.len()).await,
        all.last().unwrap().seq
    );
    assert!(
        n.events_after(all.last().unwrap().seq, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Every row committed as given.
    let rows = store
        .query(crate::AuditQuery {
            limit: 100,
            ..crate::AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r.status == 200));
}

/// `record_changes` moves a source's cursor and commits its events only from the cursor
/// the caller read: a second writer holding a stale cursor writes nothing. `a` and `b`
/// may be one store or two replicas' stores on one database.
pub(crate) async fn record_changes_is_compare_and_set(
    a: &dyn NotificationStore,
    b: &dyn NotificationStore,
) {
    let source = "tpp:A12345";
    let event = |n: u32| {
        let mut e = sample_event(n, "9000000009");
        e.source = "gp-system".into();
        e.supplier = None;
        e
    };
    assert_eq!(a.change_cursor(source).await.unwrap(), None);
    assert!(
        a.record_changes(source, None, "c1", vec![event(1), event(2)])
            .await
            .unwrap()
    );
    assert_eq!(
        b.change_cursor(source).await.unwrap().as_deref(),
        Some("c1")
    );
    // Both thought there was no cursor yet, or read an older one: refused, nothing written.
    assert!(
        !b.record_changes(source, None, "c1-again", vec![event(3)])
            .await
            .unwrap()
    );
    assert!(
        !b.record_changes(source, Some("c0"), "c2", vec![event(3)])
            .await
            .unwrap()
    );
    assert_eq!(
        a.change_cursor(source).await.unwrap().as_deref(),
        Some("c1")
    );
    assert_eq!(
        plain(&wait_for_events(a, 0, 2).await),
        vec![event(1), event(2)]
    );
    // Two replicas that read the same cursor race: one records, once.
    let (x, y) = tokio::join!(
        a.record_changes(source, Some("c1"), "c2", vec![event(4)]),
        b.record_changes(source, Some("c1"), "c2", vec![event(4)]),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(
        x ^ y,
        "exactly one of two racing writers moves the cursor: {x} {y}"
    );
    assert_eq!(
        a.change_cursor(source).await.unwrap().as_deref(),
        Some("c2")
    );
    assert_eq!(
        plain(&wait_for_events(b, 0, 3).await),
        vec![event(1), event(2), event(4)]
    );
    // No events: the cursor still moves. Another source's cursor is its own.
    assert!(
        b.record_changes(source, Some("c2"), "c3", Vec::new())
            .await
            .unwrap()
    );
    assert_eq!(
        a.change_cursor(source).await.unwrap().as_deref(),
        Some("c3")
    );
    assert_eq!(a.change_cursor("emis:B81001").await.unwrap(), None);
    assert_eq!(wait_for_events(a, 0, 3).await.len(), 3);
}

const MINUTE: i64 = 60_000;

/// Leases: two owners claiming at once get disjoint sets; a holder renews its own; an
/// expired lease is taken over, and its old holder can then move nothing on; `off`
/// subscriptions and those not yet due are not claimed; a released lease is free.
pub(crate) async fn claims_are_exclusive_renewed_and_handed_over(
    a: &dyn NotificationStore,
    b: &dyn NotificationStore,
) {
    let t0: i64 = 1_800_000_000_000;
    for i in 0..6 {
        let mut s = subscription(&format!("sub-{i}"), "demo-consult");
        s.next_attempt_ms = t0;
        a.insert_subscription(&s).await.unwrap();
    }
    let mut off = subscription("sub-off", "demo-consult");
    off.status = SubscriptionStatus::Off;
    a.insert_subscription(&off).await.unwrap();
    let mut later = subscription("sub-later", "demo-consult");
    later.next_attempt_ms = t0 + 5 * MINUTE;
    a.insert_subscription(&later).await.unwrap();

    let ids = |rows: &[SubscriptionRow]| -> Vec<String> {
        let mut ids: Vec<String> = rows.iter().map(|s| s.id.clone()).collect();
        ids.sort();
        ids
    };
    // Racing, limited to 3 each: disjoint, and together every due one.
    let (one, two) = tokio::join!(
        a.claim("replica-1", t0, MINUTE, 3),
        b.claim("replica-2", t0, MINUTE, 3)
    );
    let (one, two) = (ids(&one.unwrap()), ids(&two.unwrap()));
    assert!(one.iter().all(|id| !two.contains(id)), "{one:?} {two:?}");
    let mut both: Vec<String> = one.iter().chain(&two).cloned().collect();
    both.sort();
    assert_eq!(
        both,
        (0..6).map(|i| format!("sub-{i}")).collect::<Vec<_>>(),
        "neither off nor not yet due"
    );
    assert_eq!((one.len(), two.len()), (3, 3));
    // Nothing left for a third owner while the leases hold.
    assert!(
        a.claim("replica-3", t0 + 1, MINUTE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Replica 1 renews (its own are answered again, before any free one is taken),
    // replica 2 does not.
    for i in 0..2 {
        // Due for longer than replica 1's own.
        a.insert_subscription(&subscription(&format!("sub-new-{i}"), "demo-consult"))
            .await
            .unwrap();
    }
    let renewed = ids(&a
        .claim("replica-1", t0 + MINUTE / 2, MINUTE, 3)
        .await
        .unwrap());
    assert_eq!(
        renewed, one,
        "its own leases, renewed first; none of the others'"
    );
    for i in 0..2 {
        let id = format!("sub-new-{i}");
        assert!(
            a.set_status(&id, SubscriptionStatus::Off, None)
                .await
                .unwrap()
        );
    }
    // Replica 2's leases expire at t0 + 1 min and are taken over; replica 1's, renewed
    // until t0 + 1.5 min, are not.
    let taken = ids(&b.claim("replica-3", t0 + MINUTE, MINUTE, 10).await.unwrap());
    assert_eq!(taken, two, "expired leases go to the next claimer");
    let stale = &two[0];
    assert!(
        !a.advance(stale, "replica-2", 5).await.unwrap(),
        "no longer its lease"
    );
    assert_eq!(a.enqueue(stale, "replica-2", 5, "n-x").await.unwrap(), None);
    assert!(!a.sent(stale, "replica-2", t0).await.unwrap());
    assert!(
        !a.failed(stale, "replica-2", 1, t0, SubscriptionStatus::Error, "x")
            .await
            .unwrap()
    );
    assert!(
        !a.finish(stale, "replica-2", 1, Delivery::Sent, t0)
            .await
            .unwrap()
    );
    let row = a.subscription(stale).await.unwrap().unwrap();
    assert_eq!(
        (
            row.cursor,
            row.events_since_start,
            row.failures,
            row.last_sent_ms
        ),
        (0, 0, 0, 0),
        "nothing moved by an owner that lost its lease"
    );
    assert!(
        a.advance(stale, "replica-3", 5).await.unwrap(),
        "its new holder"
    );
    // Released: free for anyone at once.
    a.release(stale, "replica-2").await.unwrap(); // not its lease: nothing happens
    assert!(
        a.claim("replica-1", t0 + MINUTE, MINUTE, 10)
            .await
            .unwrap()
            .iter()
            .all(|s| s.id != *stale)
    );
    a.release(stale, "replica-3").await.unwrap();
    let got = ids(&a.claim("replica-1", t0 + MINUTE, MINUTE, 10).await.unwrap());
    assert!(got.contains(stale), "{got:?}");
    // Due later: claimed once due.
    assert!(
        !ids(&b
            .claim("replica-2", t0 + 5 * MINUTE - 1, MINUTE, 10)
            .await
            .unwrap())
        .contains(&"sub-later".to_owned())
    );
    assert!(
        ids(&b
            .claim("replica-2", t0 + 5 * MINUTE, MINUTE, 10)
            .await
            .unwrap())
        .contains(&"sub-later".to_owned())
    );
}

/// One subscription's delivery, by its lease holder: numbering from 1 with no gap and the
/// cursor moving with it, refused to anyone else; `finish` (sent, withheld), `failed`,
/// `sent`; the `$events` range with each notification's event; status changes; deleting
/// it takes its notifications.
pub(crate) async fn delivery_state_moves_only_for_the_lease_holder(n: &dyn NotificationStore) {
    let now: i64 = 1_800_000_000_000;
    let source = "emis:B81001";
    let events: Vec<NewEvent> = (100..106).map(|i| sample_event(i, "9000000009")).collect();
    assert!(
        n.record_changes(source, None, "c", events.clone())
            .await
            .unwrap()
    );
    let stored = wait_for_events(n, 0, events.len()).await;
    assert_eq!(plain(&stored), events);
    let seq = |i: usize| stored[i].seq;

    let mut first = subscription("sub-a", "demo-consult");
    first.created = "2026-12-01T09:00:00.000Z".into();
    n.insert_subscription(&first).await.unwrap();
    n.insert_subscription(&subscription("sub-b", "demo-monitoring"))
        .await
        .unwrap();
    n.insert_subscription(&subscription("sub-c", "demo-consult"))
        .await
        .unwrap();
    assert_eq!(n.subscription("sub-a").await.unwrap(), Some(first.clone()));
    assert_eq!(n.subscription("nope").await.unwrap(), None);
    let ids = |rows: Vec<SubscriptionRow>| rows.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(n.subscriptions(Some("demo-consult")).await.unwrap()),
        ["sub-a", "sub-c"],
        "the supplier's own, oldest first"
    );
    assert_eq!(
        ids(n.subscriptions(None).await.unwrap()),
        ["sub-a", "sub-b", "sub-c"]
    );

    let claimed = n.claim("r1", now, MINUTE, 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(n.undelivered("sub-a").await.unwrap(), None);
    // Numbered 1, 2, 3, the cursor following; events not for it are passed over.
    let one = n
        .enqueue("sub-a", "r1", seq(0), "note-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (one.number, one.event_seq, one.id.as_str()),
        (1, seq(0), "note-1")
    );
    assert_eq!((one.outcome, one.attempts), (None, 0));
    assert!(n.advance("sub-a", "r1", seq(1)).await.unwrap());
    assert_eq!(
        n.subscription("sub-a").await.unwrap().unwrap().cursor,
        seq(1)
    );
    let two = n
        .enqueue("sub-a", "r1", seq(2), "note-2")
        .await
        .unwrap()
        .unwrap();
    let three = n
        .enqueue("sub-a", "r1", seq(4), "note-3")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((two.number, three.number), (2, 3));
    // Not the holder: nothing numbered, nothing moved.
    assert_eq!(
        n.enqueue("sub-a", "r2", seq(5), "note-x").await.unwrap(),
        None
    );
    assert!(!n.advance("sub-a", "r2", seq(5)).await.unwrap());
    // A stale reader asking again for an event at or before the cursor numbers nothing.
    for again in [seq(2), seq(4)] {
        assert_eq!(
            n.enqueue("sub-a", "r1", again, "note-again").await.unwrap(),
            None
        );
    }
    let row = n.subscription("sub-a").await.unwrap().unwrap();
    assert_eq!((row.events_since_start, row.cursor), (3, seq(4)));
    assert_eq!(n.undelivered("sub-a").await.unwrap(), Some(one.clone()));

    // Delivered: the attempt counts, the subscription is active.
    assert!(
        !n.finish("sub-a", "r2", 1, Delivery::Sent, now)
            .await
            .unwrap()
    );
    assert_eq!(n.undelivered("sub-a").await.unwrap(), Some(one.clone()));
    assert!(
        n.finish("sub-a", "r1", 1, Delivery::Sent, now + 1)
            .await
            .unwrap()
    );
    let row = n.subscription("sub-a").await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.last_sent_ms, row.failures, row.last_error),
        (SubscriptionStatus::Active, now + 1, 0, None)
    );
    assert_eq!(
        n.undelivered("sub-a").await.unwrap().map(|x| x.number),
        Some(2)
    );

    // A failed attempt at number 2.
    assert!(
        !n.failed(
            "sub-a",
            "r2",
            1,
            now + 9,
            SubscriptionStatus::Error,
            "HTTP 500"
        )
        .await
        .unwrap()
    );
    assert!(
        n.failed(
            "sub-a",
            "r1",
            2,
            now + 60_000,
            SubscriptionStatus::Error,
            "HTTP 500"
        )
        .await
        .unwrap()
    );
    let row = n.subscription("sub-a").await.unwrap().unwrap();
    assert_eq!(
        (
            row.status,
            row.failures,
            row.next_attempt_ms,
            row.last_error.as_deref()
        ),
        (SubscriptionStatus::Error, 2, now + 60_000, Some("HTTP 500"))
    );
    assert_eq!(
        n.undelivered("sub-a")
            .await
            .unwrap()
            .map(|x| (x.number, x.attempts)),
        Some((2, 1))
    );
    // Withheld: ended, no attempt, and the subscription's state as it was.
    assert!(
        n.finish("sub-a", "r1", 2, Delivery::Withheld, now + 2)
            .await
            .unwrap()
    );
    let row = n.subscription("sub-a").await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.last_sent_ms, row.failures),
        (SubscriptionStatus::Error, now + 1, 2)
    );
    // A heartbeat delivered: the subscription alone, back to active.
    assert!(!n.sent("sub-a", "r2", now + 3).await.unwrap());
    assert!(n.sent("sub-a", "r1", now + 3).await.unwrap());
    let row = n.subscription("sub-a").await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.last_sent_ms, row.failures, row.last_error),
        (SubscriptionStatus::Active, now + 3, 0, None)
    );
    assert_eq!(
        n.undelivered("sub-a").await.unwrap().map(|x| x.number),
        Some(3)
    );

    // `$events`: the range, each with its event, withheld ones included.
    let all = n.notifications("sub-a", 1, 3, 10).await.unwrap();
    let summary: Vec<(i64, Option<Delivery>, i32, i64, String)> = all
        .iter()
        .map(|(note, event)| {
            assert_eq!(note.event_seq, event.seq);
            (
                note.number,
                note.outcome,
                note.attempts,
                event.seq,
                note.id.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, Some(Delivery::Sent), 1, seq(0), "note-1".into()),
            (2, Some(Delivery::Withheld), 1, seq(2), "note-2".into()),
            (3, None, 0, seq(4), "note-3".into()),
        ]
    );
    assert_eq!(all[2].1, stored[4]);
    assert_eq!(
        n.notifications("sub-a", 2, 3, 10)
            .await
            .unwrap()
            .iter()
            .map(|(x, _)| x.number)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(n.notifications("sub-a", 1, 3, 1).await.unwrap().len(), 1);
    assert!(n.notifications("sub-b", 1, 3, 10).await.unwrap().is_empty());

    // Status by the supplier (no lease needed); `off` is never claimed.
    assert!(
        n.set_status("sub-c", SubscriptionStatus::Off, Some("ended"))
            .await
            .unwrap()
    );
    let row = n.subscription("sub-c").await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.last_error.as_deref()),
        (SubscriptionStatus::Off, Some("ended"))
    );
    assert!(
        !n.set_status("nope", SubscriptionStatus::Off, None)
            .await
            .unwrap()
    );
    n.release("sub-c", "r1").await.unwrap();
    assert!(
        n.claim("r2", now + 2 * MINUTE, MINUTE, 10)
            .await
            .unwrap()
            .iter()
            .all(|s| s.id != "sub-c")
    );

    // Deleted with its notifications; the others' are untouched.
    let _ = n
        .enqueue("sub-b", "r2", seq(0), "note-b1")
        .await
        .unwrap()
        .unwrap();
    assert!(n.delete_subscription("sub-a").await.unwrap());
    assert!(!n.delete_subscription("sub-a").await.unwrap());
    assert_eq!(n.subscription("sub-a").await.unwrap(), None);
    assert!(n.notifications("sub-a", 1, 3, 10).await.unwrap().is_empty());
    assert_eq!(n.undelivered("sub-a").await.unwrap(), None);
    assert_eq!(n.notifications("sub-b", 1, 3, 10).await.unwrap().len(), 1);
    // A new subscription of the same id starts again from 1 (nothing of the old is left).
    n.insert_subscription(&subscription("sub-a", "demo-consult"))
        .await
        .unwrap();
    assert_eq!(
        n.claim("r1", now + 3 * MINUTE, MINUTE, 10)
            .await
            .unwrap()
            .iter()
            .filter(|s| s.id == "sub-a")
            .count(),
        1
    );
    let again = n
        .enqueue("sub-a", "r1", seq(5), "note-a1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.number, 1);
    // The outbox is untouched by all of it.
    assert_eq!(wait_for_events(n, 0, stored.len()).await, stored);
}
