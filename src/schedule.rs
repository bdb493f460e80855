//! Run schedules in the crontab syntax operators already know, evaluated with the `cron` crate.
//!
//! Operators write `30 3 * * 1-5` (minute hour day-of-month month day-of-week, Sunday = 0 or 7)
//! and expect exactly what crontab(5) does. The `cron` crate speaks a different dialect: a
//! seconds field first, Sunday = 1, and day-of-month AND day-of-week where crontab ORs them
//! when both are restricted. Passing the operator's text through would silently shift every
//! weekday by one, so each field is parsed here into the set of values it means and handed to
//! the crate as explicit lists it cannot misread.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};

use crate::localtime;

/// A validated crontab schedule.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    /// One schedule, or two whose union is crontab's "day-of-month OR day-of-week".
    parts: Vec<cron::Schedule>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{text:?} is not a crontab schedule: {reason}")]
pub struct ParseScheduleError {
    text: String,
    reason: String,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
// 7 is accepted as Sunday, as crontab does; it is folded onto 0 below.
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// The `cron` crate's names for crontab's day numbers 0..=6; names avoid its Sunday = 1.
const CRATE_DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Field {
    fn value(&self, s: &str) -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        let v = match self.names.iter().position(|n| *n == lower) {
            Some(i) => i as u32 + if self.min == 1 { 1 } else { 0 },
            None => s.parse().map_err(|_| format!("{s:?} is not a valid {}", self.name))?,
        };
        if v < self.min || v > self.max {
            return Err(format!("{} {v} is outside {}-{}", self.name, self.min, self.max));
        }
        Ok(v)
    }

    /// The sorted set of values a field means, e.g. "1-5" → [1,2,3,4,5].
    fn expand(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut set = vec![false; self.max as usize + 1];
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| format!("{s:?} is not a valid step in the {} field", self.name))?;
                    (r, step)
                }
                None => (item, 1),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.value(a)?, self.value(b)?)
            } else if step == 1 {
                let v = self.value(range)?;
                (v, v)
            } else {
                return Err(format!(
                    "{item:?}: a step needs a range or * in the {} field",
                    self.name
                ));
            };
            if lo > hi {
                return Err(format!("{item:?}: range runs backwards in the {} field", self.name));
            }
            for v in (lo..=hi).step_by(step as usize) {
                set[v as usize] = true;
            }
        }
        Ok((self.min..=self.max).filter(|v| set[*v as usize]).collect())
    }
}

fn list(values: &[u32], full: usize, render: impl Fn(u32) -> String) -> String {
    if values.len() == full {
        "*".to_owned()
    } else {
        values.iter().map(|v| render(*v)).collect::<Vec<_>>().join(",")
    }
}

impl FromStr for Schedule {
    type Err = ParseScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseScheduleError {
            text: text.to_owned(),
            reason,
        };
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => return Err(err(format!("unknown shorthand {t:?}"))),
            t => t,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        };
        let minutes = MINUTE.expand(minute).map_err(err)?;
        let hours = HOUR.expand(hour).map_err(err)?;
        let days = DAY_OF_MONTH.expand(dom).map_err(err)?;
        let months = MONTH.expand(month).map_err(err)?;
        let mut weekdays: Vec<u32> = DAY_OF_WEEK
            .expand(dow)
            .map_err(err)?
            .into_iter()
            .map(|d| d % 7)
            .collect();
        weekdays.sort_unstable();
        weekdays.dedup();

        let number = |v: u32| v.to_string();
        let minutes = list(&minutes, 60, number);
        let hours = list(&hours, 24, number);
        let days = list(&days, 31, number);
        let months = list(&months, 12, number);
        let weekdays = list(&weekdays, 7, |d| CRATE_DAY_NAMES[d as usize].to_owned());

        // crontab(5): when both day fields are restricted (neither starts with '*'), a day
        // matches if EITHER matches. The crate ANDs them, so that case becomes two schedules.
        let either = !dom.starts_with('*') && !dow.starts_with('*');
        let day_pairs = if either {
            vec![(days.as_str(), "*"), ("*", weekdays.as_str())]
        } else {
            vec![(days.as_str(), weekdays.as_str())]
        };
        let parts = day_pairs
            .into_iter()
            .map(|(d, w)| {
                let crate_expr = format!("0 {minutes} {hours} {d} {months} {w}");
                cron::Schedule::from_str(&crate_expr).map_err(|e| err(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Schedule {
            text: text.trim().to_owned(),
            parts,
        })
    }
}

impl Schedule {
    /// The first fire time strictly after `t`, in `t`'s time zone. `None` for a schedule
    /// that never fires again (e.g. 30 February).
    ///
    /// Like crontab, the schedule is read on the wall clock: a time the clock skips in
    /// spring fires at the first instant after the jump, and a time it passes twice in
    /// autumn fires once. The `cron` crate is therefore asked in naive wall-clock time (as
    /// if it were UTC) and its answer resolved in the real zone.
    pub fn next_after<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let tz = t.timezone();
        let mut wall = localtime::wall_clock(t)?;
        // A candidate resolves to an instant not after `t` only while `t` is in the second
        // pass of a repeated hour: every candidate in that hour means its first pass. Each
        // round moves at least a minute on the wall clock, and no clock repeats a day.
        for _ in 0..=24 * 60 {
            let from = Utc.from_utc_datetime(&wall);
            let next = self
                .parts
                .iter()
                .filter_map(|p| p.after(&from).next())
                .min()?
                .naive_utc();
            let real = localtime::resolve(&tz, next)?;
            if real > *t {
                return Some(real);
            }
            wall = next;
        }
        None
    }

    /// The expression as the operator wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate, Timelike, Weekday};
    use chrono_tz::Europe::Amsterdam;

    fn fires(expr: &str, from: NaiveDate, n: usize) -> Vec<DateTime<chrono_tz::Tz>> {
        let s: Schedule = expr.parse().unwrap();
        let mut t = Amsterdam
            .from_local_datetime(&from.and_hms_opt(0, 0, 0).unwrap())
            .unwrap();
        (0..n)
            .map(|_| {
                t = s.next_after(&t).unwrap();
                t
            })
            .collect()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn weekdays_mean_monday_to_friday_at_0330() {
        // 2026-11-23 is a Monday. Two full weeks of firing.
        let got = fires("30 3 * * 1-5", date(2026, 11, 22), 10);
        let days: Vec<Weekday> = got.iter().map(|t| t.weekday()).collect();
        use Weekday::*;
        assert_eq!(days, [Mon, Tue, Wed, Thu, Fri, Mon, Tue, Wed, Thu, Fri]);
        assert!(got.iter().all(|t| (t.hour(), t.minute(), t.second()) == (3, 30, 0)));
        assert_eq!(got[0].date_naive(), date(2026, 11, 23));
    }

    #[test]
    fn sunday_is_zero_or_seven_and_names_work() {
        for expr in ["0 4 * * 0", "0 4 * * 7", "0 4 * * sun", "0 4 * * SUN", "@weekly"] {
            let got = fires(expr, date(2026, 11, 24), 3);
            assert!(got.iter().all(|t| t.weekday() == Weekday::Sun), "{expr}: {got:?}");
        }
        let got = fires("0 4 * * 5-7", date(2026, 11, 23), 3);
        let days: Vec<Weekday> = got.iter().map(|t| t.weekday()).collect();
        assert_eq!(days, [Weekday::Fri, Weekday::Sat, Weekday::Sun]);
        let got = fires("0 4 * * mon-wed", date(2026, 11, 22), 3);
        assert_eq!(got.last().unwrap().weekday(), Weekday::Wed);
    }

    #[test]
    fn day_of_month_or_day_of_week_as_crontab_does() {
        // "the 1st of the month, and every Monday"
        let got = fires("0 2 1 * mon", date(2026, 11, 24), 3);
        let dates: Vec<NaiveDate> = got.iter().map(|t| t.date_naive()).collect();
        assert_eq!(dates, [date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 7)]);
        // A '*'-led day-of-month keeps AND semantics, as in crontab.
        let got = fires("0 2 */2 * mon", date(2026, 11, 24), 2);
        assert!(
            got.iter().all(|t| t.weekday() == Weekday::Mon && t.day() % 2 == 1),
            "{got:?}"
        );
    }

    #[test]
    fn steps_lists_and_shorthands() {
        let got = fires("*/20 * * * *", date(2026, 11, 24), 4);
        let minutes: Vec<u32> = got.iter().map(|t| t.minute()).collect();
        assert_eq!(minutes, [20, 40, 0, 20]);
        let got = fires("15 1,13 * * *", date(2026, 11, 24), 2);
        assert_eq!(got.iter().map(|t| t.hour()).collect::<Vec<_>>(), [1, 13]);
        let got = fires("@daily", date(2026, 11, 24), 2);
        assert_eq!(got[1].date_naive(), date(2026, 11, 26));
        let got = fires("0 0 1 jan *", date(2026, 11, 24), 1);
        assert_eq!(got[0].date_naive(), date(2027, 1, 1));
    }

    #[test]
    fn clock_changes_neither_skip_nor_repeat_a_run() {
        // Spring: 2026-03-29 02:00 → 03:00. The 02:30 run happens right after the jump.
        let got = fires("30 2 * * *", date(2026, 3, 28), 3);
        let shown: Vec<String> = got.iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            shown,
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00"
            ]
        );
        // Autumn: 2026-10-25 03:00 → 02:00. 02:30 happens twice on the clock, runs once.
        let got = fires("30 2 * * *", date(2026, 10, 24), 3);
        let shown: Vec<String> = got.iter().map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            shown,
            [
                "2026-10-24T02:30:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:30:00+01:00"
            ]
        );
        // Asking again from inside the repeated hour, after the run, does not repeat it.
        let s: Schedule = "30 2 * * *".parse().unwrap();
        // 01:10 UTC is 02:10 CET, the second pass, after 02:30 CEST has fired.
        let second_pass = Utc
            .with_ymd_and_hms(2026, 10, 25, 1, 10, 0)
            .unwrap()
            .with_timezone(&Amsterdam);
        assert_eq!(second_pass.to_rfc3339(), "2026-10-25T02:10:00+01:00");
        assert_eq!(
            s.next_after(&second_pass).unwrap().to_rfc3339(),
            "2026-10-26T02:30:00+01:00"
        );
    }

    #[test]
    fn frequent_runs_inside_the_repeated_hour_still_have_a_next_run() {
        // 01:10 UTC is 02:10 CET, the second pass of 02:xx; 02:20..02:50 CET would repeat
        // runs already made at 02:20..02:50 CEST, so the next one is 03:00 CET.
        let s: Schedule = "*/10 * * * *".parse().unwrap();
        let t = Utc
            .with_ymd_and_hms(2026, 10, 25, 1, 10, 0)
            .unwrap()
            .with_timezone(&Amsterdam);
        assert_eq!(s.next_after(&t).unwrap().to_rfc3339(), "2026-10-25T03:00:00+01:00");
        let every_minute: Schedule = "* * * * *".parse().unwrap();
        assert_eq!(
            every_minute.next_after(&t).unwrap().to_rfc3339(),
            "2026-10-25T03:00:00+01:00"
        );
    }

    #[test]
    fn a_day_that_never_comes_is_no_next_run_not_a_hang_or_a_panic() {
        for expr in ["0 0 30 2 *", "0 0 31 4,6,9,11 *"] {
            let s: Schedule = expr.parse().unwrap();
            let t = Utc
                .with_ymd_and_hms(2026, 11, 24, 0, 0, 0)
                .unwrap()
                .with_timezone(&Amsterdam);
            assert_eq!(s.next_after(&t), None, "{expr}");
        }
        let s: Schedule = "30 3 * * *".parse().unwrap();
        let end = DateTime::<Utc>::MAX_UTC.with_timezone(&Amsterdam);
        assert_eq!(s.next_after(&end), None);
    }

    #[test]
    fn bad_expressions_say_why() {
        let cases = [
            ("0 3 * *", "expected 5 fields"),
            ("0 0 3 * * *", "found 6"),
            ("61 3 * * *", "minute 61 is outside 0-59"),
            ("0 24 * * *", "hour 24"),
            ("0 3 0 * *", "day-of-month 0"),
            ("0 3 * 13 *", "month 13"),
            ("0 3 * * 8", "day-of-week 8"),
            ("0 3 * * fry", "\"fry\" is not a valid day-of-week"),
            ("0 3 * * 5-1", "backwards"),
            ("*/0 3 * * *", "step"),
            ("@reboot", "unknown shorthand"),
        ];
        for (expr, want) in cases {
            let e = expr.parse::<Schedule>().unwrap_err().to_string();
            assert!(e.contains(want), "{expr}: {e}");
            assert!(e.contains(&format!("{:?}", expr)), "{expr}: {e}");
        }
    }
}
