//! ngx's clock and HTTP date helpers (all in UTC: the gateway has no local time zone).

use std::time::{SystemTime, UNIX_EPOCH};

use mlua::{Lua, Table, Value};

use super::support::{as_f64, raise_here, set_fn};

const WEEK: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Broken-down UTC time.
#[derive(Debug, PartialEq, Eq)]
pub struct Tm {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    pub wday: usize,
}

/// Days since 1970-01-01 for a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// UTC broken-down time of `t` seconds since the epoch.
pub fn gmtime(t: i64) -> Tm {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Tm {
        year,
        month,
        day,
        hour: (secs / 3600) as u32,
        min: (secs / 60 % 60) as u32,
        sec: (secs % 60) as u32,
        wday: (days + 4).rem_euclid(7) as usize,
    }
}

/// Current time as (seconds, milliseconds).
fn now() -> (i64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_millis() as i64)
}

/// `yyyy-mm-dd hh:mm:ss` (ngx.utctime / ngx.localtime).
pub fn datetime(t: i64) -> String {
    let tm = gmtime(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.year, tm.month, tm.day, tm.hour, tm.min, tm.sec
    )
}

/// ngx.http_time: `Thu, 18 Nov 2010 11:27:35 GMT`.
pub fn http_time(t: i64) -> String {
    let tm = gmtime(t);
    format!(
        "{}, {:02} {} {:4} {:02}:{:02}:{:02} GMT",
        WEEK[tm.wday],
        tm.day,
        MONTHS[tm.month as usize - 1],
        tm.year,
        tm.hour,
        tm.min,
        tm.sec
    )
}

/// ngx.cookie_time: `Thu, 18-Nov-10 11:27:35 GMT` (4-digit year after 2037, like nginx).
pub fn cookie_time(t: i64) -> String {
    let tm = gmtime(t);
    let year = if tm.year > 2037 {
        format!("{}", tm.year)
    } else {
        format!("{:02}", tm.year % 100)
    };
    format!(
        "{}, {:02}-{}-{} {:02}:{:02}:{:02} GMT",
        WEEK[tm.wday],
        tm.day,
        MONTHS[tm.month as usize - 1],
        year,
        tm.hour,
        tm.min,
        tm.sec
    )
}

fn month_index(s: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(s))
        .map(|i| i as u32 + 1)
}

fn hms(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split(':');
    let h = it.next()?.parse().ok()?;
    let m = it.next()?.parse().ok()?;
    let sec = it.next()?.parse().ok()?;
    (it.next().is_none() && h <= 23 && m <= 59 && sec <= 59).then_some((h, m, sec))
}

/// ngx_parse_http_time: RFC 1123 (`Thu, 18 Nov 2010 11:27:35 GMT`), RFC 850
/// (`Thursday, 18-Nov-10 11:27:35 GMT`) and asctime (`Thu Nov 18 11:27:35 2010`).
pub fn parse_http_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (year, month, day, time) = if let Some((_, rest)) = s.split_once(", ") {
        let parts: Vec<&str> = rest.split_whitespace().collect();
        match parts.as_slice() {
            [d, m, y, t, rest @ ..] if rest.len() <= 1 => (
                y.parse::<i64>().ok()?,
                month_index(m)?,
                d.parse::<u32>().ok()?,
                *t,
            ),
            [dmy, t, rest @ ..] if rest.len() <= 1 => {
                let mut it = dmy.split('-');
                let d = it.next()?.parse::<u32>().ok()?;
                let m = month_index(it.next()?)?;
                let y = it.next()?;
                let mut y = y.parse::<i64>().ok()?;
                if y < 100 {
                    y += if y < 70 { 2000 } else { 1900 };
                }
                (y, m, d, *t)
            }
            _ => return None,
        }
    } else {
        let parts: Vec<&str> = s.split_whitespace().collect();
        match parts.as_slice() {
            [_, m, d, t, y] => (
                y.parse::<i64>().ok()?,
                month_index(m)?,
                d.parse::<u32>().ok()?,
                *t,
            ),
            _ => return None,
        }
    };
    let (h, mi, sec) = hms(time)?;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&year) || day == 0 || day > mdays[month as usize - 1] {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + (h * 3600 + mi * 60 + sec) as i64)
}

fn number_arg(v: &Value) -> mlua::Result<i64> {
    as_f64(v)
        .map(|f| f as i64)
        .ok_or_else(|| raise_here("number argument only"))
}

/// Registers now/time/today/localtime/utctime/update_time/http_time/cookie_time/parse_http_time.
pub fn register(lua: &Lua, ngx: &Table) -> mlua::Result<()> {
    set_fn(lua, ngx, "now", |_, ()| {
        let (s, ms) = now();
        Ok(s as f64 + ms as f64 / 1000.0)
    })?;
    set_fn(lua, ngx, "time", |_, ()| Ok(now().0))?;
    set_fn(lua, ngx, "update_time", |_, ()| Ok(()))?;
    set_fn(lua, ngx, "today", |_, ()| {
        Ok(datetime(now().0)[..10].to_string())
    })?;
    set_fn(lua, ngx, "localtime", |_, ()| Ok(datetime(now().0)))?;
    set_fn(lua, ngx, "utctime", |_, ()| Ok(datetime(now().0)))?;
    set_fn(lua, ngx, "http_time", |_, t: Value| {
        Ok(http_time(number_arg(&t)?))
    })?;
    set_fn(lua, ngx, "cookie_time", |_, t: Value| {
        Ok(cookie_time(number_arg(&t)?))
    })?;
    set_fn(lua, ngx, "parse_http_time", |_, s: Value| match s {
        Value::String(s) => Ok(parse_http_time(&s.to_string_lossy())),
        _ => Err(raise_here("string argument only")),
    })?;
    Ok(())
}
