//! Folding a change into a state, the same way in any order.

use chrono::{DateTime, Utc};

use super::*;

impl BillingState {
    /// Folds one change in. Returns whether anything changed.
    ///
    /// Order does not matter: for any set of changes, every order of
    /// application ends in the same state (ignoring `updated_at`, which the
    /// store sets).
    pub fn apply(&mut self, change: &Change) -> bool {
        match change {
            Change::InvoiceUnpaid { id, invoice } => self.owe(id, invoice),
            Change::InvoiceSettled { id, at } => self.settle(id, *at, Settlement::Paid),
            Change::InvoiceVoided { id, at } => self.settle(id, *at, Settlement::Voided),
            Change::UpcomingDue { key, due } => self.expect(key, due),
            Change::Subscription { id, fact } => match self.subscriptions.get_mut(id) {
                None => {
                    self.subscriptions.insert(id.clone(), fact.clone());
                    true
                }
                // Newest event time wins; a tie is broken by the status order
                // (then the plan) so the outcome does not depend on delivery order.
                Some(known) if (fact.at, fact.status, &fact.ladder) > (known.at, known.status, &known.ladder) => {
                    *known = fact.clone();
                    true
                }
                Some(_) => false,
            },
            Change::SetOverride(o) => replace_opt(&mut self.override_, Some(o.clone())),
            Change::ClearOverride => replace_opt(&mut self.override_, None),
            Change::LinkCustomer(c) => self.customers.insert(c.clone()),
            Change::UnlinkCustomer(c) => {
                let had = self.customers.remove(c);
                let before = self.link_conflicts.len();
                self.link_conflicts.retain(|k| &k.customer != c);
                had || before != self.link_conflicts.len()
            }
            Change::LinkConflict(conflict) => self.note_conflict(conflict),
            Change::ContactEmail(e) => replace_opt(&mut self.contact_email, Some(e.clone())),
            Change::Contact { role, email, source } => self.set_contact(role, email, source),
            Change::Language(l) => replace_opt(&mut self.language, Some(l.clone())),
            Change::Timezone { zone, source } => set_sourced(&mut self.timezone, zone, *source),
            Change::BillingPhone { phone, source } => set_sourced(&mut self.billing_phone, phone, *source),
            Change::Waiting(list) => {
                let mut list = list.clone();
                list.sort();
                list.dedup();
                list.truncate(MAX_WAITING);
                replace(&mut self.waiting, list)
            }
            Change::CardExpiring(card) => match &self.card_expiring {
                Some(known) if known.at >= card.at => false,
                _ => replace_opt(&mut self.card_expiring, Some(card.clone())),
            },
            Change::CardUpdated(at) => match &self.card_expiring {
                Some(known) if known.at <= *at => replace_opt(&mut self.card_expiring, None),
                _ => false,
            },
            Change::NoticeSent(n) => self.record_notice(n),
            Change::Promise(p) => self.add_promise(p),
            Change::Ladder(choice) => replace_opt(&mut self.ladder, choice.clone()),
            Change::Note(note) => self.add_note(note),
        }
    }

    /// Keeps invoice `id`'s time in debt (the earliest start and the
    /// earliest settle time win, whatever the order; a span that ends
    /// before it starts is kept too, so every order agrees, and never
    /// counted as an episode).
    /// Invoice `id` is owed: merged with what is known (the earliest start, the newest details), unless it was already settled.
    fn owe(&mut self, id: &String, invoice: &UnpaidInvoice) -> bool {
        if let Some(settled) = self.settled.get(id).copied() {
            // Paid before this report arrived: only its time in
            // debt is worth keeping.
            return self.record_debt(id, invoice.since, settled, Some(owed(invoice)));
        }
        // Owed now: no longer upcoming.
        let was_upcoming = self.upcoming.remove(id).is_some();
        // A URL that may not be rendered is never stored.
        let cleaned;
        let invoice = match &invoice.hosted_url {
            Some(u) if !crate::href::is_safe(u) => {
                cleaned = UnpaidInvoice { hosted_url: None, ..invoice.clone() };
                &cleaned
            }
            _ => invoice,
        };
        was_upcoming | match self.unpaid.get_mut(id) {
            None => {
                self.unpaid.insert(id.clone(), invoice.clone());
                true
            }
            Some(known) => {
                let mut merged = if newer_details(invoice, known) {
                    invoice.clone()
                } else {
                    known.clone()
                };
                merged.since = known.since.min(invoice.since);
                merged.observed = known.observed.max(invoice.observed);
                merged.uncollectible = known.uncollectible || invoice.uncollectible;
                replace(known, merged)
            }
        }
    }

    /// A payment is coming due, unless it is already owed or settled.
    fn expect(&mut self, key: &String, due: &UpcomingDue) -> bool {
        // Settled or already owed: not upcoming, whatever the order.
        if self.settled.contains_key(key) || self.unpaid.contains_key(key) {
            return false;
        }
        let cleaned;
        let due = match &due.hosted_url {
            Some(u) if !crate::href::is_safe(u) => {
                cleaned = UpcomingDue { hosted_url: None, ..due.clone() };
                &cleaned
            }
            _ => due,
        };
        let changed = match self.upcoming.get_mut(key) {
            None => {
                self.upcoming.insert(key.clone(), due.clone());
                true
            }
            // The newest report wins; a tie goes to the later due
            // date, so delivery order never decides.
            Some(known) if (due.observed, due.due, due.amount_due) > (known.observed, known.due, known.amount_due) => {
                *known = due.clone();
                true
            }
            Some(_) => false,
        };
        self.prune_upcoming();
        changed
    }

    /// Stripe metadata claims an admin-linked customer for another account.
    fn note_conflict(&mut self, conflict: &LinkConflict) -> bool {
        let known = self.link_conflicts.iter_mut().find(|k| k.customer == conflict.customer && k.claimed_by == conflict.claimed_by);
        match known {
            Some(k) if k.at >= conflict.at => false,
            Some(k) => {
                k.at = conflict.at;
                true
            }
            None => {
                self.link_conflicts.push(conflict.clone());
                self.link_conflicts.sort_by_key(|k| std::cmp::Reverse(k.at));
                self.link_conflicts.truncate(MAX_LINK_CONFLICTS);
                true
            }
        }
    }

    /// A contact by role; one an admin set is never replaced from Stripe.
    fn set_contact(&mut self, role: &ContactRole, email: &Option<String>, source: &ContactSource) -> bool {
        let current = self.contacts.get(role);
        if *source == ContactSource::Stripe && current.is_some_and(|c| c.source == ContactSource::Admin) {
            return false;
        }
        match email {
            Some(email) => {
                let new = Contact { email: email.clone(), source: *source };
                if current == Some(&new) {
                    return false;
                }
                self.contacts.insert(*role, new);
                true
            }
            None => self.contacts.remove(role).is_some(),
        }
    }

    /// A notice went out: recorded once per episode, stage and channel (and
    /// no longer waits).
    fn record_notice(&mut self, n: &NoticeSent) -> bool {
        let dup = self.notices.iter().any(|k| {
            k.episode == n.episode && k.stage == n.stage && k.channel == n.channel
        });
        if dup {
            return false;
        }
        self.notices.push(n.clone());
        self.notices.sort();
        self.waiting.retain(|w| !(w.episode == n.episode && w.stage == n.stage && w.channel == n.channel));
        true
    }

    /// A promise to pay; the newest are kept.
    fn add_promise(&mut self, p: &Promise) -> bool {
        if self.promises.contains(p) {
            return false;
        }
        self.promises.push(p.clone());
        self.promises.sort();
        let excess = self.promises.len().saturating_sub(MAX_PROMISES);
        self.promises.drain(..excess);
        true
    }

    /// Keeps `note` among the newest [`MAX_NOTES`], oldest first (a note
    /// heard twice is kept once).
    fn add_note(&mut self, note: &Note) -> bool {
        let at = match self.notes.binary_search(note) {
            Ok(_) => return false,
            Err(at) => at,
        };
        self.notes.insert(at, note.clone());
        let excess = self.notes.len().saturating_sub(MAX_NOTES);
        self.notes.drain(..excess);
        excess == 0 || at >= excess
    }

    /// Invoice `id` stopped being owed at `at`, `how`: no longer unpaid or
    /// coming due, its time in debt kept, its tombstone the earliest
    /// settle time, its settlement the greater one heard (paid beats void).
    fn settle(&mut self, id: &String, at: DateTime<Utc>, how: Settlement) -> bool {
        let span = match self.unpaid.get(id) {
            Some(i) => Some((i.since, Some(owed(i)))),
            None => self.closed_debts.get(id).map(|d| (d.since, None)),
        };
        let spanned = span.is_some_and(|(since, owed)| self.record_debt(id, since, at, owed));
        let removed = spanned | self.unpaid.remove(id).is_some() | self.upcoming.remove(id).is_some();
        // The earliest settle time is kept, whatever the order.
        let tomb_changed = match self.settled.get_mut(id) {
            None => {
                self.settled.insert(id.clone(), at);
                true
            }
            Some(known) if at < *known => {
                *known = at;
                true
            }
            Some(_) => false,
        };
        self.prune_tombstones();
        let how_changed = match self.settlements.get(id) {
            Some(known) if *known >= how => false,
            _ => {
                self.settlements.insert(id.clone(), how);
                true
            }
        };
        // Kept while the invoice's tombstone or its time in debt is: the
        // recovery figures tell a voided debt from a paid one by it.
        self.settlements.retain(|id, _| self.settled.contains_key(id) || self.closed_debts.contains_key(id));
        removed || tomb_changed || how_changed
    }

    fn record_debt(&mut self, id: &str, since: DateTime<Utc>, settled: DateTime<Utc>, owed: Option<Owed>) -> bool {
        let new = DebtSpan { since, settled, owed };
        let changed = match self.closed_debts.get_mut(id) {
            None => {
                self.closed_debts.insert(id.to_owned(), new);
                true
            }
            Some(known) => replace(known, DebtSpan { since: known.since.min(since), settled: known.settled.min(settled), owed: known.owed.max(owed) }),
        };
        while self.closed_debts.len() > MAX_TOMBSTONES {
            let oldest = self.closed_debts.iter().min_by_key(|(id, d)| (d.settled, (*id).clone())).map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.closed_debts.remove(&id),
                None => break,
            };
        }
        changed
    }

    fn prune_upcoming(&mut self) {
        while self.upcoming.len() > MAX_UPCOMING {
            let earliest = self.upcoming.iter().min_by_key(|(k, d)| (d.due, (*k).clone())).map(|(k, _)| k.clone());
            match earliest {
                Some(k) => self.upcoming.remove(&k),
                None => break,
            };
        }
    }

    fn prune_tombstones(&mut self) {
        while self.settled.len() > MAX_TOMBSTONES {
            let oldest = self
                .settled
                .iter()
                .min_by_key(|(id, at)| (**at, (*id).clone()))
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.settled.remove(&id),
                None => break,
            };
        }
    }
}

/// What `invoice` says is owed, and when it said so.
fn owed(invoice: &UnpaidInvoice) -> Owed {
    Owed { observed: invoice.observed, amount: invoice.amount_due, currency: invoice.currency }
}

fn newer_details(new: &UnpaidInvoice, known: &UnpaidInvoice) -> bool {
    // Compare the whole record after the time so ties are order-independent.
    (new.observed, new.amount_due, new.currency, &new.hosted_url, &new.number)
        > (known.observed, known.amount_due, known.currency, &known.hosted_url, &known.number)
}

fn replace<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        return false;
    }
    *slot = value;
    true
}

fn replace_opt<T: PartialEq>(slot: &mut Option<T>, value: Option<T>) -> bool {
    replace(slot, value)
}

/// Sets or removes a setting; a Stripe value never replaces or removes one
/// an admin set.
fn set_sourced(current: &mut Option<Sourced>, value: &Option<String>, source: ContactSource) -> bool {
    if source == ContactSource::Stripe && current.as_ref().is_some_and(|c| c.source == ContactSource::Admin) {
        return false;
    }
    replace_opt(current, value.as_ref().map(|v| Sourced { value: v.clone(), source }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + day * 86_400, 0).unwrap()
    }

    fn unpaid(id: &str, since: DateTime<Utc>) -> Change {
        let invoice = UnpaidInvoice {
            amount_due: 4_900,
            currency: Currency::new("eur").unwrap(),
            hosted_url: None,
            number: None,
            since,
            observed: since,
            uncollectible: false,
            next_attempt: None,
        };
        Change::InvoiceUnpaid { id: id.into(), invoice }
    }

    fn folded(changes: &[&Change]) -> BillingState {
        let mut s = BillingState::default();
        for c in changes {
            s.apply(c);
        }
        s
    }

    #[test]
    fn a_settled_invoice_is_never_reopened_by_an_older_failure() {
        let (failed, paid) = (unpaid("in_1", at(0)), Change::InvoiceSettled { id: "in_1".into(), at: at(3) });
        for order in [[&failed, &paid], [&paid, &failed]] {
            let s = folded(&order);
            assert!(s.unpaid().is_empty() && s.settled().contains_key("in_1"), "{order:?}");
            assert_eq!(s.past_due_since(), None);
        }
    }

    #[test]
    fn the_newest_subscription_status_wins_in_any_order() {
        let past_due = Change::Subscription { id: "sub_1".into(), fact: SubscriptionFact::new(SubscriptionStatus::PastDue, at(1)) };
        let active = Change::Subscription { id: "sub_1".into(), fact: SubscriptionFact::new(SubscriptionStatus::Active, at(2)) };
        for order in [[&past_due, &active], [&active, &past_due]] {
            assert_eq!(folded(&order).subscriptions()["sub_1"].status, SubscriptionStatus::Active);
        }
    }

    #[test]
    fn a_repeated_change_changes_nothing() {
        let mut s = BillingState::default();
        let failed = unpaid("in_1", at(0));
        assert!(s.apply(&failed));
        assert!(!s.apply(&failed), "the same fact twice is one fact");
        assert_eq!(s.past_due_since(), Some(at(0)));
        assert_eq!(s.amount_due().map(|(a, _)| a), Some(4_900));
    }

    #[test]
    fn a_payment_beats_a_void_and_the_amount_is_kept_in_any_order() {
        let (failed, paid, void) = (
            unpaid("in_1", at(0)),
            Change::InvoiceSettled { id: "in_1".into(), at: at(4) },
            Change::InvoiceVoided { id: "in_1".into(), at: at(3) },
        );
        let orders = [[&failed, &paid, &void], [&void, &paid, &failed], [&paid, &failed, &void], [&void, &failed, &paid]];
        let states: Vec<BillingState> = orders.iter().map(|o| folded(o)).collect();
        for s in &states {
            assert_eq!(s.settlement("in_1"), Some(Settlement::Paid), "a payment is a payment");
            let span = s.closed_debts()["in_1"];
            assert_eq!((span.since, span.settled), (at(0), at(3)), "owed from the failure to the earliest settle");
            assert_eq!(span.owed.map(|o| o.amount), Some(4_900), "what was owed, whatever came first");
            assert_eq!(s, &states[0]);
        }
        let only_void = folded(&[&failed, &void]);
        assert_eq!(only_void.settlement("in_1"), Some(Settlement::Voided));
        assert_eq!(only_void.past_due_since(), None, "a void leaves nothing owed");
    }

    #[test]
    fn the_oldest_unpaid_invoice_starts_the_clock() {
        let s = folded(&[&unpaid("in_2", at(5)), &unpaid("in_1", at(2))]);
        assert_eq!(s.past_due_since(), Some(at(2)));
        assert_eq!(s.oldest_unpaid().map(|(id, _)| id), Some("in_1"));
        assert_eq!(s.amount_due().map(|(a, _)| a), Some(9_800));
    }
}
