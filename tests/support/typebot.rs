//! A Typebot PostgreSQL database written the way Typebot writes one: the tables chat-notifier
//! reads with the column definitions of Typebot's Prisma migrations
//! (`packages/prisma/postgresql`), a published lead flow as the editor saves it (groups of
//! blocks, text bubbles in the editor's rich text, inputs saving to variables, edges), and
//! results as the engine writes them (`upsertResult`, `saveAnswer`): a result row when the
//! chat starts, one "AnswerV2" row per answer with the result's variables updated, and
//! `isCompleted` flipped in place when the flow has nothing left to ask.
//! Shared by the tests and by `examples/typebot_db.rs`, which builds the demo database.
#![allow(dead_code)]

use serde_json::{Value, json};

/// The tables as Typebot's migrations create them (the workspace and its other tables, which
/// chat-notifier never reads, left out).
pub const SCHEMA: &str = r#"
CREATE TABLE "Typebot" (
    "id" TEXT NOT NULL, "version" TEXT, "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "icon" TEXT, "name" TEXT NOT NULL,
    "folderId" TEXT, "groups" JSONB NOT NULL, "events" JSONB, "variables" JSONB NOT NULL, "edges" JSONB NOT NULL,
    "theme" JSONB NOT NULL, "selectedThemeTemplateId" TEXT, "settings" JSONB NOT NULL, "publicId" TEXT,
    "customDomain" TEXT, "workspaceId" TEXT NOT NULL, "resultsTablePreferences" JSONB,
    "isArchived" BOOLEAN NOT NULL DEFAULT false, "isClosed" BOOLEAN NOT NULL DEFAULT false,
    "whatsAppCredentialsId" TEXT, "riskLevel" INTEGER,
    CONSTRAINT "Typebot_pkey" PRIMARY KEY ("id"));
CREATE TABLE "PublicTypebot" (
    "id" TEXT NOT NULL, "version" TEXT, "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "typebotId" TEXT NOT NULL,
    "groups" JSONB NOT NULL, "events" JSONB, "variables" JSONB NOT NULL, "edges" JSONB NOT NULL,
    "theme" JSONB NOT NULL, "settings" JSONB NOT NULL,
    CONSTRAINT "PublicTypebot_pkey" PRIMARY KEY ("id"));
CREATE TABLE "Result" (
    "id" TEXT NOT NULL, "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "typebotId" TEXT NOT NULL,
    "variables" JSONB NOT NULL, "isCompleted" BOOLEAN NOT NULL, "hasStarted" BOOLEAN,
    "isArchived" BOOLEAN DEFAULT false, "lastChatSessionId" TEXT,
    CONSTRAINT "Result_pkey" PRIMARY KEY ("id"));
CREATE TABLE "Answer" (
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "resultId" TEXT NOT NULL, "blockId" TEXT NOT NULL,
    "groupId" TEXT NOT NULL, "variableId" TEXT, "content" TEXT NOT NULL);
CREATE TABLE "AnswerV2" (
    "id" SERIAL NOT NULL, "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "blockId" TEXT NOT NULL,
    "content" TEXT NOT NULL, "attachedFileUrls" JSONB, "resultId" TEXT NOT NULL,
    CONSTRAINT "AnswerV2_pkey" PRIMARY KEY ("id"));
CREATE UNIQUE INDEX "PublicTypebot_typebotId_key" ON "PublicTypebot"("typebotId");
CREATE INDEX "Result_typebotId_hasStarted_createdAt_idx" ON "Result"("typebotId", "hasStarted", "createdAt" DESC);
CREATE INDEX "Result_typebotId_isCompleted_idx" ON "Result"("typebotId", "isCompleted");
CREATE UNIQUE INDEX "Answer_resultId_blockId_groupId_key" ON "Answer"("resultId", "blockId", "groupId");
CREATE INDEX "AnswerV2_blockId_idx" ON "AnswerV2"("blockId");
ALTER TABLE "PublicTypebot" ADD CONSTRAINT "PublicTypebot_typebotId_fkey" FOREIGN KEY ("typebotId")
    REFERENCES "Typebot"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "Result" ADD CONSTRAINT "Result_typebotId_fkey" FOREIGN KEY ("typebotId")
    REFERENCES "Typebot"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "AnswerV2" ADD CONSTRAINT "AnswerV2_resultId_fkey" FOREIGN KEY ("resultId")
    REFERENCES "Result"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "Answer" ADD CONSTRAINT "Answer_resultId_fkey" FOREIGN KEY ("resultId")
    REFERENCES "Result"("id") ON DELETE CASCADE ON UPDATE CASCADE;
"#;

/// The index chat-notifier's README recommends: Typebot's schema has none on "resultId".
pub const RESULT_INDEX: &str = r#"CREATE INDEX "AnswerV2_resultId_idx" ON "AnswerV2" ("resultId")"#;

/// The lead bot's id, as Typebot makes them (cuid).
pub const LEAD_BOT: &str = "clx1leadb0t000000000000a";

/// What the lead flow's bubbles say, in order, as a transcript shows them.
pub const WELCOME: &str = "Hi! I'm the Acme assistant.";
pub const ASK_NAME: &str = "What's your name?";
pub const ASK_EMAIL: &str = "Nice to meet you, {{Name}}! What's your email?";
pub const ASK_PHONE: &str = "And a phone number to reach you?";
pub const CLOSING: &str = "Thanks! Someone from Acme will call you today.";

fn bubble(id: &str, text: &str) -> Value {
    json!({"id": id, "type": "text", "content": {"richText": [{"type": "p", "children": [{"text": text}]}]}})
}

/// The published lead flow (Typebot 6's shape): a start event, a group with a welcome bubble,
/// name, email and phone inputs, and an edge to a closing group.
pub fn lead_flow() -> (Value, Value, Value, Value) {
    let groups = json!([
        {"id": "g_lead", "title": "Lead", "graphCoordinates": {"x": 0, "y": 0}, "blocks": [
            bubble("b_welcome", WELCOME),
            bubble("b_ask_name", ASK_NAME),
            {"id": "i_name", "type": "text input", "options": {"variableId": "v_name", "labels": {"placeholder": "Type your name..."}}},
            {"id": "b_ask_email", "type": "text", "content": {"richText": [{"type": "p", "children": [
                {"text": "Nice to meet you, "}, {"text": "{{Name}}", "bold": true}, {"text": "! What's your email?"}]}]}},
            {"id": "i_email", "type": "email input", "options": {"variableId": "v_email"}},
            bubble("b_ask_phone", ASK_PHONE),
            {"id": "i_phone", "type": "phone number input", "options": {"variableId": "v_phone", "defaultCountryCode": "US"},
             "outgoingEdgeId": "e_done"}
        ]},
        {"id": "g_done", "title": "Done", "graphCoordinates": {"x": 400, "y": 0}, "blocks": [
            bubble("b_closing", CLOSING)
        ]}
    ]);
    let edges = json!([
        {"id": "e_start", "from": {"eventId": "ev_start"}, "to": {"groupId": "g_lead"}},
        {"id": "e_done", "from": {"blockId": "i_phone"}, "to": {"groupId": "g_done"}}
    ]);
    let events =
        json!([{"id": "ev_start", "type": "start", "graphCoordinates": {"x": 0, "y": 0}, "outgoingEdgeId": "e_start"}]);
    let variables = json!([
        {"id": "v_name", "name": "Name", "isSessionVariable": true},
        {"id": "v_email", "name": "Email", "isSessionVariable": true},
        {"id": "v_phone", "name": "Phone", "isSessionVariable": true}
    ]);
    (groups, edges, events, variables)
}

/// Each input of the lead flow: its block and the variable it saves to.
const INPUTS: [(&str, &str, &str); 3] =
    [("i_name", "v_name", "Name"), ("i_email", "v_email", "Email"), ("i_phone", "v_phone", "Phone")];

pub struct TypebotDb {
    pub client: postgres::Client,
}

/// "2026-11-24T09:00:10Z" as Typebot's TIMESTAMP(3) columns hold it: UTC, no zone.
fn stamp(rfc3339: &str) -> chrono::NaiveDateTime {
    chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().naive_utc()
}

impl TypebotDb {
    /// Creates the tables and publishes the lead flow as "Lead Bot".
    pub fn create(mut client: postgres::Client) -> Self {
        client.batch_execute(SCHEMA).unwrap();
        let mut db = TypebotDb { client };
        db.publish(LEAD_BOT, "Lead Bot", &lead_flow().0);
        db
    }

    /// A typebot and its published flow.
    pub fn publish(&mut self, id: &str, name: &str, groups: &Value) {
        let (_, edges, events, variables) = lead_flow();
        self.client
            .execute(
                r#"INSERT INTO "Typebot" (id, version, name, groups, events, variables, edges, theme, settings, "workspaceId")
                   VALUES ($1, '6', $2, $3, $4, $5, $6, '{}', '{}', 'ws_acme')"#,
                &[&id, &name, groups, &events, &variables, &edges],
            )
            .unwrap();
        self.client
            .execute(
                r#"INSERT INTO "PublicTypebot" (id, version, "typebotId", groups, events, variables, edges, theme, settings)
                   VALUES ($1, '6', $2, $3, $4, $5, $6, '{}', '{}')"#,
                &[&format!("pub_{id}"), &id, groups, &events, &variables, &edges],
            )
            .unwrap();
    }

    /// A visitor opens the bot: the engine creates the result before any answer.
    pub fn start(&mut self, result: &str, bot: &str, at: &str) {
        self.client
            .execute(
                r#"INSERT INTO "Result" (id, "createdAt", "typebotId", variables, "isCompleted", "hasStarted")
                   VALUES ($1, $2, $3, '[]', false, false)"#,
                &[&result, &stamp(at), &bot],
            )
            .unwrap();
    }

    /// The visitor answers an input: the answer row, and the result's variables as the engine
    /// saves them (every variable with a value). Returns the answer's id.
    pub fn answer(&mut self, result: &str, block: &str, content: &str, at: &str) -> i32 {
        let id: i32 = self
            .client
            .query_one(
                r#"INSERT INTO "AnswerV2" ("createdAt", "blockId", content, "resultId") VALUES ($1, $2, $3, $4) RETURNING id"#,
                &[&stamp(at), &block, &content, &result],
            )
            .unwrap()
            .get(0);
        if let Some((_, var, name)) = INPUTS.iter().find(|(b, ..)| *b == block) {
            self.set_variable(result, var, name, json!(content));
        }
        self.client.execute(r#"UPDATE "Result" SET "hasStarted" = true WHERE id = $1"#, &[&result]).unwrap();
        id
    }

    /// Sets a variable of a result as the engine saves it (a Set variable block, a hidden field).
    pub fn set_variable(&mut self, result: &str, id: &str, name: &str, value: Value) {
        let row = self.client.query_one(r#"SELECT variables FROM "Result" WHERE id = $1"#, &[&result]).unwrap();
        let mut vars: Vec<Value> = serde_json::from_value(row.get(0)).unwrap();
        vars.retain(|v| v["id"] != id);
        vars.push(json!({"id": id, "name": name, "value": value}));
        self.client
            .execute(r#"UPDATE "Result" SET variables = $2 WHERE id = $1"#, &[&result, &Value::from(vars)])
            .unwrap();
    }

    /// The flow has nothing left to ask: the engine flips the flag in place, no time of its own.
    pub fn complete(&mut self, result: &str) {
        self.client.execute(r#"UPDATE "Result" SET "isCompleted" = true WHERE id = $1"#, &[&result]).unwrap();
    }

    /// Opens the bot at 09:MM, gives name and email, and leaves at the phone question.
    pub fn lead_who_leaves(&mut self, result: &str, name: &str, email: &str, minute: u32) {
        let at = |s: u32| format!("2026-11-24T09:{minute:02}:{s:02}Z");
        self.start(result, LEAD_BOT, &at(0));
        self.answer(result, "i_name", name, &at(10));
        self.answer(result, "i_email", email, &at(20));
    }

    /// Answers the phone question; the flow ends, and the result is completed.
    pub fn finishes(&mut self, result: &str, phone: &str, at: &str) {
        self.answer(result, "i_phone", phone, at);
        self.complete(result);
    }
}
