//! The ladder as a pure function of (state, ladder, now).

mod common;

use std::time::Duration;

use chrono::TimeDelta;
use common::*;
use pastdue::state::{BillingState, Change, Override, OverrideMode, SubscriptionStatus as S};
use pastdue::{Action, Ladder, Reason, Standing};
use proptest::prelude::*;

fn state(changes: &[Change]) -> BillingState {
    let mut s = BillingState::default();
    for c in changes {
        s.apply(c);
    }
    s
}

fn stage_at(changes: &[Change], now: chrono::DateTime<chrono::Utc>) -> (String, Action) {
    let st = Standing::evaluate(Some(&state(changes)), &Ladder::standard(), now);
    (st.stage().name().to_owned(), st.action())
}

#[test]
fn every_boundary_of_the_default_ladder() {
    let debt = [unpaid("in_1", 1200, t(0))];
    let table = [
        (-10, "notice", Action::Notice), // clock behind the event: just started
        (0, "notice", Action::Notice),
        (14 * DAY - 1, "notice", Action::Notice),
        (14 * DAY, "warning", Action::Warn),
        (17 * DAY - 1, "warning", Action::Warn),
        (17 * DAY, "suspended", Action::Block),
        (400 * DAY, "suspended", Action::Block),
    ];
    for (at, name, action) in table {
        assert_eq!(stage_at(&debt, t(at)), (name.to_owned(), action), "at +{at}s");
    }
}

#[test]
fn standing_reports_since_next_amount_and_pay_url() {
    let s = state(&[unpaid("in_1", 1200, t(0)), unpaid("in_2", 800, t(DAY))]);
    let st = Standing::evaluate(Some(&s), &Ladder::standard(), t(15 * DAY));
    assert_eq!(st.stage().name(), "warning");
    assert_eq!(st.since(), Some(t(14 * DAY)));
    let (next, at) = st.next().unwrap();
    assert_eq!((next.name(), at), ("suspended", t(17 * DAY)));
    assert_eq!(st.past_due_since(), Some(t(0)));
    let (amount, currency) = st.amount_due().unwrap();
    assert_eq!((amount, currency.as_str()), (2000, "eur"));
    assert_eq!(st.pay_url(), Some("https://invoice.stripe.com/i/in_1"));
    assert_eq!(st.reason(), Reason::Debt);

    let last = Standing::evaluate(Some(&s), &Ladder::standard(), t(20 * DAY));
    assert!(last.next().is_none(), "nothing after the last stage");
}

#[test]
fn unknown_account_follows_the_unknown_policy() {
    let allow = Standing::evaluate(None, &Ladder::standard(), t(0));
    assert_eq!((allow.stage().name(), allow.action(), allow.reason()), ("active", Action::Allow, Reason::Unknown));
    let strict = Ladder::standard().with_unknown_action(Action::Block);
    let block = Standing::evaluate(None, &strict, t(0));
    assert_eq!((block.stage().name(), block.action()), ("unknown", Action::Block));
}

fn set_override(mode: OverrideMode, until: Option<i64>) -> Change {
    Change::SetOverride(Override {
        mode,
        until: until.map(t),
        reason: "call with finance".into(),
        by: "ops".into(),
        at: t(DAY),
    })
}

#[test]
fn overrides_beat_the_ladder_until_they_expire() {
    let debt = unpaid("in_1", 1200, t(0));
    // allow, no expiry: full access despite 30 days of debt
    assert_eq!(stage_at(&[debt.clone(), set_override(OverrideMode::Allow, None)], t(30 * DAY)).1, Action::Allow);
    // allow until day 20: at day 19 allowed, at day 20 back on the ladder (suspended)
    let until20 = [debt.clone(), set_override(OverrideMode::Allow, Some(20 * DAY))];
    assert_eq!(stage_at(&until20, t(20 * DAY - 1)).1, Action::Allow);
    assert_eq!(stage_at(&until20, t(20 * DAY)), ("suspended".into(), Action::Block));
    // block on a paying account, with and without expiry
    assert_eq!(stage_at(&[set_override(OverrideMode::Block, None)], t(2 * DAY)), ("suspended".into(), Action::Block));
    let block2 = [set_override(OverrideMode::Block, Some(2 * DAY))];
    assert_eq!(stage_at(&block2, t(2 * DAY - 1)).1, Action::Block);
    assert_eq!(stage_at(&block2, t(2 * DAY)), ("active".into(), Action::Allow), "expired override is ignored");
    let st = Standing::evaluate(Some(&state(&block2)), &Ladder::standard(), t(DAY + 5));
    assert_eq!(st.reason(), Reason::Override(OverrideMode::Block));
    assert_eq!(st.since(), Some(t(DAY)));
}

#[test]
fn debt_beats_canceled_and_canceled_alone_has_its_own_stage() {
    let canceled = subscription("sub_1", S::Canceled, t(3 * DAY));
    let with_debt = [unpaid("in_1", 1200, t(0)), canceled.clone()];
    assert_eq!(stage_at(&with_debt, t(18 * DAY)), ("suspended".into(), Action::Block));
    let st = Standing::evaluate(Some(&state(&with_debt)), &Ladder::standard(), t(18 * DAY));
    assert_eq!(st.reason(), Reason::Debt);
    assert_eq!(st.amount_due().unwrap().0, 1200);

    let alone = [canceled];
    let st = Standing::evaluate(Some(&state(&alone)), &Ladder::standard(), t(4 * DAY));
    assert_eq!((st.stage().name(), st.action(), st.reason()), ("canceled", Action::Block, Reason::Canceled));
    assert!(st.amount_due().is_none());
    let lenient = Ladder::standard().with_canceled_action(Action::ReadOnly);
    assert_eq!(Standing::evaluate(Some(&state(&alone)), &lenient, t(4 * DAY)).action(), Action::ReadOnly);

    let paused = [subscription("sub_1", S::Paused, t(DAY))];
    assert_eq!(Standing::evaluate(Some(&state(&paused)), &Ladder::standard(), t(2 * DAY)).reason(), Reason::Paused);
    // one live subscription beside an ended one: good standing
    let mixed = [subscription("sub_1", S::Canceled, t(DAY)), subscription("sub_2", S::Active, t(DAY))];
    assert_eq!(stage_at(&mixed, t(2 * DAY)).0, "active");
}

#[test]
fn earliest_unpaid_invoice_starts_the_clock_and_settling_one_moves_it() {
    let both = [unpaid("in_late", 500, t(5 * DAY)), unpaid("in_early", 700, t(0))];
    assert_eq!(stage_at(&both, t(15 * DAY)).0, "warning");
    let mut changes = both.to_vec();
    changes.push(settled("in_early", t(15 * DAY)));
    let s = state(&changes);
    let st = Standing::evaluate(Some(&s), &Ladder::standard(), t(15 * DAY));
    assert_eq!(st.past_due_since(), Some(t(5 * DAY)));
    assert_eq!(st.stage().name(), "notice", "10 days after the remaining invoice failed");
    assert_eq!(st.amount_due().unwrap().0, 500);
    changes.push(settled("in_late", t(15 * DAY)));
    assert_eq!(stage_at(&changes, t(15 * DAY)), ("active".into(), Action::Allow));
}

#[test]
fn debt_status_without_invoice_starts_the_clock_at_the_status_event() {
    for status in [S::PastDue, S::Unpaid, S::Incomplete] {
        let s = [subscription("sub_1", status, t(0))];
        assert_eq!(stage_at(&s, t(14 * DAY)).0, "warning", "{status:?}");
    }
    for status in [S::Active, S::Trialing, S::Other] {
        assert_eq!(stage_at(&[subscription("sub_1", status, t(0))], t(30 * DAY)).0, "active", "{status:?}");
    }
}

#[test]
fn late_and_reordered_facts_do_not_restart_the_clock() {
    // A retry of the first failure, delivered days later with its original
    // event time, keeps the original start.
    let s = [unpaid("in_1", 1200, t(0)), unpaid("in_1", 1200, t(3 * DAY))];
    assert_eq!(Standing::evaluate(Some(&state(&s)), &Ladder::standard(), t(4 * DAY)).past_due_since(), Some(t(0)));
    // A settled invoice is not reopened by an older failure arriving late.
    let s = [settled("in_1", t(2 * DAY)), unpaid("in_1", 1200, t(0))];
    assert_eq!(stage_at(&s, t(30 * DAY)).0, "active");
    // An older status never overwrites a newer one.
    let s = [subscription("sub", S::Active, t(5 * DAY)), subscription("sub", S::PastDue, t(DAY))];
    assert_eq!(stage_at(&s, t(30 * DAY)).0, "active");
}

#[test]
fn a_ladder_in_seconds_works_too() {
    let ladder = Ladder::new([
        ("notice", Duration::ZERO, Action::Notice),
        ("warning", Duration::from_secs(3), Action::Warn),
        ("read-only", Duration::from_secs(6), Action::ReadOnly),
    ])
    .unwrap();
    let s = state(&[unpaid("in_1", 100, t(0))]);
    let names: Vec<_> = [0, 2, 3, 5, 6, 60]
        .map(|at| Standing::evaluate(Some(&s), &ladder, t(at)).stage().name().to_owned())
        .into();
    assert_eq!(names, ["notice", "notice", "warning", "warning", "read-only", "read-only"]);
    let ro = Standing::evaluate(Some(&s), &ladder, t(7));
    assert!(ro.allows(&http::Method::GET) && ro.allows(&http::Method::HEAD));
    assert!(!ro.allows(&http::Method::POST) && !ro.allows(&http::Method::DELETE));
}

fn arb_change() -> impl Strategy<Value = Change> {
    let id = prop::sample::select(vec!["in_a", "in_b", "in_c"]);
    let time = (-5 * DAY..40 * DAY).prop_map(t);
    let status = prop::sample::select(vec![S::Active, S::PastDue, S::Unpaid, S::Canceled, S::Paused, S::PausedPaymentFailed, S::Trialing]);
    prop_oneof![
        (id.clone(), 1..10_000i64, time.clone()).prop_map(|(id, c, at)| unpaid(id, c, at)),
        (id.clone(), 1..10_000i64, time.clone(), time.clone()).prop_map(|(id, c, due, at)| upcoming(id, c, due, at)),
        (id.clone(), time.clone()).prop_map(|(id, at)| settled(id, at)),
        (id, time.clone()).prop_map(|(id, at)| voided(id, at)),
        (prop::sample::select(vec!["sub_1", "sub_2"]), status, time).prop_map(|(id, s, at)| subscription(id, s, at)),
    ]
}

proptest! {
    /// With the state unchanged, standing never moves back down the ladder
    /// as time passes, and each stage starts exactly at its offset.
    #[test]
    fn standing_never_moves_backwards(changes in prop::collection::vec(arb_change(), 0..12), steps in prop::collection::vec(0..3 * DAY, 1..20)) {
        let s = state(&changes);
        let ladder = Ladder::standard();
        let rank = |name: &str| ladder.stages().iter().position(|st| st.name() == name).map_or(-1, |i| i as i64);
        let mut now = t(-6 * DAY);
        let mut last = i64::MIN;
        let mut last_name = String::new();
        for step in steps {
            now += TimeDelta::seconds(step);
            let st = Standing::evaluate(Some(&s), &ladder, now);
            let r = rank(st.stage().name());
            if st.reason() == Reason::Debt {
                prop_assert!(r >= last, "{} after {}", st.stage().name(), last_name);
                let start = st.past_due_since().unwrap();
                if let Some(since) = st.since() {
                    prop_assert_eq!(since, start + TimeDelta::from_std(st.stage().after()).unwrap());
                    prop_assert!(since <= now.max(start));
                }
                if let Some((_, next_at)) = st.next() { prop_assert!(next_at > now); }
                last = r;
            } else {
                prop_assert_eq!(last, i64::MIN, "left the debt ladder without a change");
            }
            last_name = st.stage().name().to_owned();
        }
    }

    /// Any order of the same facts ends in the same state.
    #[test]
    fn order_of_changes_does_not_matter(changes in prop::collection::vec(arb_change(), 0..10), seed in any::<u64>()) {
        let mut shuffled = changes.clone();
        // Fisher-Yates with a small LCG: deterministic per seed.
        let mut x = seed;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (x >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(state(&changes), state(&shuffled));
    }

    /// The recovery counters a store keeps — each write adding the change in
    /// the account's episode records — end the same in any delivery order,
    /// with any fact delivered again, and equal the final state's records.
    #[test]
    fn recovery_counters_do_not_depend_on_delivery(changes in prop::collection::vec(arb_change(), 0..10), seed in any::<u64>(), again in prop::collection::vec(any::<prop::sample::Index>(), 0..4)) {
        let recorder = pastdue::recovery::Recorder::default();
        let deliver = |changes: &[Change]| {
            let (mut s, mut stored, mut tally) = (BillingState::default(), Vec::new(), pastdue::recovery::Tally::default());
            for c in changes {
                if s.apply(c) {
                    let (records, delta) = recorder.next(&stored, &s);
                    tally.merge(&delta);
                    stored = records;
                }
            }
            (tally.since(&pastdue::recovery::Tally::default()), stored)
        };
        let mut shuffled = changes.clone();
        let mut x = seed;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (x >> 33) as usize % (i + 1));
        }
        if !changes.is_empty() {
            for i in &again {
                let c = changes[i.index(changes.len())].clone();
                shuffled.insert(i.index(shuffled.len() + 1), c);
            }
        }
        let (in_order, records) = deliver(&changes);
        let (reordered, _) = deliver(&shuffled);
        prop_assert_eq!(&in_order, &reordered);
        prop_assert_eq!(in_order, pastdue::recovery::Tally::of(&records));
    }
}
