//! Counters by day: what a store keeps so a report is a sum, not a scan.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::{EpisodeRecord, Outcome};

/// One counter: a metric of the episodes that started on `day` on `ladder`.
///
/// Metrics: `started`, `paid`, `voided`, `recovered:<currency>`,
/// `outstanding:<currency>`, `at:<stage>` (paid episodes that ended at the
/// stage), `at:<stage>:<currency>` (what they paid), `hours:<n>` (paid
/// episodes that took `n` whole hours).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    /// The UTC day the episodes started.
    pub day: NaiveDate,
    /// Their ladder.
    pub ladder: String,
    /// What is counted.
    pub metric: String,
}

impl Cell {
    /// The cell's field within its day, `<ladder>|<metric>` (ladder names
    /// never contain `|`).
    pub fn field(&self) -> String {
        format!("{}|{}", self.ladder, self.metric)
    }

    /// Parses [`Cell::field`] for `day`.
    pub fn parse(day: NaiveDate, field: &str) -> Option<Self> {
        let (ladder, metric) = field.split_once('|')?;
        Some(Self { day, ladder: ladder.to_owned(), metric: metric.to_owned() })
    }
}

/// Counters by [`Cell`]: the figures of some days, or what a write adds to
/// them (then values may be negative).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    cells: BTreeMap<Cell, i64>,
}

impl Tally {
    /// Adds `n` to a counter.
    pub fn add(&mut self, cell: Cell, n: i64) {
        let v = self.cells.entry(cell).or_default();
        *v = v.saturating_add(n);
    }

    /// The counters, in (day, ladder, metric) order.
    pub fn cells(&self) -> impl Iterator<Item = (&Cell, i64)> {
        self.cells.iter().map(|(c, v)| (c, *v))
    }

    /// Whether there is no counter.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &Tally) {
        for (c, v) in other.cells() {
            self.add(c.clone(), v);
        }
    }

    /// Only the counters of days in `from..to`.
    pub fn days(&self, from: NaiveDate, to: NaiveDate) -> Tally {
        Tally { cells: self.cells.iter().filter(|(c, _)| from <= c.day && c.day < to).map(|(c, v)| (c.clone(), *v)).collect() }
    }

    /// What the counters of every record in `records` add up to.
    pub fn of(records: &[EpisodeRecord]) -> Tally {
        let mut t = Tally::default();
        for r in records {
            t.add_record(r, 1);
        }
        t.drop_zeros();
        t
    }

    /// What changed since `earlier`: each counter minus its earlier value
    /// (counters that did not change are left out).
    pub fn since(&self, earlier: &Tally) -> Tally {
        let mut t = self.clone();
        for (c, v) in earlier.cells() {
            t.add(c.clone(), -v);
        }
        t.drop_zeros();
        t
    }

    /// One counter's value (0 when absent).
    pub fn get(&self, ladder: &str, metric: &str) -> i64 {
        self.cells.iter().filter(|(c, _)| c.ladder == ladder && c.metric == metric).map(|(_, v)| *v).sum()
    }

    pub(crate) fn drop_zeros(&mut self) {
        self.cells.retain(|_, v| *v != 0);
    }

    /// Counts `record` `sign` times (`1` to add it, `-1` to take it back).
    pub(super) fn add_record(&mut self, r: &EpisodeRecord, sign: i64) {
        let day = r.started_at.date_naive();
        let mut add = |metric: String, n: i64| self.add(Cell { day, ladder: r.ladder.clone(), metric }, sign * n);
        add("started".into(), 1);
        for (c, a) in &r.amount_paid {
            add(format!("recovered:{c}"), *a);
        }
        for (c, a) in &r.outstanding {
            add(format!("outstanding:{c}"), *a);
        }
        match (r.outcome, r.ended_at, &r.stage_at_end) {
            (Some(Outcome::Paid), Some(end), Some(stage)) => {
                add("paid".into(), 1);
                add(format!("at:{stage}"), 1);
                for (c, a) in &r.amount_paid {
                    add(format!("at:{stage}:{c}"), *a);
                }
                add(format!("hours:{}", (end - r.started_at).num_hours()), 1);
            }
            (Some(Outcome::Paid), ..) => add("paid".into(), 1),
            (Some(Outcome::Voided), ..) => add("voided".into(), 1),
            (None, ..) => {}
        }
    }
}

impl FromIterator<(Cell, i64)> for Tally {
    fn from_iter<T: IntoIterator<Item = (Cell, i64)>>(iter: T) -> Self {
        let mut t = Tally::default();
        for (c, v) in iter {
            t.add(c, v);
        }
        t
    }
}
