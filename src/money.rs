//! Money as people read it: `€123.45`, `$1,200.00`, `¥1,200`.

use crate::state::Currency;

/// Formats `amount` minor units of `currency` for English readers: the
/// currency's symbol when it has an unambiguous one, else its code
/// (`CHF 12.50`), with thousands separators and the currency's own number
/// of decimals.
pub fn format_money(amount: i64, currency: Currency) -> String {
    let digits = currency.minor_digits();
    let number = group_thousands(amount.unsigned_abs(), digits, ',', '.');
    let sign = if amount < 0 { "-" } else { "" };
    match symbol(currency) {
        Some(sym) => format!("{sign}{sym}{number}"),
        None => format!("{sign}{} {number}", currency.as_str().to_ascii_uppercase()),
    }
}

pub(crate) fn symbol(currency: Currency) -> Option<&'static str> {
    Some(match currency.as_str() {
        "eur" => "€",
        "usd" => "$",
        "gbp" => "£",
        "jpy" => "¥",
        "inr" => "₹",
        "krw" => "₩",
        "ils" => "₪",
        "ngn" => "₦",
        "php" => "₱",
        "vnd" => "₫",
        "uah" => "₴",
        "try" => "₺",
        _ => return None,
    })
}

/// `123456` with 2 digits → `1,234.56`.
pub(crate) fn group_thousands(minor: u64, digits: u32, thousands: char, decimal: char) -> String {
    let scale = 10u64.pow(digits);
    let (whole, frac) = (minor / scale, minor % scale);
    let raw = whole.to_string();
    let mut out = String::with_capacity(raw.len() + raw.len() / 3 + 4);
    for (i, ch) in raw.chars().enumerate() {
        if i > 0 && (raw.len() - i) % 3 == 0 {
            out.push(thousands);
        }
        out.push(ch);
    }
    if digits > 0 {
        out.push(decimal);
        out.push_str(&format!("{frac:0width$}", width = digits as usize));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: &str) -> Currency {
        Currency::new(code).unwrap()
    }

    #[test]
    fn amounts_read_naturally() {
        assert_eq!(format_money(12345, c("eur")), "€123.45");
        assert_eq!(format_money(120000, c("usd")), "$1,200.00");
        assert_eq!(format_money(5, c("gbp")), "£0.05");
        assert_eq!(format_money(1200, c("jpy")), "¥1,200");
        assert_eq!(format_money(1250, c("chf")), "CHF 12.50");
        assert_eq!(format_money(1234567, c("kwd")), "KWD 1,234.567");
        assert_eq!(format_money(-500, c("eur")), "-€5.00");
        assert_eq!(format_money(123456789012, c("usd")), "$1,234,567,890.12");
    }
}
