//! Who hears about which stage: `[[notify.routes]]`, or the defaults.

use super::*;

/// Who hears about a stage by e-mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Recipient {
    /// The invoice's e-mail address ([`BillingState::contact_email`]).
    Billing,
    /// A contact by role.
    Contact(ContactRole),
}

impl Recipient {
    pub(super) fn parse(name: &str) -> Option<Self> {
        match name {
            "billing" => Some(Recipient::Billing),
            "accountant" => Some(Recipient::Contact(ContactRole::Accountant)),
            "account_manager" => Some(Recipient::Contact(ContactRole::AccountManager)),
            _ => None,
        }
    }

    /// The notice channel it is recorded (and counted) under.
    pub(super) fn channel(self) -> &'static str {
        match self {
            Recipient::Billing => EMAIL,
            Recipient::Contact(ContactRole::Accountant) => EMAIL_ACCOUNTANT,
            Recipient::Contact(ContactRole::AccountManager) => INTERNAL_CHANNEL,
        }
    }

    pub(super) fn address(self, state: &BillingState) -> Option<&str> {
        match self {
            Recipient::Billing => state.contact_email(),
            Recipient::Contact(role) => state.contact(role),
        }
    }

    /// The account manager is the operator's own staff: an internal
    /// summary, not the customer's message.
    pub(super) fn internal(self) -> bool {
        self == Recipient::Contact(ContactRole::AccountManager)
    }
}

/// Stage name → who hears it by e-mail, from `[[notify.routes]]` or the
/// defaults: billing for every stage; the account manager from the first
/// `warn` (or harsher) stage or 7 days late, whichever the ladder reaches
/// first; the accountant on `block` stages.
pub(super) fn routes(config: &NotifyConfig, policy: &Policy) -> Result<HashMap<String, Vec<Recipient>>, ConfigError> {
    let key = |key: String, message: String| ConfigError::key(key, message);
    let mut routes = HashMap::new();
    let stages = policy.stages();
    if config.routes.is_empty() {
        let late = Duration::from_secs(7 * 86_400);
        // Per ladder (a stage name two ladders share keeps the first's).
        for (_, ladder) in policy.ladders() {
            let mut manager = false;
            for stage in ladder.stages() {
                let block = matches!(stage.action(), Action::Block);
                manager |= matches!(stage.action(), Action::Warn | Action::ReadOnly | Action::Block) || stage.after() >= late;
                let mut who = vec![Recipient::Billing];
                if block {
                    who.push(Recipient::Contact(ContactRole::Accountant));
                }
                if manager {
                    who.push(Recipient::Contact(ContactRole::AccountManager));
                }
                routes.entry(stage.name().to_owned()).or_insert(who);
            }
        }
        return Ok(routes);
    }
    for (i, route) in config.routes.iter().enumerate() {
        if stages.iter().all(|s| s.name() != route.stage) {
            let names = policy.stage_names();
            return Err(key(format!("notify.routes[{i}].stage"), format!("{:?} is not a stage of any ladder ({})", route.stage, names.join(", "))));
        }
        let mut who = Vec::new();
        for role in &route.roles {
            let r = Recipient::parse(role)
                .ok_or_else(|| key(format!("notify.routes[{i}].roles"), format!("{role:?} is not one of billing, accountant, account_manager")))?;
            if !who.contains(&r) {
                who.push(r);
            }
        }
        if routes.insert(route.stage.clone(), who).is_some() {
            return Err(key(format!("notify.routes[{i}].stage"), format!("{:?} is routed twice", route.stage)));
        }
    }
    for stage in &stages {
        routes.entry(stage.name().to_owned()).or_insert_with(|| vec![Recipient::Billing]);
    }
    Ok(routes)
}
