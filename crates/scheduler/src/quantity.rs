//! Resource quantities (`100m`, `1.5`, `2Gi`, `1e3`) as integers: CPU in
//! millicores, everything else in whole units, rounded up as upstream's
//! `MilliValue()` and `Value()` round.

/// `text` times 1000, rounded up; None if it is not a quantity.
pub fn milli(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (mantissa, exponent) = match suffix.strip_prefix(['e', 'E']) {
        Some(e) => (number, e.parse::<i32>().ok()?),
        None => (number, 0),
    };
    let factor: f64 = match if exponent != 0 { "" } else { suffix } {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    let value: f64 = mantissa.parse().ok()?;
    let scaled = value * factor * 10f64.powi(exponent) * 1000.0;
    // Rounded up, as upstream (0.1m is 1m), after shaving off the binary
    // floating-point error that would turn 1.5 into 1501m.
    Some((scaled * (1.0 - 1e-12)).ceil() as i64)
}

/// `text` in whole units, rounded up.
pub fn value(text: &str) -> Option<i64> {
    milli(text).map(|m| (m + 999).div_euclid(1000))
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
    }
}
