-- What the bot runtime appends to the example export after 2026-11-20 12:00 UTC.
INSERT INTO messages VALUES
  -- Alex finishes a few minutes after the first run looked.
  (26, '4e9f0a12-alex', '2026-11-20T12:03:40Z', 'visitor', 'ask_email', 'email', 'email', 'alex.kim@example.net'),
  (27, '4e9f0a12-alex', '2026-11-20T12:03:41Z', 'bot', 'done', 'end_conversation', NULL, 'Thanks, Alex. Billing will correct the invoice within one business day.'),
  -- Jane comes back the next morning and finishes.
  (28, '0b7e4d21-jane', '2026-11-21T09:10:00+01:00', 'visitor', 'ask_plan', 'buttons', 'plan', 'Team'),
  (29, '0b7e4d21-jane', '2026-11-21T09:10:01+01:00', 'bot', 'ask_phone', 'phone', NULL, 'And your phone number, so sales can call?'),
  (30, '0b7e4d21-jane', '2026-11-21T09:10:45+01:00', 'visitor', 'ask_phone', 'phone', 'phone', '+49 30 1234567'),
  (31, '0b7e4d21-jane', '2026-11-21T09:10:46+01:00', 'bot', 'done', 'end_conversation', NULL, 'Thanks! Someone will be in touch today.'),
  -- Priya comes back, leaves her email, and goes again before choosing a plan.
  (32, '9a41c3f0-priya', '2026-11-21T09:30:00Z', 'visitor', 'ask_plan', 'buttons', NULL, 'Sorry, got pulled into a meeting. My email is priya@example.org'),
  (33, '9a41c3f0-priya', '2026-11-21T09:30:01Z', 'bot', 'ask_plan', 'buttons', NULL, 'No problem! Which plan are you interested in? (Starter / Team / Enterprise)');
