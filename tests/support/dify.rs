//! A Dify PostgreSQL database written the way Dify writes one: the tables chat-notifier reads as
//! Dify's models declare them (`tests/fixtures/dify/schema.sql`, its README says from where),
//! and rows as its API writes them: `_init_generate_records` (the conversation on the first
//! message, the message with an empty answer, committed), then `_save_message` when the reply
//! ends (the answer and `updated_at`, committed), or an error. Times are given as the database's
//! default (`CURRENT_TIMESTAMP(0)`, UTC) or `naive_utc_now()` would have stamped them, so the
//! tests' clock is fixed. Shared by the tests and `examples/dify_db.rs` (the demo's database).
#![allow(dead_code)]

pub const SCHEMA: &str = include_str!("../fixtures/dify/schema.sql");

pub const TENANT: &str = "5e1f0000-0000-4000-8000-000000000001";
/// A chat app ("Support Bot", mode `chat`).
pub const CHAT_APP: &str = "a1a10000-0000-4000-8000-000000000001";
/// A chatflow app ("Lead Flow", mode `advanced-chat`) with a start form and a conversation variable.
pub const FLOW_APP: &str = "a1a10000-0000-4000-8000-000000000002";

pub struct DifyDb {
    pub client: postgres::Client,
}

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn opt(s: Option<&str>) -> String {
    s.map_or_else(|| "NULL".to_owned(), q)
}

/// A visitor's message as the web app or the API sends it.
pub struct Ask<'a> {
    pub message: &'a str,
    pub conversation: &'a str,
    pub app: &'a str,
    pub end_user: &'a str,
    pub query: &'a str,
    /// The start form's values (`inputs`), as JSON: the conversation's on its first message.
    pub inputs: &'a str,
    pub invoke_from: &'a str,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub at: &'a str,
}

impl<'a> Ask<'a> {
    pub fn web(message: &'a str, conversation: &'a str, end_user: &'a str, at: &'a str, query: &'a str) -> Self {
        Ask { message, conversation, app: CHAT_APP, end_user, query, inputs: "{}", invoke_from: "web-app", at }
    }
}

impl DifyDb {
    /// The schema and two apps.
    pub fn create(mut client: postgres::Client) -> DifyDb {
        client.batch_execute(SCHEMA).unwrap();
        client
            .batch_execute(&format!(
                "INSERT INTO apps (id, tenant_id, name, mode, enable_site, enable_api) VALUES
                 ('{CHAT_APP}', '{TENANT}', 'Support Bot', 'chat', true, true),
                 ('{FLOW_APP}', '{TENANT}', 'Lead Flow', 'advanced-chat', true, true);"
            ))
            .unwrap();
        DifyDb { client }
    }

    /// An end user as the web app creates one for a browser (`session_id`), or the API for the
    /// `user` the embedding site passes (`external_user_id` = `session_id` = that user).
    pub fn end_user(&mut self, id: &str, app: &str, session: &str, external: Option<&str>) {
        let kind = if external.is_some() { "service_api" } else { "browser" };
        self.client
            .batch_execute(&format!(
                "INSERT INTO end_users (id, tenant_id, app_id, type, external_user_id, is_anonymous, session_id)
                 VALUES ({}, '{TENANT}', {}, '{kind}', {}, {}, {});",
                q(id),
                q(app),
                opt(external),
                external.is_none(),
                q(session)
            ))
            .unwrap();
    }

    /// `_init_generate_records`: the conversation where it is new (named from the query, its
    /// inputs, `status` normal, `from_source` api for the web app and the API), then the message
    /// with an empty answer; one commit. `updated_at` of the conversation moves.
    pub fn ask(&mut self, a: &Ask) {
        let name: String = if a.query.chars().count() > 20 {
            format!("{}…", a.query.chars().take(20).collect::<String>())
        } else {
            a.query.to_owned()
        };
        let (source, user, account) = match a.invoke_from {
            "web-app" | "service-api" => ("api", q(a.end_user), "NULL".to_owned()),
            _ => ("console", "NULL".to_owned(), q(a.end_user)),
        };
        let at = q(a.at);
        self.client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO conversations (id, app_id, mode, name, inputs, introduction, system_instruction, status,
                   invoke_from, from_source, from_end_user_id, from_account_id, created_at, updated_at)
                 SELECT {conv}, {app}, (SELECT mode FROM apps WHERE id = {app}), {name}, {inputs}, '', '', 'normal',
                   {invoke}, '{source}', {user}, {account}, {at}, {at}
                 WHERE NOT EXISTS (SELECT 1 FROM conversations WHERE id = {conv});
                 UPDATE conversations SET updated_at = {at} WHERE id = {conv};
                 INSERT INTO messages (id, app_id, conversation_id, inputs, query, message, message_unit_price, answer,
                   answer_unit_price, provider_response_latency, total_price, currency, invoke_from, from_source,
                   from_end_user_id, from_account_id, created_at, updated_at)
                 VALUES ({id}, {app}, {conv}, {inputs}, {query}, '\"\"', 0, '', 0, 0, 0, 'USD', {invoke}, '{source}',
                   {user}, {account}, {at}, {at});
                 COMMIT;",
                conv = q(a.conversation),
                app = q(a.app),
                name = q(&name),
                inputs = q(a.inputs),
                invoke = q(a.invoke_from),
                id = q(a.message),
                query = q(a.query),
            ))
            .unwrap();
    }

    /// `_save_message` when the reply ends: the answer, `status` normal (it may have been paused),
    /// `updated_at`, the latency; one commit.
    pub fn answer(&mut self, message: &str, at: &str, answer: &str) {
        self.client
            .batch_execute(&format!(
                "UPDATE messages SET answer = {}, status = 'normal', updated_at = {}, message = '[]', answer_tokens = 42,
                   provider_response_latency = extract(epoch FROM CAST({} AS timestamp) - created_at)
                 WHERE id = {};",
                q(answer),
                q(at),
                q(at),
                q(message)
            ))
            .unwrap();
    }

    /// A chatflow paused at a human input node (Dify's `MessageStatus.PAUSED`): the answer so far,
    /// `status = 'paused'`, `updated_at`; `_save_message` rewrites the row when it resumes.
    pub fn pause(&mut self, message: &str, at: &str, partial: &str) {
        self.client
            .batch_execute(&format!(
                "UPDATE messages SET answer = {}, status = 'paused', updated_at = {} WHERE id = {};",
                q(partial),
                q(at),
                q(message)
            ))
            .unwrap();
    }

    /// A reply that failed: `error` and `status = 'error'`, the answer left empty.
    pub fn fail(&mut self, message: &str, at: &str, error: &str) {
        self.client
            .batch_execute(&format!(
                "UPDATE messages SET status = 'error', error = {}, updated_at = {} WHERE id = {};",
                q(error),
                q(at),
                q(message)
            ))
            .unwrap();
    }

    /// The web app's rename (an LLM title after the first answer): `name`, `updated_at`, no message.
    pub fn rename(&mut self, conversation: &str, at: &str, name: &str) {
        self.client
            .batch_execute(&format!(
                "UPDATE conversations SET name = {}, updated_at = {} WHERE id = {};",
                q(name),
                q(at),
                q(conversation)
            ))
            .unwrap();
    }

    /// Deleting a conversation up to Dify 1.7: `is_deleted`.
    pub fn soft_delete(&mut self, conversation: &str) {
        self.client
            .batch_execute(&format!("UPDATE conversations SET is_deleted = true WHERE id = {};", q(conversation)))
            .unwrap();
    }

    /// Deleting since PR #23591: the conversation row at once ...
    pub fn hard_delete(&mut self, conversation: &str) {
        self.client.batch_execute(&format!("DELETE FROM conversations WHERE id = {};", q(conversation))).unwrap();
    }

    /// ... and its messages later, by a background task.
    pub fn delete_messages(&mut self, conversation: &str) {
        self.client
            .batch_execute(&format!("DELETE FROM messages WHERE conversation_id = {};", q(conversation)))
            .unwrap();
    }

    /// A chatflow's conversation variable as its assigner node writes it (the variable as JSON).
    pub fn variable(&mut self, id: &str, conversation: &str, app: &str, at: &str, data: &str) {
        self.client
            .batch_execute(&format!(
                "INSERT INTO workflow_conversation_variables (id, conversation_id, app_id, data, created_at, updated_at)
                 VALUES ({id}, {conv}, {app}, {data}, {at}, {at})
                 ON CONFLICT (id, conversation_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at;",
                id = q(id),
                conv = q(conversation),
                app = q(app),
                data = q(data),
                at = q(at),
            ))
            .unwrap();
    }
}
