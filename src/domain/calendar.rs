//! Calendar buckets in a time zone: the hours, days or ISO weeks (Monday first) that cover a
//! time range, as UTC millisecond intervals. Days and weeks start at the zone's local
//! midnight, so a daylight-saving day is 23 or 25 hours long; an hour is always 60 minutes.
//! The zone database is compiled in (jiff's bundled copy of the IANA database), so results
//! do not depend on the host's `/usr/share/zoneinfo`.

use super::Invalid;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, ZonedDateTime};

/// The most buckets one report may have.
pub const MAX_BUCKETS: usize = 1000;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum BucketUnit {
    Hour,
    Day,
    Week,
}

impl BucketUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            BucketUnit::Hour => "hour",
            BucketUnit::Day => "day",
            BucketUnit::Week => "week",
        }
    }
}

/// A named IANA time zone.
#[derive(Debug, Clone)]
pub struct Zone {
    pub name: String,
    tz: TimeZone,
}

impl Zone {
    /// `UTC`, or a zone of the IANA database such as `Europe/Berlin`.
    pub fn parse(name: &str) -> Result<Zone, Invalid> {
        // Names are short ASCII paths; anything else is not looked up at all.
        let plausible = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b));
        let tz = plausible
            .then(|| TimeZone::get(name).ok())
            .flatten()
            .ok_or_else(|| {
                format!("unknown time zone {name:?} (an IANA name such as Europe/Berlin)")
            })?;
        Ok(Zone {
            name: name.to_string(),
            tz,
        })
    }

    pub fn utc() -> Zone {
        Zone {
            name: "UTC".to_string(),
            tz: TimeZone::UTC,
        }
    }

    /// An instant given as RFC 3339 (`2026-03-29T12:00:00Z`, any offset) or as a date
    /// (`2026-03-29`: that day's start in this zone), in milliseconds.
    pub fn parse_instant(&self, text: &str) -> Result<i64, Invalid> {
        if text.len() == 10 {
            let date: Date = text
                .parse()
                .map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD)"))?;
            let start = date
                .to_zoned_datetime(self.tz.clone())
                .and_then(|z| z.start_of_day())
                .map_err(|e| Invalid(e.to_string()))?;
            return Ok(start.timestamp().as_millisecond());
        }
        let ts: Timestamp = text.parse().map_err(|_| {
            format!("{text:?} is not an RFC 3339 time (2026-03-29T12:00:00Z) or a date")
        })?;
        Ok(ts.as_millisecond())
    }

    /// An instant as RFC 3339 with this zone's offset at that instant.
    pub fn format(&self, ms: i64) -> String {
        match Timestamp::from_millisecond(ms) {
            Ok(ts) => ts.display_with_offset(self.tz.to_offset(ts)).to_string(),
            Err(_) => String::new(),
        }
    }

    fn zoned(&self, ms: i64) -> Result<ZonedDateTime, Invalid> {
        Timestamp::from_millisecond(ms)
            .map(|ts| ts.to_zoned_datetime(self.tz.clone()))
            .map_err(|e| Invalid(e.to_string()))
    }

    /// The start of the bucket that holds `ms`.
    fn bucket_start(&self, unit: BucketUnit, ms: i64) -> Result<ZonedDateTime, Invalid> {
        let z = self.zoned(ms)?;
        let start = match unit {
            BucketUnit::Hour => z.with().minute(0).second(0).subsec_nanosecond(0).build(),
            BucketUnit::Day => z.start_of_day(),
            BucketUnit::Week => {
                let back = i64::from(z.weekday().to_monday_zero_offset());
                z.date()
                    .checked_sub(back.days())
                    .and_then(|d| d.to_zoned_datetime(self.tz.clone()))
                    .and_then(|d| d.start_of_day())
            }
        };
        start.map_err(|e| Invalid(e.to_string()))
    }

    fn next(&self, unit: BucketUnit, start: &ZonedDateTime) -> Result<ZonedDateTime, Invalid> {
        let next = match unit {
            BucketUnit::Hour => start.checked_add(1.hour()),
            BucketUnit::Day => start.tomorrow().and_then(|d| d.start_of_day()),
            BucketUnit::Week => start
                .date()
                .checked_add(7.days())
                .and_then(|d| d.to_zoned_datetime(self.tz.clone()))
                .and_then(|d| d.start_of_day()),
        };
        next.map_err(|e| Invalid(e.to_string()))
    }

    /// The buckets covering `[from, to)`: the first holds `from`, the last holds `to - 1`.
    /// `Err` if the range is empty or needs more than [`MAX_BUCKETS`].
    pub fn buckets(
        &self,
        unit: BucketUnit,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, i64)>, Invalid> {
        if from >= to {
            return Err(Invalid::from("`from` must be before `to`"));
        }
        let mut start = self.bucket_start(unit, from)?;
        let mut out = Vec::new();
        loop {
            let next = self.next(unit, &start)?;
            let (lo, hi) = (
                start.timestamp().as_millisecond(),
                next.timestamp().as_millisecond(),
            );
            out.push((lo, hi));
            if hi >= to {
                return Ok(out);
            }
            if out.len() >= MAX_BUCKETS {
                return Err(Invalid::from(format!(
                    "the range needs more than {MAX_BUCKETS} {} buckets; narrow it or use a longer bucket",
                    unit.as_str()
                )));
            }
            start = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn ms(rfc3339: &str) -> i64 {
        Zone::utc().parse_instant(rfc3339).unwrap()
    }

    #[test]
    fn berlin_days_follow_local_midnight_across_both_changes_of_2026() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // Summer time starts on 29 March 2026 and ends on 25 October 2026.
        let from = berlin.parse_instant("2026-03-28").unwrap();
        let to = berlin.parse_instant("2026-03-31").unwrap();
        let days = berlin.buckets(BucketUnit::Day, from, to).unwrap();
        let lengths: Vec<i64> = days.iter().map(|(lo, hi)| (hi - lo) / H).collect();
        assert_eq!(lengths, [24, 23, 24]);
        assert_eq!(days[0].0, ms("2026-03-27T23:00:00Z"));
        assert_eq!(days[2].0, ms("2026-03-29T22:00:00Z"));
        assert_eq!(berlin.format(days[1].0), "2026-03-29T00:00:00+01:00");
        assert_eq!(berlin.format(days[2].0), "2026-03-30T00:00:00+02:00");
        let autumn = berlin
            .buckets(
                BucketUnit::Day,
                berlin.parse_instant("2026-10-25").unwrap(),
                berlin.parse_instant("2026-10-26").unwrap(),
            )
            .unwrap();
        assert_eq!(autumn.len(), 1);
        assert_eq!((autumn[0].1 - autumn[0].0) / H, 25);
    }

    #[test]
    fn a_day_whose_midnight_does_not_exist_starts_at_its_first_instant() {
        // Cuba moves its clocks from 00:00 to 01:00 on 8 March 2026.
        let havana = Zone::parse("America/Havana").unwrap();
        let days = havana
            .buckets(
                BucketUnit::Day,
                ms("2026-03-08T12:00:00Z"),
                ms("2026-03-08T13:00:00Z"),
            )
            .unwrap();
        assert_eq!(havana.format(days[0].0), "2026-03-08T01:00:00-04:00");
        assert_eq!((days[0].1 - days[0].0) / H, 23);
    }

    #[test]
    fn hours_are_sixty_minutes_even_when_the_clock_repeats_one() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let from = berlin.parse_instant("2026-10-25").unwrap();
        let to = from + 25 * H;
        let hours = berlin.buckets(BucketUnit::Hour, from, to).unwrap();
        assert_eq!(hours.len(), 25);
        assert!(hours.iter().all(|(lo, hi)| hi - lo == H));
        assert!(hours.windows(2).all(|w| w[0].1 == w[1].0));
    }

    #[test]
    fn weeks_start_on_monday_at_local_midnight() {
        let ny = Zone::parse("America/New_York").unwrap();
        // Wednesday 11 March 2026, the week of the US change to summer time (8 March).
        let weeks = ny
            .buckets(
                BucketUnit::Week,
                ms("2026-03-11T12:00:00Z"),
                ms("2026-03-11T13:00:00Z"),
            )
            .unwrap();
        assert_eq!(weeks.len(), 1);
        assert_eq!(ny.format(weeks[0].0), "2026-03-09T00:00:00-04:00");
        assert_eq!(ny.format(weeks[0].1), "2026-03-16T00:00:00-04:00");
    }

    #[test]
    fn zones_off_the_hour_keep_buckets_on_fifteen_minute_slots() {
        for name in ["Asia/Kolkata", "Asia/Kathmandu", "Australia/Eucla"] {
            let zone = Zone::parse(name).unwrap();
            let days = zone
                .buckets(
                    BucketUnit::Day,
                    ms("2026-01-01T00:00:00Z"),
                    ms("2026-01-10T00:00:00Z"),
                )
                .unwrap();
            assert!(
                days.iter()
                    .all(|(lo, hi)| lo % 900_000 == 0 && hi % 900_000 == 0),
                "{name}"
            );
        }
    }

    #[test]
    fn unknown_zones_empty_ranges_and_too_many_buckets_are_refused() {
        for bad in [
            "",
            "Mars/Olympus",
            "../../etc/passwd",
            "Europe/Berlin\0",
            &"A".repeat(200),
        ] {
            assert!(Zone::parse(bad).is_err(), "{bad:?}");
        }
        let utc = Zone::utc();
        assert!(utc.buckets(BucketUnit::Day, 10, 10).is_err());
        assert!(utc.buckets(BucketUnit::Hour, 0, 1001 * H).is_err());
        assert_eq!(
            utc.buckets(BucketUnit::Hour, 0, 1000 * H).unwrap().len(),
            1000
        );
        assert!(utc.parse_instant("2026-13-01").is_err());
        assert!(utc.parse_instant("yesterday").is_err());
    }
}
