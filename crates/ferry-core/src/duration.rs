//! Human-written durations in configuration: `90s`, `15m`, `1h30m`, `2d`, or a bare
//! number of seconds.

/// Parses a duration into whole seconds. Units: `s`, `m`, `h`, `d`; components may be
/// combined (`1h30m`). A bare integer is seconds.
pub fn parse_secs(input: &str) -> Result<u64, &'static str> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration");
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err("unknown unit (use s, m, h or d, as in 90s, 15m, 1h30m)"),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| "expected a number before each unit")?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or("duration too large")?;
    }
    if !digits.is_empty() {
        return Err("a number without a unit after another component");
    }
    Ok(total)
}

/// Formats seconds the way [`parse_secs`] reads them (`1h30m`, `45s`).
pub fn format_secs(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, name) in [(86_400, 'd'), (3_600, 'h'), (60, 'm'), (1, 's')] {
        if rest >= unit {
            out.push_str(&(rest / unit).to_string());
            out.push(name);
            rest %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let table = [
            ("90", Ok(90)),
            ("90s", Ok(90)),
            ("15m", Ok(900)),
            ("1h30m", Ok(5_400)),
            ("2d", Ok(172_800)),
            ("", Err(())),
            ("5x", Err(())),
            ("m", Err(())),
            ("1h30", Err(())),
        ];
        for (input, want) in table {
            assert_eq!(parse_secs(input).map_err(|_| ()), want, "{input}");
        }
        assert_eq!(format_secs(5_400), "1h30m");
        assert_eq!(format_secs(45), "45s");
    }
}
