//! Which field (name, email, phone) a store's variable gives, as the owner maps them
//! (`source.fields`, `[[bots]] fields`): Typebot's variables, Dify's start form and conversation
//! variables.

use std::collections::{BTreeMap, HashMap};

use crate::config::{Config, MAPPED_FIELDS};

/// Which field each variable gives: the owner's mapping, per bot over the source's, else the
/// variable named like the field in any case (`Email` gives `email`), else the variable's name.
pub struct Fields {
    pub source: BTreeMap<String, String>,
    pub bots: HashMap<String, BTreeMap<String, String>>,
}

impl Fields {
    /// The source's mapping and each bot's own, as the config gives them.
    pub fn of(config: &Config) -> Fields {
        let bots = config.bots.iter().filter(|b| !b.fields.is_empty()).map(|b| (b.id.clone(), b.fields.clone()));
        Fields { source: config.source.as_ref().map(|s| s.fields.clone()).unwrap_or_default(), bots: bots.collect() }
    }

    /// The field the variable `variable` of bot `bot` gives.
    pub fn field(&self, bot: &str, variable: &str) -> String {
        let mapped = |map: &BTreeMap<String, String>| {
            map.iter().find(|(_, v)| v.trim().eq_ignore_ascii_case(variable.trim())).map(|(f, _)| f.clone())
        };
        let map = self.bots.get(bot);
        if let Some(field) = map.and_then(mapped).or_else(|| mapped(&self.source)) {
            return field;
        }
        let taken = |field: &str| map.is_some_and(|m| m.contains_key(field)) || self.source.contains_key(field);
        match MAPPED_FIELDS.iter().find(|f| f.eq_ignore_ascii_case(variable.trim())) {
            Some(field) if !taken(field) => (*field).to_owned(),
            _ => variable.to_owned(),
        }
    }
}
