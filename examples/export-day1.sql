-- The bundled example export, as the bot runtime has written it by 2026-11-20 12:00 UTC.
-- examples/export-day2.sql appends what it writes after that. Schema: export schema v1 (README).
CREATE TABLE bots (
  id    TEXT PRIMARY KEY,
  name  TEXT NOT NULL
);
CREATE TABLE conversations (
  id          TEXT PRIMARY KEY,
  bot_id      TEXT NOT NULL REFERENCES bots(id),
  visitor_id  TEXT NOT NULL,
  started_at  TEXT NOT NULL,
  page_url    TEXT
);
CREATE TABLE messages (
  id               INTEGER PRIMARY KEY,
  conversation_id  TEXT NOT NULL REFERENCES conversations(id),
  sent_at          TEXT NOT NULL,
  sender           TEXT NOT NULL,
  gambit_id        TEXT,
  input_type       TEXT,
  field            TEXT,
  body             TEXT NOT NULL
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);

INSERT INTO bots VALUES ('lead', 'Lead Bot'), ('support', 'Help Desk');

INSERT INTO conversations VALUES
  ('6f1c2a9e-old', 'lead', 'v-0999', '2026-11-12T15:00:00Z', 'https://example.com/'),
  ('0b7e4d21-jane', 'lead', 'v-1001', '2026-11-20T10:58:00+01:00', 'https://example.com/pricing'),
  ('9a41c3f0-priya', 'lead', 'v-1002', '2026-11-20T10:20:00Z', 'https://example.com/pricing?plan=team'),
  ('d2c85b77-sam', 'lead', 'v-1003', '2026-11-20T10:55:00Z', NULL),
  ('4e9f0a12-alex', 'support', 'v-2001', '2026-11-20T11:48:00Z', 'https://example.com/account/billing');

INSERT INTO messages VALUES
  -- Eight days old when the tool is first switched on: history, not news.
  (1, '6f1c2a9e-old', '2026-11-12T15:00:00Z', 'bot', 'ask_name', 'text', NULL, 'Hi! I can get you a quote in two minutes. What''s your name?'),
  (2, '6f1c2a9e-old', '2026-11-12T15:00:20Z', 'visitor', 'ask_name', 'text', 'name', 'Old Timer'),
  (3, '6f1c2a9e-old', '2026-11-12T15:00:21Z', 'bot', 'done', 'end_conversation', NULL, 'Thanks! Someone will be in touch.'),
  -- Jane gives her email, then leaves at the plan question.
  (4, '0b7e4d21-jane', '2026-11-20T10:58:00+01:00', 'bot', 'ask_name', 'text', NULL, 'Hi! I can get you a quote in two minutes. What''s your name?'),
  (5, '0b7e4d21-jane', '2026-11-20T10:58:40+01:00', 'visitor', 'ask_name', 'text', 'name', 'Jane Doe'),
  (6, '0b7e4d21-jane', '2026-11-20T10:58:41+01:00', 'bot', 'ask_email', 'email', NULL, 'Thanks, Jane! What''s your email?'),
  (7, '0b7e4d21-jane', '2026-11-20T10:59:30+01:00', 'visitor', 'ask_email', 'email', 'email', 'jane.doe@example.com'),
  (8, '0b7e4d21-jane', '2026-11-20T10:59:31+01:00', 'bot', 'ask_plan', 'buttons', NULL, 'Which plan are you interested in? (Starter / Team / Enterprise)'),
  -- Priya leaves a phone number but no email.
  (9, '9a41c3f0-priya', '2026-11-20T10:20:00Z', 'bot', 'ask_name', 'text', NULL, 'Hi! I can get you a quote in two minutes. What''s your name?'),
  (10, '9a41c3f0-priya', '2026-11-20T10:21:10Z', 'visitor', 'ask_name', 'text', 'name', 'Priya Raman'),
  (11, '9a41c3f0-priya', '2026-11-20T10:21:11Z', 'bot', 'ask_email', 'email', NULL, 'Thanks, Priya! What''s your email?'),
  (12, '9a41c3f0-priya', '2026-11-20T10:23:40Z', 'visitor', 'ask_email', 'email', NULL, 'can I give you my phone instead? +1 415 555 0134'),
  (13, '9a41c3f0-priya', '2026-11-20T10:23:41Z', 'bot', 'ask_phone', 'phone', NULL, 'Of course. Please type your phone number.'),
  (14, '9a41c3f0-priya', '2026-11-20T10:24:05Z', 'visitor', 'ask_phone', 'phone', 'phone', '+1 415 555 0134'),
  (15, '9a41c3f0-priya', '2026-11-20T10:24:06Z', 'bot', 'ask_plan', 'buttons', NULL, 'Which plan are you interested in? (Starter / Team / Enterprise)'),
  -- Sam finishes in one go.
  (16, 'd2c85b77-sam', '2026-11-20T10:55:00Z', 'bot', 'ask_name', 'text', NULL, 'Hi! I can get you a quote in two minutes. What''s your name?'),
  (17, 'd2c85b77-sam', '2026-11-20T10:55:30Z', 'visitor', 'ask_name', 'text', 'name', 'Sam Lee'),
  (18, 'd2c85b77-sam', '2026-11-20T10:55:31Z', 'bot', 'ask_email', 'email', NULL, 'Thanks, Sam! What''s your email?'),
  (19, 'd2c85b77-sam', '2026-11-20T10:56:02Z', 'visitor', 'ask_email', 'email', 'email', 'sam@lee.example'),
  (20, 'd2c85b77-sam', '2026-11-20T10:56:03Z', 'bot', 'ask_plan', 'buttons', NULL, 'Which plan are you interested in? (Starter / Team / Enterprise)'),
  (21, 'd2c85b77-sam', '2026-11-20T10:56:20Z', 'visitor', 'ask_plan', 'buttons', 'plan', 'Starter'),
  (22, 'd2c85b77-sam', '2026-11-20T10:56:21Z', 'bot', 'done', 'end_conversation', NULL, 'Thanks! Someone will be in touch today.'),
  -- Alex is still typing when the first run looks.
  (23, '4e9f0a12-alex', '2026-11-20T11:48:00Z', 'bot', 'ask_issue', 'text', NULL, 'Hello! What can we help you with?'),
  (24, '4e9f0a12-alex', '2026-11-20T11:52:12Z', 'visitor', 'ask_issue', 'text', 'issue', 'My invoice shows the wrong VAT number. It should be <DE123456789>, not the old one & the address changed too.'),
  (25, '4e9f0a12-alex', '2026-11-20T11:52:13Z', 'bot', 'ask_email', 'email', NULL, 'Sorry about that! Which email is the account under?');
