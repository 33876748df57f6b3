//! The page's languages: one TOML file per language in `templates/i18n/`
//! (embedded at build time; adding a file adds a language), chosen from the
//! account's own language or `Accept-Language`.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

use crate::money::group_thousands;
use crate::state::Currency;

include!(concat!(env!("OUT_DIR"), "/i18n.rs"));


/// A translation file that is not usable (embedded at build time, so this
/// is a packaging error, reported at start-up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LanguageError(pub String);

/// The language every other one is checked against, and the fallback.
pub(crate) const DEFAULT_LANGUAGE: &str = "en";

/// One language: its messages and how it writes dates and money.
#[derive(Debug, Clone, Deserialize)]
pub struct Language {
    lang: String,
    date: String,
    months: [String; 12],
    decimal: String,
    group: String,
    currency_after: bool,
    #[serde(flatten)]
    messages: BTreeMap<String, String>,
}

impl Language {
    /// The BCP 47 code (`"de"`), as used in `<html lang>`.
    pub fn code(&self) -> &str {
        &self.lang
    }

    /// The message `key` with `{name}` placeholders filled in.
    pub fn text(&self, key: &str, vars: &[(&str, &str)]) -> String {
        let mut s = self.messages.get(key).cloned().unwrap_or_default();
        for (name, value) in vars {
            s = s.replace(&format!("{{{name}}}"), value);
        }
        s
    }

    /// A date the way this language writes it (`3 November 2026`,
    /// `3. November 2026`, `2026. gada 3. novembris`).
    pub fn date(&self, t: DateTime<Utc>) -> String {
        let month = &self.months[t.month0() as usize];
        self.date
            .replace("{day}", &t.day().to_string())
            .replace("{month}", month)
            .replace("{year}", &t.year().to_string())
    }

    /// Money the way this language writes it: `€123.45` in English,
    /// `123,45 €` in German, `1 234,56 €` in French.
    pub fn money(&self, amount: i64, currency: Currency) -> String {
        if !self.currency_after {
            return crate::money::format_money(amount, currency);
        }
        let decimal = self.decimal.chars().next().unwrap_or(',');
        let group = self.group.chars().next().unwrap_or('.');
        let number = group_thousands(amount.unsigned_abs(), currency.minor_digits(), group, decimal);
        let sign = if amount < 0 { "-" } else { "" };
        let unit = crate::money::symbol(currency).map_or_else(|| currency.as_str().to_ascii_uppercase(), str::to_owned);
        format!("{sign}{number}\u{a0}{unit}")
    }
}

/// Every language the page speaks.
#[derive(Debug, Clone)]
pub struct Languages {
    all: Vec<Language>,
}

impl Languages {
    /// The built-in languages. Refuses a file that misses a key English has,
    /// so a half-translated page can never ship.
    pub fn builtin() -> Result<Self, LanguageError> {
        let mut all = Vec::new();
        for (file, text) in BUILTIN {
            let lang: Language = serde_json::from_str(text).map_err(|e| LanguageError(format!("templates/i18n/{file}.toml: {e}")))?;
            if lang.lang != *file {
                return Err(LanguageError(format!("templates/i18n/{file}.toml says lang = {:?}", lang.lang)));
            }
            all.push(lang);
        }
        let english = all.iter().position(|l| l.lang == DEFAULT_LANGUAGE).ok_or_else(|| LanguageError("templates/i18n/en.toml is missing".into()))?;
        all.swap(0, english);
        for lang in &all[1..] {
            if let Some(missing) = all[0].messages.keys().find(|k| !lang.messages.contains_key(*k)) {
                return Err(LanguageError(format!("templates/i18n/{}.toml lacks the key {missing:?}", lang.lang)));
            }
        }
        Ok(Self { all })
    }

    /// The codes of every language, English first.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.all.iter().map(|l| l.code())
    }

    /// A language by exact code.
    pub fn get(&self, code: &str) -> Option<&Language> {
        self.all.iter().find(|l| l.lang.eq_ignore_ascii_case(code))
    }

    /// The account's own language if it has one we speak, else the best
    /// match for `Accept-Language` (q-values respected, `es-MX` falls back
    /// to `es`), else English.
    pub fn choose(&self, account_language: Option<&str>, accept_language: Option<&str>) -> &Language {
        account_language
            .and_then(|l| self.lookup(l))
            .or_else(|| accept_language.and_then(|h| self.negotiate(h)))
            .unwrap_or(&self.all[0])
    }

    fn lookup(&self, tag: &str) -> Option<&Language> {
        let tag = tag.trim();
        self.get(tag).or_else(|| self.get(tag.split(['-', '_']).next()?))
    }

    fn negotiate(&self, header: &str) -> Option<&Language> {
        let mut best: Option<(u16, usize, &Language)> = None;
        for (position, range) in header.split(',').take(32).enumerate() {
            let mut parts = range.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").map(|v| parse_q(v.trim()).unwrap_or(0)))
                .unwrap_or(1000);
            if q == 0 || tag.is_empty() || tag == "*" {
                continue;
            }
            let Some(lang) = self.lookup(tag) else { continue };
            // Highest q wins; among equals, the earlier range.
            if best.is_none_or(|(bq, bp, _)| q > bq || (q == bq && position < bp)) {
                best = Some((q, position, lang));
            }
        }
        best.map(|(_, _, l)| l)
    }
}

/// Parses a q-value (`1`, `0.8`, `0.125`) into thousandths; invalid → None.
pub(crate) fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_language_has_every_key() {
        let langs = Languages::builtin().unwrap();
        let codes: Vec<_> = langs.codes().collect();
        assert_eq!(codes.len(), 8, "{codes:?}");
        for code in ["en", "es", "it", "el", "ro", "lv", "de", "fr"] {
            assert!(langs.get(code).is_some(), "{code}");
        }
    }

    #[test]
    fn negotiation_respects_q_regions_and_falls_back_to_english() {
        let langs = Languages::builtin().unwrap();
        let pick = |h: &str| langs.choose(None, Some(h)).code().to_owned();
        let table = [
            ("es-MX,es;q=0.9,en;q=0.8", "es"),
            ("es-MX", "es"),
            ("fr-CA,fr;q=0.9", "fr"),
            ("de;q=0.5, it;q=0.8", "it"),
            ("xx, yy;q=0.9", "en"),
            ("ja,de;q=0.1", "de"),
            ("*", "en"),
            ("", "en"),
            ("el;q=0, ro", "ro"),
            ("LV", "lv"),
            ("en-GB,en;q=0.9,de;q=0.8", "en"),
            (";;;,,q=", "en"),
        ];
        for (header, want) in table {
            assert_eq!(pick(header), want, "{header:?}");
        }
        assert_eq!(langs.choose(Some("de-AT"), Some("fr")).code(), "de", "the account's language wins");
        assert_eq!(langs.choose(Some("tlh"), Some("fr")).code(), "fr", "an unknown account language is skipped");
    }

    #[test]
    fn money_and_dates_per_locale() {
        let langs = Languages::builtin().unwrap();
        let eur = Currency::new("eur").unwrap();
        let money = |code: &str, cents| langs.get(code).unwrap().money(cents, eur);
        assert_eq!(money("en", 12345), "€123.45");
        assert_eq!(money("de", 12345), "123,45\u{a0}€");
        assert_eq!(money("fr", 123456), "1 234,56\u{a0}€");
        assert_eq!(money("es", 123456), "1.234,56\u{a0}€");
        assert_eq!(langs.get("it").unwrap().money(500, Currency::new("chf").unwrap()), "5,00\u{a0}CHF");
        let t = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 3, 12, 0, 0).unwrap();
        let date = |code: &str| langs.get(code).unwrap().date(t);
        assert_eq!(date("en"), "3 November 2026");
        assert_eq!(date("de"), "3. November 2026");
        assert_eq!(date("es"), "3 de noviembre de 2026");
        assert_eq!(date("lv"), "2026. gada 3. novembris");
        assert_eq!(date("el"), "3 Νοεμβρίου 2026");
    }
}
