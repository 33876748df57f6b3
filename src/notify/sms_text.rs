//! What fits in a text message: the GSM 03.38 alphabet, segment counts,
//! and folding a text that would not fit two segments into that alphabet.
//! Pure.
//!
//! A message in GSM-7 carries 160 characters (153 per segment once split);
//! one with any other character goes as UCS-2, 70 (67 per segment). A pay
//! link alone is some 90 characters, so a Greek, Latvian or Romanian
//! message in its own letters needs three or four segments. Such a message
//! is folded instead, the way SMS in those languages are commonly written:
//! accents dropped (`ā` → `a`, `ș` → `s`), Greek in capitals, whose letters
//! GSM-7 has or shares with Latin (`Π`, `Λ`; `Α` → `A`).

use unicode_normalization::UnicodeNormalization;

/// GSM 03.38's basic character set (the escape character aside).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Its extension table: each takes two septets.
const EXTENSION: &str = "^{}\\[~]|€\u{c}";

/// The most segments a message may take.
pub(crate) const MAX_SEGMENTS: usize = 2;

fn is_gsm(c: char) -> bool {
    BASIC.contains(c) || EXTENSION.contains(c)
}

/// How many segments `text` takes. Split messages carry 153 septets (GSM-7)
/// or 67 UTF-16 units (UCS-2) each, and a character is never split across
/// two: an extension character's two septets, or a surrogate pair, start a
/// new segment when they do not fit.
pub(crate) fn segments(text: &str) -> usize {
    let (single, split, width): (usize, usize, fn(char) -> usize) = if text.chars().all(is_gsm) {
        (160, 153, |c| if EXTENSION.contains(c) { 2 } else { 1 })
    } else {
        (70, 67, char::len_utf16)
    };
    let total: usize = text.chars().map(width).sum();
    if total <= single {
        return 1;
    }
    let (mut count, mut used) = (1, 0);
    for w in text.chars().map(width) {
        if used + w > split {
            count += 1;
            used = 0;
        }
        used += w;
    }
    count
}

/// `text` as sent: as written when it fits [`MAX_SEGMENTS`], else folded
/// into GSM-7.
pub(crate) fn fit(text: &str) -> String {
    if segments(text) <= MAX_SEGMENTS {
        return text.to_owned();
    }
    text.chars().map(fold).collect()
}

/// One character in GSM-7: itself, a plain equivalent, or `?`.
fn fold(c: char) -> String {
    if is_gsm(c) {
        return c.to_string();
    }
    match c {
        '‘' | '’' | '`' | '´' => return "'".into(),
        '“' | '”' | '„' | '«' | '»' => return "\"".into(),
        '–' | '—' | '‐' => return "-".into(),
        '…' => return "...".into(),
        '\u{a0}' | '\u{202f}' | '\u{2009}' | '\t' => return " ".into(),
        '·' | '\u{387}' => return ",".into(),
        '\u{37e}' => return "?".into(), // the Greek question mark
        _ => {}
    }
    let greek = ('\u{370}'..='\u{3ff}').contains(&c) || ('\u{1f00}'..='\u{1fff}').contains(&c);
    let base: String = if greek { c.to_uppercase().collect() } else { c.to_string() };
    base.nfd()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .map(|c| match c {
            'Α' => 'A',
            'Β' => 'B',
            'Ε' => 'E',
            'Ζ' => 'Z',
            'Η' => 'H',
            'Ι' => 'I',
            'Κ' => 'K',
            'Μ' => 'M',
            'Ν' => 'N',
            'Ο' => 'O',
            'Ρ' => 'P',
            'Τ' => 'T',
            'Υ' => 'Y',
            'Χ' => 'X',
            'ς' => 'Σ',
            c if is_gsm(c) => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_segments_as_carriers_do() {
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
        // € takes two septets.
        assert_eq!(segments(&"€".repeat(80)), 1);
        assert_eq!(segments(&"€".repeat(81)), 2);
        // One character outside GSM-7: UCS-2.
        assert_eq!(segments(&format!("ā{}", "a".repeat(69))), 1);
        assert_eq!(segments(&format!("ā{}", "a".repeat(70))), 2);
        assert_eq!(segments(&format!("ā{}", "a".repeat(134))), 3);
        // A character is never split across two segments.
        assert_eq!(segments(&format!("{}€{}", "a".repeat(152), "a".repeat(152))), 3, "€ would straddle the first boundary");
        assert_eq!(segments(&format!("{}€{}", "a".repeat(151), "a".repeat(151))), 2);
        assert_eq!(segments(&format!("ā{}😀{}", "a".repeat(65), "a".repeat(66))), 3, "a surrogate pair moves to the next segment");
    }

    #[test]
    fn folds_only_what_does_not_fit() {
        // Short: as written.
        assert_eq!(fit("Jau samaksājāt?"), "Jau samaksājāt?");
        let long = format!("Jau samaksājāt? Lūdzu, ignorējiet šo ziņu. {}", "x".repeat(120));
        let folded = fit(&long);
        assert!(folded.starts_with("Jau samaksajat? Ludzu, ignorejiet so zinu. "), "{folded}");
        assert!(segments(&folded) <= MAX_SEGMENTS);
        // Greek in capitals; ς is Σ; GSM-7's own letters stay (é, ü, ñ).
        let greek = format!("Έχετε ήδη πληρώσει; Αγνοήστε {}", "x".repeat(120));
        assert!(fit(&greek).starts_with("EXETE HΔH ΠΛHPΩΣEI; AΓNOHΣTE "), "{}", fit(&greek));
        let ro = format!("Ați plătit deja? încă — café, Müller, niño {}", "x".repeat(130));
        assert!(fit(&ro).starts_with("Ati platit deja? inca - café, Müller, niño "), "{}", fit(&ro));
    }
}
