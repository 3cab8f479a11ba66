//! Kong's rate-limiting periods: calendar-aligned UTC windows, their lengths, and the counter
//! keys Kong writes to Redis (kong/plugins/rate-limiting/policies/init.lua), so that replicas
//! of this gateway and of Kong count together.

/// A period Kong limits over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// A second.
    Second,
    /// A minute.
    Minute,
    /// An hour.
    Hour,
    /// A day.
    Day,
    /// A calendar month.
    Month,
    /// A calendar year.
    Year,
}

/// Every period with Kong's name (config field, Redis key) and header suffix, and the
/// expiration Kong gives its counters (month: 30 days, year: 365 days).
pub const PERIODS: [(Period, &str, &str, i64); 6] = [
    (Period::Second, "second", "Second", 1),
    (Period::Minute, "minute", "Minute", 60),
    (Period::Hour, "hour", "Hour", 3600),
    (Period::Day, "day", "Day", 86400),
    (Period::Month, "month", "Month", 2_592_000),
    (Period::Year, "year", "Year", 31_536_000),
];

/// Start (unix seconds, UTC) of the calendar window of `period` containing `now`.
pub fn window_start(period: Period, now: i64) -> i64 {
    match period {
        Period::Second => now,
        Period::Minute => now - now.rem_euclid(60),
        Period::Hour => now - now.rem_euclid(3600),
        Period::Day => now - now.rem_euclid(86400),
        Period::Month | Period::Year => {
            let days = now.div_euclid(86400);
            let (y, m, _) = civil_from_days(days);
            let month = if period == Period::Month { m } else { 1 };
            days_from_civil(y, month, 1) * 86400
        }
    }
}

/// Kong's `route_id:service_id` part of a counter key: the ids of the route and service the
/// plugin instance is scoped to, the nil UUID where it is not.
pub fn scope(route_id: Option<&str>, service_id: Option<&str>) -> String {
    const EMPTY_UUID: &str = "00000000-0000-0000-0000-000000000000";
    format!(
        "{}:{}",
        route_id.unwrap_or(EMPTY_UUID),
        service_id.unwrap_or(EMPTY_UUID)
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * if m > 2 { m - 3 } else { m + 9 } + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_windows() {
        // 2026-11-22T07:10:21Z
        let t = 1_795_331_421;
        assert_eq!(window_start(Period::Minute, t), t - 21);
        assert_eq!(window_start(Period::Hour, t), t - 10 * 60 - 21);
        assert_eq!(window_start(Period::Day, t), t - (7 * 3600 + 10 * 60 + 21));
        // 2026-11-01T00:00:00Z and 2026-01-01T00:00:00Z
        assert_eq!(window_start(Period::Month, t), 1_793_491_200);
        assert_eq!(window_start(Period::Year, t), 1_767_225_600);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn scope_uses_the_nil_uuid_where_unscoped() {
        assert_eq!(
            scope(Some("r"), None),
            "r:00000000-0000-0000-0000-000000000000"
        );
    }
}
