//! Resource quantities (`100m`, `1.5`, `2Gi`, `1e3`) as integers: CPU in
//! millicores, everything else in whole units, rounded up as upstream's
//! `MilliValue()` and `Value()` round.

/// `text` times 1000, rounded up; None if it is not a quantity. Exact
/// integer arithmetic: `1Gi` must sum with `512Mi` to exactly `1536Mi`.
pub fn milli(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    // The value is digits × multiplier × 10^power, in milli-units; what
    // overflows (`1e2147483647`, 39 digits) is not a quantity here.
    let mut power = 3i32.checked_sub(i32::try_from(fraction.len()).ok()?)?;
    let mut multiplier: i128 = 1;
    match suffix {
        "" => {}
        "n" => power -= 9,
        "u" => power -= 6,
        "m" => power -= 3,
        "k" => power += 3,
        "M" => power += 6,
        "G" => power += 9,
        "T" => power += 12,
        "P" => power += 15,
        "E" => power += 18,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let exponent = "KMGTPE".find(&suffix[..1])? as u32 + 1;
            multiplier = 1024i128.pow(exponent);
        }
        _ => power = power.checked_add(suffix.strip_prefix(['e', 'E'])?.parse::<i32>().ok()?)?,
    }
    let scaled = digits.checked_mul(multiplier)?;
    let value = if power >= 0 {
        scaled.checked_mul(10i128.checked_pow(power as u32)?)?
    } else {
        // Rounded up, as upstream (0.1m is 1m).
        let divisor = 10i128.checked_pow(power.unsigned_abs())?;
        scaled.div_euclid(divisor) + i128::from(scaled.rem_euclid(divisor) != 0)
    };
    let value = i64::try_from(value).ok()?;
    Some(if negative { -value } else { value })
}

/// `text` in whole units, rounded up.
pub fn value(text: &str) -> Option<i64> {
    milli(text).map(|m| m.div_euclid(1000) + i64::from(m.rem_euclid(1000) != 0))
}

/// A sum of milli-units written back as upstream canonicalizes it: in the
/// binary suffixes (Ki, Mi, …) when `binary` and the value is a whole
/// multiple of 1024, else in the decimal ones (m, k, M, …).
pub fn format(milli: i64, binary: bool) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let units = milli / 1000;
    if units == 0 {
        return "0".into();
    }
    let (base, suffixes): (i64, &[&str]) = if binary && units % 1024 == 0 { (1024, &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]) } else { (1000, &["", "k", "M", "G", "T", "P", "E"]) };
    let (mut n, mut i) = (units, 0);
    while n % base == 0 && i + 1 < suffixes.len() {
        n /= base;
        i += 1;
    }
    format!("{n}{}", suffixes[i])
}

/// Whether a quantity is written with a binary suffix.
pub fn is_binary(text: &str) -> bool {
    text.trim_end().ends_with('i')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_forms() {
        assert_eq!(milli("100m"), Some(100));
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("1.5"), Some(1500));
        assert_eq!(milli("0.1m"), Some(1));
        assert_eq!(value("2Gi"), Some(2 << 30));
        assert_eq!(value("1k"), Some(1000));
        assert_eq!(value("1e3"), Some(1000));
        assert_eq!(value("128974848"), Some(128974848));
        assert_eq!(value("129e6"), Some(129000000));
        assert_eq!(milli("0"), Some(0));
        assert_eq!(milli("ten"), None);
        assert_eq!(milli("5Xi"), None);
        assert_eq!(value("-1500m"), Some(-1), "rounded up, as (m + 999) / 1000 rounds");
    }

    #[test]
    fn what_overflows_is_not_a_quantity() {
        for text in ["1e2147483647", "1.55e-2147483648", "170141183460469231731687303715884105727n", "9Ei0", "99999999999999999999999999999999999999999"] {
            assert_eq!(milli(text), None, "{text}");
        }
        assert_eq!(value("9223372036854775807m"), Some(9223372036854776), "rounds up without overflowing");
        assert_eq!(milli("9223372036854775807n"), Some(9223372036855));
    }

    #[test]
    fn formats_as_upstream_canonicalizes() {
        assert_eq!(format(1500, false), "1500m");
        assert_eq!(format(2000, false), "2");
        assert_eq!(format(2_000_000, false), "2k");
        assert_eq!(format(0, true), "0");
        assert_eq!(format(milli("1Gi").unwrap() + milli("512Mi").unwrap(), true), "1536Mi");
        assert_eq!(format(milli("64Mi").unwrap() * 2, true), "128Mi");
        assert_eq!(format(1_500_000, true), "1500");
        assert_eq!(format(milli("100M").unwrap() * 2, false), "200M");
    }
}
