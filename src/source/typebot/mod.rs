//! Typebot's PostgreSQL database (`packages/prisma/postgresql/schema.prisma`), read only.
//!
//! A conversation is a `"Result"`, its bot the result's `"Typebot"`. The visitor's lines are
//! the result's `"AnswerV2"` rows, numbered by a serial id (the watermark), and the legacy
//! `"Answer"` rows of older results. Typebot stores no bot messages: they are rebuilt from the
//! published flow (`flow.rs`), the text bubbles before each input block answered. Fields are the
//! result's `variables`, named as the owner maps them (`source.fields`, `[[bots]] fields`).
//! Completion is `isCompleted`, set in place with no row or time of its own: each run asks it of
//! the conversations still open (`Source::finished_among`), the last answer's time its time.

mod flow;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::fields::Fields;
use super::sql::{Cell, Db, Param};
use super::{Batch, Source, Visit};
use crate::config::Config;
use crate::domain::{Activity, Author, Conversation, END_OF_FLOW, Message, text};
pub use flow::Flow;

// The queries a run makes: each a primary-key lookup, or one through an index on
// "AnswerV2"("resultId") where the database has one (`describe` says when it does not).
const AFTER_SQL: &str = r#"SELECT a.id, a."resultId", a."createdAt", (btrim(a.content) = ''), r.id, r."typebotId", t.id
     FROM "AnswerV2" a LEFT JOIN "Result" r ON r.id = a."resultId" LEFT JOIN "Typebot" t ON t.id = r."typebotId"
     WHERE a.id > ?1 ORDER BY a.id LIMIT ?2"#;
const RESULTS_SQL: &str = r#"SELECT r.id, r."createdAt", r."typebotId", r.variables, r."isCompleted", t.name
     FROM rarray(?1) AS page CROSS JOIN "Result" r ON r.id = page.value LEFT JOIN "Typebot" t ON t.id = r."typebotId""#;
const ANSWERS_SQL: &str = r#"SELECT a.id, a."resultId", a."createdAt", a."blockId", a.content
     FROM rarray(?1) AS page CROSS JOIN "AnswerV2" a ON a."resultId" = page.value ORDER BY a.id"#;
/// Answers Typebot wrote before "AnswerV2": no id, so they come first, as id 0 (never new).
const LEGACY_SQL: &str = r#"SELECT 0, a."resultId", a."createdAt", a."blockId", a.content
     FROM rarray(?1) AS page CROSS JOIN "Answer" a ON a."resultId" = page.value ORDER BY a."createdAt""#;
const FINISHED_SQL: &str =
    r#"SELECT r.id FROM rarray(?1) AS page CROSS JOIN "Result" r ON r.id = page.value WHERE r."isCompleted""#;
const FLOW_SQL: &str = r#"SELECT groups, edges FROM "PublicTypebot" WHERE "typebotId" = ?1"#;
const ANCHOR_SQL: &str = r#"SELECT "resultId", "createdAt" FROM "AnswerV2" WHERE id = ?1"#;
const LAST_SQL: &str = r#"SELECT coalesce(max(id), 0) FROM "AnswerV2""#;
const COUNT_SQL: &str = r#"SELECT count(*) FROM "AnswerV2" WHERE id <= ?1"#;
/// The whole database, one result after another: for the report and a resync.
const EVERYTHING_SQL: &str = r#"SELECT a.id, a."resultId", a."createdAt", a."blockId", a.content,
     r."createdAt", r."typebotId", r.variables, r."isCompleted", t.name
     FROM "AnswerV2" a JOIN "Result" r ON r.id = a."resultId" LEFT JOIN "Typebot" t ON t.id = r."typebotId"
     WHERE a.id <= ?1 ORDER BY a."resultId", a.id"#;
const FLOWS_SQL: &str = r#"SELECT "typebotId", groups, edges FROM "PublicTypebot""#;

/// The queries of a run with parameters of their types (for the query-plan tests).
pub fn queries() -> [(&'static str, Vec<Param>); 8] {
    let ids = || vec![Param::Texts(vec![])];
    [
        (AFTER_SQL, vec![Param::Int(0), Param::Int(0)]),
        (RESULTS_SQL, ids()),
        (ANSWERS_SQL, ids()),
        (FINISHED_SQL, ids()),
        (FLOW_SQL, vec![Param::Text(String::new())]),
        (ANCHOR_SQL, vec![Param::Int(0)]),
        (LAST_SQL, vec![]),
        (COUNT_SQL, vec![Param::Int(0)]),
    ]
}

pub struct Typebot {
    db: Db,
    /// "typebot postgresql://user@host/typebot", without the password.
    name: String,
    fields: Fields,
    /// Published flows by typebot id, read once a run; None where there is none to use.
    flows: RefCell<HashMap<String, Option<Rc<Flow>>>>,
    /// The database has the legacy "Answer" table.
    legacy: bool,
}

/// One answer, as read.
#[derive(Debug, Clone)]
struct Answer {
    id: i64,
    at: DateTime<Utc>,
    block: String,
    content: String,
}

/// A result, as read.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    created_at: Option<DateTime<Utc>>,
    typebot_id: String,
    variables: Option<String>,
    completed: bool,
    bot_name: Option<String>,
}

impl Typebot {
    pub fn open(url: &str, config: &Config) -> Result<Self> {
        let source = config.source.as_ref().context("no source")?;
        let name = format!("typebot {}", super::sql::shown_url(url));
        let db = Db::postgres(url, source.password()?.as_deref()).with_context(|| format!("{name}: connecting"))?;
        let fields = Fields::of(config);
        let mut typebot = Typebot { db, name, fields, flows: RefCell::default(), legacy: false };
        typebot.check_schema()?;
        Ok(typebot)
    }

    /// One line naming the database and what is missing, before any state is touched.
    fn check_schema(&mut self) -> Result<()> {
        let name = self.name.clone();
        for (sql, params) in queries() {
            if let Err(why) = self.db.prepare(sql, &params).with_context(|| name.clone())? {
                bail!(
                    "{name}: not a Typebot database this version reads ({why}); it reads the schema of Typebot \
                     releases that keep answers in \"AnswerV2\" (id, \"createdAt\", \"blockId\", content, \"resultId\"): \
                     upgrade Typebot, whose migrations add them"
                );
            }
        }
        self.legacy = self.db.prepare(LEGACY_SQL, &[Param::Texts(vec![])]).with_context(|| name.clone())?.is_ok();
        Ok(())
    }

    fn answers(&self, sql: &str, ids: &[&str]) -> Result<HashMap<String, Vec<Answer>>> {
        let mut out: HashMap<String, Vec<Answer>> = HashMap::new();
        let ids = Param::Texts(ids.iter().map(|s| (*s).to_owned()).collect());
        self.db
            .each(sql, &[ids], |c| {
                if let Some(answer) = answer(&c[0], &c[2], &c[3], &c[4]) {
                    out.entry(c[1].lossy().unwrap_or_default()).or_default().push(answer);
                }
                Ok(())
            })
            .with_context(|| format!("{}: reading answers", self.name))?;
        Ok(out)
    }

    fn results(&self, ids: &[&str]) -> Result<HashMap<String, Row>> {
        let ids = Param::Texts(ids.iter().map(|s| (*s).to_owned()).collect());
        let rows = self.db.rows(RESULTS_SQL, &[ids]).with_context(|| format!("{}: reading results", self.name))?;
        Ok(rows
            .iter()
            .map(|c| {
                let row = Row {
                    id: c[0].lossy().unwrap_or_default(),
                    created_at: time(&c[1]),
                    typebot_id: c[2].lossy().unwrap_or_default(),
                    variables: c[3].lossy(),
                    completed: c[4].int() == Some(1),
                    bot_name: c[5].lossy(),
                };
                (row.id.clone(), row)
            })
            .collect())
    }

    /// The typebot's published flow, read once a run; a flow that cannot be read is said once
    /// and its transcripts show the visitor's answers with their steps' ids.
    fn flow(&self, typebot_id: &str) -> Result<Option<Rc<Flow>>> {
        if let Some(flow) = self.flows.borrow().get(typebot_id) {
            return Ok(flow.clone());
        }
        let row = self.db.one(FLOW_SQL, &[Param::Text(typebot_id.to_owned())])?;
        let flow = self.parse_flow(typebot_id, row.as_deref().map(|r| (&r[0], &r[1])));
        self.flows.borrow_mut().insert(typebot_id.to_owned(), flow.clone());
        Ok(flow)
    }

    fn parse_flow(&self, typebot_id: &str, row: Option<(&Cell, &Cell)>) -> Option<Rc<Flow>> {
        let shown = text::line(typebot_id);
        let Some((groups, edges)) = row else {
            log::warn!("{}: typebot {shown} has no published flow; its emails show the answers alone", self.name);
            return None;
        };
        match Flow::parse(&groups.lossy().unwrap_or_default(), edges.lossy().as_deref()) {
            Ok(flow) => Some(Rc::new(flow)),
            Err(why) => {
                log::warn!(
                    "{}: the published flow of typebot {shown} has a shape chat-notifier does not know ({}): \
                     its emails show the answers alone",
                    self.name,
                    text::line(&why)
                );
                None
            }
        }
    }

    fn conversation(&self, row: &Row) -> Conversation {
        let variables = variables(row.variables.as_deref()).0;
        let fields: Vec<(String, String)> =
            variables.iter().map(|v| (self.fields.field(&row.typebot_id, &v.name), v.value.clone())).collect();
        let visitor = |field: &str| fields.iter().find(|(n, _)| n == field).map(|(_, v)| v.trim().to_lowercase());
        Conversation {
            id: row.id.clone(),
            bot_id: text::line(&row.typebot_id).into_owned(),
            bot_name: text::line(row.bot_name.as_deref().unwrap_or(&row.typebot_id)).into_owned(),
            // The person is who they said they are: Typebot keeps no visitor id across results.
            visitor_id: text::line(&visitor("email").or_else(|| visitor("phone")).unwrap_or_default()).into_owned(),
            started_at: row.created_at.map(|t| t.fixed_offset()),
            page_url: None,
        }
    }

    /// A result's messages: `transcript`, with what cannot be used said once.
    fn messages(&self, row: &Row, answers: &[Answer], flow: Option<&Flow>, say: bool) -> Vec<Message> {
        let (variables, bad) = variables(row.variables.as_deref());
        if say {
            for why in bad {
                log::warn!("{}: result {}: {why}; skipped", self.name, text::line(&row.id));
            }
        }
        let unknown: Vec<&str> = answers
            .iter()
            .filter(|a| flow.is_some_and(|f| f.before(&a.block).is_none()))
            .map(|a| a.block.as_str())
            .collect();
        if !unknown.is_empty() {
            log::debug!("result {}: steps {unknown:?} are no longer in the published flow", row.id);
        }
        let names = |variable: &str| self.fields.field(&row.typebot_id, variable);
        transcript(&Facts { row, answers, variables: &variables, flow }, &names)
    }
}

/// A variable of a result with a value a field can show.
#[derive(Debug, Clone, PartialEq)]
struct Variable {
    id: String,
    name: String,
    value: String,
}

/// Pure: a result's `variables` ([{id, name, value}]), and why any could not be used.
fn variables(json: Option<&str>) -> (Vec<Variable>, Vec<String>) {
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    let Some(json) = json else { return (out, bad) };
    let list = match serde_json::from_str::<Value>(json) {
        Ok(Value::Array(list)) => list,
        Ok(_) => return (out, vec!["variables is not a list".into()]),
        Err(e) => return (out, vec![format!("variables is not JSON ({e})")]),
    };
    for v in list {
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        let value = match v.get("value") {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => s.clone(),
            Some(n @ (Value::Number(_) | Value::Bool(_))) => n.to_string(),
            Some(other) => {
                let kind = if other.is_array() { "a list" } else { "an object" };
                bad.push(format!("variable {:?} holds {kind}, not a value a field can show", text::line(name)));
                continue;
            }
        };
        let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
        out.push(Variable { id: id.to_owned(), name: text::line(name).into_owned(), value });
    }
    (out, bad)
}

/// What a transcript is made from.
struct Facts<'a> {
    row: &'a Row,
    /// In order: legacy ones first, then by id.
    answers: &'a [Answer],
    variables: &'a [Variable],
    flow: Option<&'a Flow>,
}

/// Pure: a result's messages. Before each answer, the bubbles the bot showed before its input
/// block (at the time of the answer before it: that is when the bot said them); each answer
/// with the field its variable gives; for a completed result, the bubbles after the last answer
/// and the end of the flow; last, the variables no answer gave (set by the flow, or hidden
/// fields of the page), as recorded fields.
fn transcript(facts: &Facts, field: &dyn Fn(&str) -> String) -> Vec<Message> {
    let Facts { row, answers, variables, flow } = *facts;
    let value = |name: &str| variables.iter().find(|v| v.name == name).map(|v| v.value.clone());
    let by_id = |id: &str| variables.iter().find(|v| v.id == id);
    let mut out = Vec::new();
    let mut given = HashSet::new();
    let bot = |id, at, step: &str, said: &str| Message {
        id,
        sent_at: at,
        author: Author::Bot,
        gambit_id: Some(text::line(step).into_owned()),
        input_type: None,
        field: None,
        body: text::body(&flow::fill(said, value)).into_owned(),
    };
    let mut asked_at = row.created_at;
    for a in answers.iter().filter(|a| !a.content.trim().is_empty()) {
        let before = flow.and_then(|f| f.before(&a.block));
        let at = asked_at.unwrap_or(a.at).min(a.at);
        for said in before.iter().flat_map(|b| &b.bubbles) {
            out.push(bot(a.id, at, &a.block, said));
        }
        let variable = before.and_then(|b| b.variable).and_then(by_id);
        if let Some(v) = variable {
            given.insert(v.id.as_str());
        }
        out.push(Message {
            id: a.id,
            sent_at: a.at,
            author: Author::Visitor,
            gambit_id: Some(text::line(&a.block).into_owned()),
            input_type: None,
            field: variable.map(|v| text::line(&field(&v.name)).into_owned()),
            body: text::body(&a.content).into_owned(),
        });
        asked_at = Some(a.at);
    }
    let Some(last) = answers.iter().rfind(|a| !a.content.trim().is_empty()) else { return out };
    // What the bot said after the last answer: the next question, where the visitor stopped,
    // or, the flow done, its closing lines.
    let after = flow.map(|f| f.after(&last.block)).unwrap_or_default();
    let step = after.waits_at.unwrap_or(&last.block);
    for said in &after.bubbles {
        out.push(bot(last.id, last.at, step, said));
    }
    if row.completed {
        out.push(Message {
            input_type: Some(END_OF_FLOW.into()),
            body: String::new(),
            ..bot(last.id, last.at, step, "")
        });
    }
    for v in variables.iter().filter(|v| !given.contains(v.id.as_str())) {
        out.push(Message {
            id: last.id,
            sent_at: last.at,
            author: Author::Field,
            gambit_id: None,
            input_type: None,
            field: Some(text::line(&field(&v.name)).into_owned()),
            body: text::body(&v.value).into_owned(),
        });
    }
    out
}

fn time(cell: &Cell) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&cell.lossy()?).ok().map(|t| t.to_utc())
}

fn answer(id: &Cell, at: &Cell, block: &Cell, content: &Cell) -> Option<Answer> {
    Some(Answer {
        id: id.int()?,
        at: time(at)?,
        block: block.lossy().unwrap_or_default(),
        content: content.lossy().unwrap_or_default(),
    })
}

fn anchor(result: &str, at: Option<DateTime<Utc>>) -> String {
    format!("{result}\u{1f}{}", at.map(|t| t.to_rfc3339()).unwrap_or_default())
}

impl Source for Typebot {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn describe(&self) -> Result<String> {
        let count = |sql: &str| self.db.int(sql, &[]).map(Option::unwrap_or_default);
        let (bots, flows) =
            (count(r#"SELECT count(*) FROM "Typebot""#)?, count(r#"SELECT count(*) FROM "PublicTypebot""#)?);
        let answers = count(r#"SELECT count(*) FROM "AnswerV2""#)?;
        let indexed = self.db.has_index("AnswerV2", "resultId")?;
        let index = if indexed {
            String::new()
        } else {
            // Typebot's own schema has none; each due page of chats then scans the answers.
            "; no index on \"AnswerV2\"(\"resultId\"): transcripts are read by scanning every answer, \
             slow past a few hundred thousand; an index fixes it: CREATE INDEX CONCURRENTLY \
             \"AnswerV2_resultId_idx\" ON \"AnswerV2\" (\"resultId\")"
                .to_owned()
        };
        Ok(format!(
            "{} (Typebot): {bots} typebot(s), {flows} published, {answers} answers{index}",
            self.name.trim_start_matches("typebot ")
        ))
    }

    fn commit_window(&self) -> i64 {
        super::POSTGRES_COMMIT_WINDOW
    }

    fn activity_after(&self, after: i64, limit: usize, skip: &HashSet<i64>) -> Result<Batch> {
        let rows = self
            .db
            .rows(AFTER_SQL, &[Param::Int(after), Param::Int(limit as i64)])
            .with_context(|| format!("{}: reading answers", self.name))?;
        let mut batch = Batch { through: rows.last().and_then(|r| r[0].int()), ..Batch::default() };
        for c in &rows {
            let Some(id) = c[0].int().filter(|id| !skip.contains(id)) else { continue };
            let result = c[1].lossy().unwrap_or_default();
            let at = time(&c[2]);
            batch.rows += 1;
            batch.ids.push((id, id));
            batch.anchor = anchor(&result, at);
            let why = match (&c[4], &c[5], &c[6], at) {
                (Cell::Null, ..) => Some(format!("its result {:?} is not there", text::line(&result))),
                (_, bot, Cell::Null, _) => Some(format!(
                    "its result {:?}'s typebot {:?} is gone",
                    text::line(&result),
                    text::line(&bot.lossy().unwrap_or_default())
                )),
                _ if c[3].int() == Some(1) => Some("an empty answer".to_owned()),
                // PostgreSQL's `infinity`, or a year past what a time here holds.
                (.., None) => Some(match c[2].lossy() {
                    Some(t) => format!("createdAt {:?} is not a time", text::line(&t)),
                    None => "no createdAt".to_owned(),
                }),
                _ => None,
            };
            if let Some(why) = why {
                log::warn!("{}: \"AnswerV2\" row {id} skipped: {why}", self.name);
                continue;
            }
            batch.activity.push(Activity {
                id,
                conversation_id: result,
                sent_at: at.unwrap_or_default(),
                author: Author::Visitor,
                ends: false,
            });
        }
        Ok(batch)
    }

    fn conversations(&self, ids: &[&str]) -> Result<HashMap<String, Conversation>> {
        Ok(self
            .results(ids)?
            .values()
            .filter(|r| r.bot_name.is_some())
            .map(|r| (r.id.clone(), self.conversation(r)))
            .collect())
    }

    fn transcripts(&self, wanted: &[(&str, i64)], f: &mut dyn FnMut(&str, Message)) -> Result<()> {
        let ids: Vec<&str> = wanted.iter().map(|(id, _)| *id).collect();
        let results = self.results(&ids)?;
        let mut answers = self.answers(ANSWERS_SQL, &ids)?;
        let mut legacy = if self.legacy { self.answers(LEGACY_SQL, &ids)? } else { HashMap::new() };
        for (id, through) in wanted {
            let Some(row) = results.get(*id) else { continue };
            let mut all = legacy.remove(*id).unwrap_or_default();
            all.extend(answers.remove(*id).unwrap_or_default().into_iter().filter(|a| a.id <= *through));
            let flow = self.flow(&row.typebot_id)?;
            self.messages(row, &all, flow.as_deref(), true).into_iter().for_each(|m| f(id, m));
        }
        Ok(())
    }

    fn finishes_in_place(&self) -> bool {
        true
    }

    fn finished_among(&self, open: &[&str]) -> Result<Vec<String>> {
        let ids = Param::Texts(open.iter().map(|s| (*s).to_owned()).collect());
        let rows = self.db.rows(FINISHED_SQL, &[ids]).with_context(|| format!("{}: reading results", self.name))?;
        Ok(rows.iter().filter_map(|r| r[0].lossy()).collect())
    }

    fn last_message_id(&self) -> Result<i64> {
        Ok(self.db.int(LAST_SQL, &[]).with_context(|| format!("{}: reading answers", self.name))?.unwrap_or(0))
    }

    fn anchor_at(&self, id: i64) -> Result<Option<String>> {
        let row =
            self.db.one(ANCHOR_SQL, &[Param::Int(id)]).with_context(|| format!("{}: reading answers", self.name))?;
        Ok(row.map(|r| anchor(&r[0].lossy().unwrap_or_default(), time(&r[1]))))
    }

    fn count_through(&self, id: i64) -> Result<i64> {
        Ok(self
            .db
            .int(COUNT_SQL, &[Param::Int(id)])
            .with_context(|| format!("{}: counting answers", self.name))?
            .unwrap_or(0))
    }

    fn about_how_many_conversations(&self) -> u64 {
        0
    }

    fn each_conversation(&self, through: i64, f: &mut Visit) -> Result<i64> {
        // Every flow first: the connection reads one query at a time.
        let flows: Vec<Vec<Cell>> = self.db.rows(FLOWS_SQL, &[])?;
        let flows: HashMap<String, Option<Rc<Flow>>> = flows
            .iter()
            .map(|r| {
                let id = r[0].lossy().unwrap_or_default();
                let flow = self.parse_flow(&id, Some((&r[1], &r[2])));
                (id, flow)
            })
            .collect();
        let mut read = 0;
        let mut current: Option<(Row, Vec<Answer>)> = None;
        let mut flush = |current: Option<(Row, Vec<Answer>)>| -> Result<()> {
            let Some((row, answers)) = current else { return Ok(()) };
            if row.bot_name.is_none() {
                return Ok(());
            }
            let flow = flows.get(&row.typebot_id).cloned().flatten();
            let messages = self.messages(&row, &answers, flow.as_deref(), false);
            f(&row.id, Some(&self.conversation(&row)), &messages)
        };
        self.db
            .each(EVERYTHING_SQL, &[Param::Int(through)], |c| {
                read += 1;
                let result = c[1].lossy().unwrap_or_default();
                if current.as_ref().is_none_or(|(row, _)| row.id != result) {
                    flush(current.take())?;
                    let row = Row {
                        id: result,
                        created_at: time(&c[5]),
                        typebot_id: c[6].lossy().unwrap_or_default(),
                        variables: c[7].lossy(),
                        completed: c[8].int() == Some(1),
                        bot_name: c[9].lossy(),
                    };
                    current = Some((row, Vec::new()));
                }
                if let (Some((_, answers)), Some(a)) = (current.as_mut(), answer(&c[0], &c[2], &c[3], &c[4])) {
                    answers.push(a);
                }
                Ok(())
            })
            .with_context(|| format!("{}: reading answers", self.name))?;
        flush(current)?;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + minute * 60, 0).unwrap()
    }

    fn fields(source: &[(&str, &str)]) -> Fields {
        let map = source.iter().map(|(f, v)| ((*f).to_owned(), (*v).to_owned())).collect();
        Fields { source: map, bots: HashMap::new() }
    }

    #[test]
    fn variables_name_fields_as_the_owner_maps_them() {
        let f = fields(&[("phone", "Mobile")]);
        assert_eq!(f.field("b", "Email"), "email", "by name, in any case");
        assert_eq!(f.field("b", "mobile"), "phone", "mapped");
        assert_eq!(f.field("b", "Phone"), "Phone", "phone is another variable here");
        assert_eq!(f.field("b", "Company"), "Company");
        let (vars, bad) = variables(Some(
            r#"[{"id":"v1","name":"Email","value":"a@b.co"},{"id":"v2","name":"Age","value":42},
                {"id":"v3","name":"Tags","value":["x"]},{"id":"v4","name":"Empty","value":null}]"#,
        ));
        assert_eq!(vars.iter().map(|v| v.value.as_str()).collect::<Vec<_>>(), ["a@b.co", "42"]);
        assert_eq!(bad, ["variable \"Tags\" holds a list, not a value a field can show"]);
        assert_eq!(variables(Some("{}")).1, ["variables is not a list"]);
    }

    #[test]
    fn a_transcript_is_the_flow_s_bubbles_around_the_answers() {
        let groups = serde_json::json!([{"id": "g", "blocks": [
            {"id": "b1", "type": "text", "content": {"richText": [{"type": "p", "children": [{"text": "Your name?"}]}]}},
            {"id": "i1", "type": "text input", "options": {"variableId": "v1"}},
            {"id": "b2", "type": "text", "content": {"richText": [{"type": "p", "children": [{"text": "Thanks {{Name}}!"}]}]}}
        ]}]);
        let flow = Flow::parse(&groups.to_string(), None).unwrap();
        let row = Row {
            id: "r".into(),
            created_at: Some(at(0)),
            typebot_id: "t".into(),
            variables: None,
            completed: true,
            bot_name: Some("Lead".into()),
        };
        let answers = [Answer { id: 7, at: at(2), block: "i1".into(), content: "Jane".into() }];
        let variables = [
            Variable { id: "v1".into(), name: "Name".into(), value: "Jane".into() },
            Variable { id: "v9".into(), name: "utm_source".into(), value: "ads".into() },
        ];
        let m = transcript(&Facts { row: &row, answers: &answers, variables: &variables, flow: Some(&flow) }, &|v| {
            v.to_lowercase()
        });
        let lines: Vec<(Author, &str, Option<&str>)> =
            m.iter().map(|m| (m.author, m.body.as_str(), m.field.as_deref())).collect();
        assert_eq!(
            lines,
            [
                (Author::Bot, "Your name?", None),
                (Author::Visitor, "Jane", Some("name")),
                (Author::Bot, "Thanks Jane!", None),
                (Author::Bot, "", None),
                (Author::Field, "ads", Some("utm_source")),
            ]
        );
        assert_eq!((m[0].sent_at, m[1].sent_at), (at(0), at(2)), "the bot asked when the chat began");
        assert!(m[3].ends_flow() && !m[2].ends_flow());
        assert_eq!(m[0].gambit_id.as_deref(), Some("i1"), "the step is the input block");
        let open = Row { completed: false, ..row.clone() };
        let m =
            transcript(&Facts { row: &open, answers: &answers, variables: &[], flow: Some(&flow) }, &|v| v.to_owned());
        assert!(!m.iter().any(Message::ends_flow), "not completed: no end");
        let m = transcript(&Facts { row: &open, answers: &answers, variables: &[], flow: None }, &|v| v.to_owned());
        assert_eq!(m.len(), 1, "no flow: the answers alone");
    }
}
