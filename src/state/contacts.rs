//! Who to write to: contacts by role, and what a contact (or any text shown to a person) may be.

use serde::{Deserialize, Serialize};

/// A person to write to about an account besides its billing contact
/// (the invoice's `customer_email`, [`BillingState::contact_email`](super::BillingState::contact_email)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactRole {
    /// The customer's accountant.
    Accountant,
    /// The operator's own staff member for this customer.
    AccountManager,
}

impl ContactRole {
    /// Every role.
    pub const ALL: [ContactRole; 2] = [ContactRole::Accountant, ContactRole::AccountManager];

    /// The name used in the API, config keys and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactRole::Accountant => "accountant",
            ContactRole::AccountManager => "account_manager",
        }
    }
}

/// Whether `email` is a plain e-mail address (`name@example.com`, RFC 5322
/// addr-spec, at most 254 bytes): what a contact may be.
pub fn is_valid_email(email: &str) -> bool {
    email.len() <= 254 && is_plain_text(email) && email_address::EmailAddress::is_valid(email) && !email.contains(['<', '>', ' '])
}

/// Whether `text` is safe to store and print as is: no control characters
/// (a terminal escape sequence in a payload must not reach an operator's
/// terminal) and no bidirectional overrides (which reorder what is shown).
pub fn is_plain_text(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

/// An invoice number as a payload gives it, if it is one: plain text of at
/// most 64 characters (Stripe's are like `ABCD1234-0001`).
pub fn invoice_number(raw: &str) -> Option<String> {
    let raw = raw.trim();
    (!raw.is_empty() && raw.chars().count() <= 64 && is_plain_text(raw)).then(|| raw.to_owned())
}

/// Who set a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactSource {
    /// The admin API or the CLI: wins over Stripe metadata.
    Admin,
    /// A Stripe customer's metadata.
    Stripe,
}

/// A contact and who set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The e-mail address.
    pub email: String,
    /// Who set it.
    pub source: ContactSource,
}

/// A setting about how to reach an account (its time zone, its billing
/// phone) and who set it: one an admin set wins over Stripe's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sourced {
    /// The value.
    pub value: String,
    /// Who set it.
    pub source: ContactSource,
}

impl super::BillingState {
    /// Who hears about the account and how to reach them, as the audit
    /// log records a change to it: contacts by role, `timezone`,
    /// `billing_phone`, each with who set it.
    pub fn reach(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self.contacts()).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            if let Some(z) = self.timezone() {
                map.insert("timezone".into(), serde_json::to_value(z).unwrap_or_default());
            }
            if let Some(p) = self.billing_phone() {
                map.insert("billing_phone".into(), serde_json::to_value(p).unwrap_or_default());
            }
        }
        v
    }
}

/// Whether `phone` is an E.164 number: `+`, a country code and the
/// number, 7 to 15 digits in all (`+37120000000`; Niue's `+6834002`).
pub fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else { return false };
    (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// The notice channel of internal summaries to the account manager: never
/// shown to the customer.
pub const INTERNAL_CHANNEL: &str = "email:account_manager";

/// Whether notices on `channel` are for your team, not the customer: the
/// account manager's e-mail and the chat channels (`chat`, `chat:1`, …).
/// The page and the customer's e-mails never list them.
pub fn is_internal(channel: &str) -> bool {
    channel == INTERNAL_CHANNEL || channel == "chat" || channel.starts_with("chat:")
}
