//! Send windows: the hours and days a message to a person may go out, in
//! that person's time zone (`notify.send_hours`, `notify.send_days`,
//! `notify.timezone`, an account's own `timezone`). Pure: every answer is a
//! function of the window, an instant and a zone.
//!
//! A window is a run of *openings*: on each listed day, from the start time
//! to the end time in local time. An opening that crosses midnight
//! (`"20:00-08:00"`) belongs to the day it opens on, so with `send_days =
//! ["fri"]` Saturday 02:00 is still open. Around daylight-saving changes a
//! local time that does not exist (the hour skipped in spring) means the
//! first minute after the gap; one that exists twice (the hour repeated in
//! autumn) means the first of the two.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// When messages may go out. [`SendWindow::default`] is any time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendWindow {
    /// Local start and end; `None` = the whole day. An end at or before the
    /// start (`24:00` is `00:00`) is on the next day.
    hours: Option<(NaiveTime, NaiveTime)>,
    /// By `Weekday::num_days_from_monday`.
    days: [bool; 7],
}

impl Default for SendWindow {
    fn default() -> Self {
        Self { hours: None, days: [true; 7] }
    }
}

const DAY_NAMES: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// A weekday by its English name or first three letters (`mon`, `Monday`).
fn weekday(name: &str) -> Option<usize> {
    let name = name.trim().to_ascii_lowercase();
    DAY_NAMES.iter().position(|d| name.len() >= 3 && d.starts_with(&name) && (name.len() == 3 || name == *d))
}

/// `HH:MM` (`24:00` allowed as an end).
fn clock_time(raw: &str, end: bool) -> Option<NaiveTime> {
    let (h, m) = raw.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if end && h == 24 && m == 0 {
        return Some(NaiveTime::MIN);
    }
    NaiveTime::from_hms_opt(h, m, 0)
}

impl SendWindow {
    /// The window `send_hours` (`"09:00-18:00"`, `""` = any time) on
    /// `send_days` (`["mon-fri", "sat"]`, empty = every day); the error
    /// names the key at fault.
    pub fn parse(send_hours: &str, send_days: &[String]) -> Result<Self, (&'static str, String)> {
        let hours = match send_hours.trim() {
            "" => None,
            raw => {
                let bad = || ("notify.send_hours", format!("{raw:?} is not a window like \"09:00-18:00\" (24-hour HH:MM-HH:MM, or \"\" for any time)"));
                let (start, end) = raw.split_once('-').ok_or_else(bad)?;
                let (start, end) = (clock_time(start, false).ok_or_else(bad)?, clock_time(end, true).ok_or_else(bad)?);
                if start == end {
                    return Err(("notify.send_hours", format!("{raw:?} opens and closes at the same time; write \"\" for any time")));
                }
                Some((start, end))
            }
        };
        let mut days = [send_days.is_empty(); 7];
        for raw in send_days {
            let bad = || ("notify.send_days", format!("{raw:?} is not a day (\"mon\" … \"sun\") or a range of days (\"mon-fri\")"));
            match raw.split_once('-') {
                Some((from, to)) => {
                    let (from, to) = (weekday(from).ok_or_else(bad)?, weekday(to).ok_or_else(bad)?);
                    // A range may wrap around the week ("fri-mon").
                    let mut d = from;
                    loop {
                        days[d] = true;
                        if d == to {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days[weekday(raw).ok_or_else(bad)?] = true,
            }
        }
        Ok(Self { hours, days })
    }

    /// Whether every moment is open (nothing ever waits).
    pub fn always(&self) -> bool {
        self.hours.is_none() && self.days.iter().all(|d| *d)
    }

    /// The openings that start on local dates around `at` (eight days either
    /// side: every week has one), in order.
    fn openings(&self, at: DateTime<Utc>, tz: Tz) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        let today = at.with_timezone(&tz).date_naive();
        (-8..=8).filter_map(move |offset| {
            let day = today.checked_add_signed(TimeDelta::days(offset))?;
            if !self.days[day.weekday().num_days_from_monday() as usize] {
                return None;
            }
            let (start, end) = self.hours.unwrap_or((NaiveTime::MIN, NaiveTime::MIN));
            let end_day = if end <= start { day.succ_opt()? } else { day };
            Some((local(tz, day, start), local(tz, end_day, end)))
        })
    }

    /// Whether a message may go out at `at` in `tz`.
    pub fn is_open(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        self.always() || self.openings(at, tz).any(|(start, end)| start <= at && at < end)
    }

    /// The first moment at or after `at` a message may go out in `tz`.
    pub fn next_open(&self, at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        if self.is_open(at, tz) {
            return at;
        }
        self.openings(at, tz).map(|(start, _)| start).find(|start| *start > at).unwrap_or(at)
    }

    /// `at` itself when open, else the start of the last opening before it:
    /// where a reminder that must arrive *before* something moves to.
    pub fn earlier_open(&self, at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        if self.is_open(at, tz) {
            return at;
        }
        self.openings(at, tz).map(|(start, _)| start).filter(|start| *start <= at).last().unwrap_or(at)
    }
}

/// The instant of local `day` `time` in `tz`: in a gap, the first minute
/// after it; when repeated, the first.
fn local(tz: Tz, day: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let mut naive = NaiveDateTime::new(day, time);
    for _ in 0..=24 * 60 {
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.with_timezone(&Utc),
            LocalResult::None => naive += TimeDelta::minutes(1),
        }
    }
    naive.and_utc()
}

/// An IANA time zone name (`Europe/Berlin`), if it is one.
pub fn parse_zone(name: &str) -> Option<Tz> {
    name.trim().parse::<Tz>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn days(d: &[&str]) -> Vec<String> {
        d.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_hours_and_days_and_names_the_key_at_fault() {
        assert!(SendWindow::parse("", &[]).unwrap().always());
        assert!(!SendWindow::parse("09:00-18:00", &[]).unwrap().always());
        assert!(!SendWindow::parse("", &days(&["mon-fri"])).unwrap().always());
        assert_eq!(SendWindow::parse("9-18", &[]).unwrap_err().0, "notify.send_hours");
        assert_eq!(SendWindow::parse("09:00-09:00", &[]).unwrap_err().0, "notify.send_hours");
        assert_eq!(SendWindow::parse("25:00-26:00", &[]).unwrap_err().0, "notify.send_hours");
        assert_eq!(SendWindow::parse("", &days(&["funday"])).unwrap_err().0, "notify.send_days");
        assert!(SendWindow::parse("08:00-24:00", &days(&["Monday", "fri-sun"])).is_ok());
        let w = SendWindow::parse("", &days(&["fri-mon"])).unwrap();
        assert_eq!(w.days, [true, false, false, false, true, true, true]);
    }

    #[test]
    fn a_message_outside_the_window_waits_for_the_next_opening_in_the_zone() {
        let w = SendWindow::parse("09:00-18:00", &days(&["mon-fri"])).unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Sunday 2026-12-06 03:00 in Berlin (02:00 UTC) → Monday 09:00 (08:00 UTC).
        assert_eq!(w.next_open(t("2026-12-06T02:00:00Z"), berlin), t("2026-12-07T08:00:00Z"));
        // Inside: at once.
        assert_eq!(w.next_open(t("2026-12-07T10:00:00Z"), berlin), t("2026-12-07T10:00:00Z"));
        // Friday 18:00 closes: Monday.
        assert_eq!(w.next_open(t("2026-12-04T17:00:00Z"), berlin), t("2026-12-07T08:00:00Z"));
        // Before due: the start of the last opening before (Friday 09:00).
        assert_eq!(w.earlier_open(t("2026-12-06T02:00:00Z"), berlin), t("2026-12-04T08:00:00Z"));
    }

    #[test]
    fn unusual_offsets_count_in_local_time() {
        let w = SendWindow::parse("09:00-18:00", &[]).unwrap();
        // Nepal, +05:45: 09:00 local is 03:15 UTC.
        let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
        assert_eq!(w.next_open(t("2026-12-07T00:00:00Z"), kathmandu), t("2026-12-07T03:15:00Z"));
        assert!(!w.is_open(t("2026-12-07T03:14:59Z"), kathmandu));
        assert!(w.is_open(t("2026-12-07T03:15:00Z"), kathmandu));
        // Tonga, +13:00: Monday 09:00 local is Sunday 20:00 UTC.
        let tonga: Tz = "Pacific/Tongatapu".parse().unwrap();
        assert_eq!(w.next_open(t("2026-12-06T12:00:00Z"), tonga), t("2026-12-06T20:00:00Z"));
    }

    #[test]
    fn a_window_across_midnight_belongs_to_the_day_it_opens() {
        let w = SendWindow::parse("20:00-08:00", &days(&["fri"])).unwrap();
        // Friday 2026-12-04 21:00 UTC and Saturday 03:00 are Friday's night.
        assert!(w.is_open(t("2026-12-04T21:00:00Z"), Tz::UTC));
        assert!(w.is_open(t("2026-12-05T03:00:00Z"), Tz::UTC));
        assert!(!w.is_open(t("2026-12-05T08:00:00Z"), Tz::UTC));
        assert!(!w.is_open(t("2026-12-05T21:00:00Z"), Tz::UTC));
        // Thursday night is closed: Friday 20:00.
        assert_eq!(w.next_open(t("2026-12-04T02:00:00Z"), Tz::UTC), t("2026-12-04T20:00:00Z"));
        // Saturday noon: next Friday 20:00.
        assert_eq!(w.next_open(t("2026-12-05T12:00:00Z"), Tz::UTC), t("2026-12-11T20:00:00Z"));
    }

    #[test]
    fn daylight_saving_changes_move_the_opening_with_local_time() {
        let w = SendWindow::parse("09:00-18:00", &[]).unwrap();
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-03-08: clocks go from EST (-5) to EDT (-4). 09:00 is 13:00 UTC
        // that day, 14:00 UTC the day before.
        assert_eq!(w.next_open(t("2026-03-07T05:00:00Z"), ny), t("2026-03-07T14:00:00Z"));
        assert_eq!(w.next_open(t("2026-03-08T05:00:00Z"), ny), t("2026-03-08T13:00:00Z"));
        // A window opening in the skipped hour opens when the gap ends.
        let gap = SendWindow::parse("02:30-04:00", &[]).unwrap();
        assert_eq!(gap.next_open(t("2026-03-08T05:00:00Z"), ny), t("2026-03-08T07:00:00Z"));
        // 2026-11-01: 01:30 happens twice; the first (EDT, 05:30 UTC) counts.
        let twice = SendWindow::parse("01:30-03:00", &[]).unwrap();
        assert_eq!(twice.next_open(t("2026-11-01T03:00:00Z"), ny), t("2026-11-01T05:30:00Z"));
    }

    #[test]
    fn zones_are_iana_names() {
        assert!(parse_zone("Europe/Riga").is_some());
        assert!(parse_zone("Mars/Olympus").is_none());
        assert!(parse_zone("").is_none());
    }
}
