//! The recovery report: counters summed over a range of days.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::Serialize;

use super::{Amounts, AtRisk, StageRisk, Tally};
use crate::state::{Currency, EARLIEST_TIME, LATEST_TIME};

/// The default range: the last 90 days (today included).
pub const DEFAULT_DAYS: i64 = 90;
/// The longest range a report covers (about ten years).
pub const MAX_DAYS: i64 = 3_660;

/// Whole UTC days, `from` included, `to` excluded: episodes count by the
/// day they started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// The first day.
    pub from: NaiveDate,
    /// The day after the last.
    pub to: NaiveDate,
}

/// A `from` or `to` that cannot be used; names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RangeError {
    /// `from` or `to`.
    pub field: &'static str,
    /// Why.
    pub message: String,
}

impl Range {
    /// Parses `from` and `to` (each a date `2026-10-01` or an RFC 3339
    /// time; a time rounds out to whole UTC days: `from` down, `to` up).
    /// Defaults: `to` = the end of today, `from` = 90 days before `to`.
    pub fn parse(from: Option<&str>, to: Option<&str>, now: DateTime<Utc>) -> Result<Self, RangeError> {
        let given_to = to.filter(|s| !s.is_empty());
        let to = match given_to {
            Some(s) => day("to", s, true)?,
            None => now.date_naive() + TimeDelta::days(1),
        };
        let from = match from.filter(|s| !s.is_empty()) {
            Some(s) => day("from", s, false)?,
            None => to - TimeDelta::days(DEFAULT_DAYS),
        };
        if from >= to {
            return Err(match given_to {
                Some(_) => RangeError { field: "to", message: format!("must be after from ({from})") },
                None => RangeError { field: "from", message: format!("must be before today's end ({to})") },
            });
        }
        if (to - from).num_days() > MAX_DAYS {
            return Err(RangeError { field: "from", message: format!("the range may cover at most {MAX_DAYS} days") });
        }
        Ok(Self { from, to })
    }

    /// The first instant of the range.
    pub fn start(&self) -> DateTime<Utc> {
        self.from.and_time(NaiveTime::MIN).and_utc()
    }

    /// The first instant after the range.
    pub fn end(&self) -> DateTime<Utc> {
        self.to.and_time(NaiveTime::MIN).and_utc()
    }

    /// The days of the range, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.from.iter_days().take_while(|d| d < &self.to)
    }
}

fn day(field: &'static str, s: &str, round_up: bool) -> Result<NaiveDate, RangeError> {
    let bad = |m: &str| RangeError { field, message: m.to_owned() };
    let (date, midnight) = match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => (d, true),
        Err(_) => {
            let t = DateTime::parse_from_rfc3339(s).map_err(|_| bad("expected a date (2026-10-01) or an RFC 3339 time"))?.to_utc();
            (t.date_naive(), t.time() == NaiveTime::MIN)
        }
    };
    let unix = date.and_time(NaiveTime::MIN).and_utc().timestamp();
    if !(EARLIEST_TIME..LATEST_TIME).contains(&unix) {
        return Err(bad("must lie between 2000-01-01 and 2100-01-01"));
    }
    Ok(if round_up && !midnight { date + TimeDelta::days(1) } else { date })
}

/// Episodes by how they stand.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct Totals {
    /// Episodes that started in the range.
    pub started: i64,
    /// Of those, ended with something paid.
    pub paid: i64,
    /// Of those, ended with everything voided.
    pub voided: i64,
    /// Of those, still open.
    pub open: i64,
}

/// Paid episodes that ended at one stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct StageFigures {
    /// How many.
    pub count: i64,
    /// What they paid, by currency (minor units).
    #[cfg_attr(feature = "admin", schema(value_type = BTreeMap<String, i64>))]
    pub amount: Amounts,
}

/// Days from the start of an episode to the payment that ended it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct DaysToPay {
    /// Half the paid episodes took at most this long (`null`: none paid).
    pub p50: Option<f64>,
    /// Nine in ten took at most this long.
    pub p90: Option<f64>,
}

/// One calendar month of the range (episodes that started in it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct MonthFigures {
    /// `2026-10`.
    pub month: String,
    /// Episodes started.
    pub started: i64,
    /// Of those, paid.
    pub paid: i64,
    /// What they paid so far, by currency (minor units).
    #[cfg_attr(feature = "admin", schema(value_type = BTreeMap<String, i64>))]
    pub recovered: Amounts,
}

/// The recovery report (`GET {admin.path}/recovery`, `pastdue report`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct Report {
    /// The first instant counted (a UTC midnight).
    pub from: DateTime<Utc>,
    /// The first instant not counted.
    pub to: DateTime<Utc>,
    /// The ladder the figures are limited to, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ladder: Option<String>,
    /// Episodes that started in the range, by how they stand now.
    pub episodes: Totals,
    /// Paid ÷ started (3 decimals; `null` when none started).
    pub recovery_rate: Option<f64>,
    /// Paid toward those episodes' debts so far, by currency (minor units).
    #[cfg_attr(feature = "admin", schema(value_type = BTreeMap<String, i64>))]
    pub recovered: Amounts,
    /// Still owed in those of them that are open, by currency.
    #[cfg_attr(feature = "admin", schema(value_type = BTreeMap<String, i64>))]
    pub outstanding: Amounts,
    /// Paid episodes by the stage they ended at.
    pub paid_at_stage: BTreeMap<String, StageFigures>,
    /// Days from start to payment of the paid episodes (1 decimal).
    pub days_to_pay: DaysToPay,
    /// Accounts owing now, by their current stage (whenever they started).
    pub at_risk: BTreeMap<String, StageRisk>,
    /// When `at_risk` was counted (the last full sweep; `null`: not yet).
    pub at_risk_as_of: Option<DateTime<Utc>>,
    /// Month by month.
    pub by_month: Vec<MonthFigures>,
}

fn add_amount(amounts: &mut Amounts, currency: &str, n: i64) {
    if let Some(c) = Currency::new(currency) {
        let sum = amounts.entry(c).or_default();
        *sum = sum.saturating_add(n);
    }
}

fn month_of(d: NaiveDate) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

impl Report {
    /// Sums `tally` (the range's counters) for `ladder` (or all ladders),
    /// with the latest at-risk snapshot.
    pub fn build(range: Range, tally: &Tally, at_risk: Option<&AtRisk>, ladder: Option<&str>) -> Self {
        let mut report = Report {
            from: range.start(),
            to: range.end(),
            ladder: ladder.map(str::to_owned),
            episodes: Totals::default(),
            recovery_rate: None,
            recovered: Amounts::new(),
            outstanding: Amounts::new(),
            paid_at_stage: BTreeMap::new(),
            days_to_pay: DaysToPay::default(),
            at_risk: at_risk.map(|a| a.by_stage(ladder)).unwrap_or_default(),
            at_risk_as_of: at_risk.and_then(|a| a.as_of),
            by_month: Vec::new(),
        };
        let mut months: BTreeMap<String, MonthFigures> =
            range.days().map(month_of).map(|m| (m.clone(), MonthFigures { month: m, ..MonthFigures::default() })).collect();
        let mut hours: BTreeMap<i64, i64> = BTreeMap::new();
        for (cell, n) in tally.cells() {
            if ladder.is_some_and(|l| l != cell.ladder) || cell.day < range.from || cell.day >= range.to {
                continue;
            }
            let month = months.entry(month_of(cell.day)).or_default();
            let metric = cell.metric.as_str();
            match metric.split_once(':') {
                None if metric == "started" => {
                    report.episodes.started += n;
                    month.started += n;
                }
                None if metric == "paid" => {
                    report.episodes.paid += n;
                    month.paid += n;
                }
                None if metric == "voided" => report.episodes.voided += n,
                Some(("recovered", c)) => {
                    add_amount(&mut report.recovered, c, n);
                    add_amount(&mut month.recovered, c, n);
                }
                Some(("outstanding", c)) => add_amount(&mut report.outstanding, c, n),
                Some(("hours", h)) => *hours.entry(h.parse().unwrap_or(0)).or_default() += n,
                Some(("at", rest)) => match rest.split_once(':') {
                    None => report.paid_at_stage.entry(rest.to_owned()).or_default().count += n,
                    Some((stage, c)) => add_amount(&mut report.paid_at_stage.entry(stage.to_owned()).or_default().amount, c, n),
                },
                _ => {}
            }
        }
        report.episodes.open = report.episodes.started - report.episodes.paid - report.episodes.voided;
        if report.episodes.started > 0 {
            report.recovery_rate = Some((report.episodes.paid as f64 / report.episodes.started as f64 * 1000.0).round() / 1000.0);
        }
        report.days_to_pay = DaysToPay { p50: percentile(&hours, 0.5), p90: percentile(&hours, 0.9) };
        report.recovered.retain(|_, v| *v != 0);
        report.outstanding.retain(|_, v| *v != 0);
        report.paid_at_stage.retain(|_, s| s.count != 0);
        report.by_month = months.into_values().collect();
        report
    }
}

/// The nearest-rank percentile of a histogram of whole hours, in days
/// (an hour's midpoint, 1 decimal).
fn percentile(hours: &BTreeMap<i64, i64>, p: f64) -> Option<f64> {
    let total: i64 = hours.values().filter(|n| **n > 0).sum();
    if total == 0 {
        return None;
    }
    let rank = ((p * total as f64).ceil() as i64).max(1);
    let mut seen = 0;
    for (h, n) in hours.iter().filter(|(_, n)| **n > 0) {
        seen += n;
        if seen >= rank {
            return Some(((*h as f64 + 0.5) / 24.0 * 10.0).round() / 10.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T15:30:00Z").unwrap().to_utc()
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn ranges_are_whole_days_rounded_out() {
        assert_eq!(Range::parse(None, None, now()).unwrap(), Range { from: date("2026-09-04"), to: date("2026-12-03") }, "the last 90 days, today included");
        let r = Range::parse(Some("2026-10-01T13:00:00+02:00"), Some("2026-10-31T00:00:00Z"), now()).unwrap();
        assert_eq!(r, Range { from: date("2026-10-01"), to: date("2026-10-31") }, "a time rounds down (from) or stays at midnight (to)");
        let r = Range::parse(Some("2026-10-01"), Some("2026-10-30T00:00:01Z"), now()).unwrap();
        assert_eq!(r.to, date("2026-10-31"), "to rounds up");
        for (from, to, field) in [(Some("soon"), None, "from"), (None, Some("2026-02-30"), "to"), (Some("2026-10-02"), Some("2026-10-02"), "to"), (Some("2027-01-01"), None, "from"), (Some("1999-12-31"), None, "from"), (Some("2000-01-01"), Some("2030-01-01"), "from")] {
            assert_eq!(Range::parse(from, to, now()).unwrap_err().field, field, "{from:?} {to:?}");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank_in_days() {
        let hours: BTreeMap<i64, i64> = [(72, 1), (360, 1), (480, 2)].into_iter().collect();
        assert_eq!(percentile(&hours, 0.5), Some(15.0));
        assert_eq!(percentile(&hours, 0.9), Some(20.0));
        assert_eq!(percentile(&BTreeMap::new(), 0.5), None);
        let one: BTreeMap<i64, i64> = [(0, 1)].into_iter().collect();
        assert_eq!(percentile(&one, 0.5), Some(0.0), "paid within the hour");
    }
}
