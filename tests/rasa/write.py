"""Writes conversations into a Rasa SQL tracker store with Rasa's own code (open-source Rasa 3.6,
installed by tests/rasa/install.sh), for tests/rasa_real.rs.

A scenario comes as one JSON document on stdin:

    {"store": "sqlite:////tmp/x/rasa.db" | "postgresql://user@host:port/db",
     "steps": [STEP, ...]}

Each step is one thing Rasa's server does for one sender, ending with the tracker saved by
`SQLTrackerStore.save` (the server saves once per message handled):

    {"sender": S, "at": SECONDS, "user": TEXT, "intent": NAME, "metadata": {...},
     "actions": [NAME, ...]}
        A message from the channel, as `MessageProcessor` handles it: a new session first when
        Rasa would start one (no events yet, or the last user message older than the domain's
        60 minutes), with the channel's metadata in `session_started_metadata`; `UserUttered`;
        the form's slot extracted from the text; then each action named (what the policies
        would predict): a response, the form, `action_deactivate_loop`, `action_listen`, or a
        custom action (an action server's, returning no events). With
        "custom_session_start": true, the session starts with the assistant's own
        `action_session_start`, which writes no `session_started`.
    {"sender": S, "at": SECONDS, "actions": [NAME, ...]}
        Actions without a message.
    {"sender": S, "at": SECONDS, "external": INTENT, "actions": [NAME, ...]}
        A reminder or an external event (`trigger_intent`), as
        `MessageProcessor.trigger_external_user_uttered` logs it (a new session first when one
        has expired, as for a message): `UserUttered.create_external`
        (text `EXTERNAL: INTENT`, metadata `is_external`), then the actions predicted.
    An action named `action_session_start` in "actions" is Rasa's own: what a message with the
    built-in `session_start` intent (`/session_start`, sent by chat widgets on a page load)
    runs, by the rule policy's default rule.
    {"sender": S, "at": SECONDS, "slots": {NAME: VALUE}, "metadata": {...}}
        Slots set by the channel or an action: `SlotSet` events with that metadata.
    {"delete": S}
        The sender's tracker erased, as `DELETE /conversations/<id>/tracker` does where Rasa
        has it: the store's own `delete` when it has one (Rasa Pro), else the statement it runs,
        through the store's model and session (open-source 3.6 has no delete).

The events are Rasa's own classes (`rasa.shared.core.events`), tracked by its
`DialogueStateTracker` and written by its `SQLTrackerStore`. What the actions return is
written here as Rasa 3.6's actions return it (`ActionSessionStart`, `FormAction`,
`ActionBotResponse`, `ActionDeactivateLoop`, and the processor's logging of them): running
those classes imports TensorFlow (1.5 GB), which the tracker store does not need. The
sequences were checked once, event for event, against those classes run with TensorFlow
installed.

`at` is the clock of Rasa's code during the step: every `time.time()` Rasa calls then
returns it, one microsecond later at each call, so stamps are Rasa's floats with
microseconds, the same on every run. Prints one JSON line: the highest event id after each
step. Exits 2 with one line on stderr when anything fails.
"""

import asyncio
import contextlib
import json
import signal
import sys
from urllib.parse import unquote, urlparse

DOMAIN = """
version: "3.1"
intents: [greet, request_quote, inform, stop, goodbye, ask_prices]
slots:
  name:
    type: text
    mappings:
    - type: from_text
      not_intent: [stop]
      conditions: [{active_loop: lead_form, requested_slot: name}]
  email:
    type: text
    mappings:
    - type: from_text
      not_intent: [stop]
      conditions: [{active_loop: lead_form, requested_slot: email}]
  phone:
    type: text
    mappings:
    - type: from_text
      not_intent: [stop]
      conditions: [{active_loop: lead_form, requested_slot: phone}]
  plan:
    type: text
    influence_conversation: false
    mappings: [{type: custom}]
forms:
  lead_form:
    required_slots: [name, email, phone]
responses:
  utter_greet: [{text: "Hi! I can get you a quote."}]
  utter_ask_name: [{text: "What's your name?"}]
  utter_ask_email: [{text: "Your email?"}]
  utter_ask_phone: [{text: "And your phone?"}]
  utter_prices: [{text: "Plans start at $10 a month."}]
  utter_goodbye: [{text: "Thanks, we will be in touch!"}]
  utter_cancelled: [{text: "No problem, maybe later."}]
  utter_reminder: [{text: "Still interested in a quote?"}]
actions: [action_submit_lead]
session_config:
  session_expiration_time: 60
  carry_over_slots_to_new_session: true
"""

MODEL_ID = "5f0e0b9c2c4f4a1b9d1e2f3a4b5c6d7e"
ASSISTANT_ID = "lead-assistant"
# The store's constructor may retry forever, every 5 s, while the database is unreachable.
CONNECT_TIMEOUT = 30


class Clock:
    """`time.time()` for Rasa's modules: the step's instant, a microsecond more at each call."""

    def __init__(self):
        self.now = 0.0
        self.calls = 0

    def set(self, at):
        self.now = float(at)
        self.calls = 0

    def time(self):
        self.calls += 1
        return round(self.now + (self.calls - 1) / 1e6, 6)


def fail(why):
    print(f"tests/rasa/write.py: {why}", file=sys.stderr)
    sys.exit(2)


def open_store(url, domain):
    from rasa.core.tracker_store import SQLTrackerStore

    parts = urlparse(url)
    if parts.scheme == "sqlite":
        kwargs = {"dialect": "sqlite", "db": unquote(parts.path[1:] if parts.path.startswith("//") else parts.path)}
    elif parts.scheme in ("postgresql", "postgres"):
        kwargs = {
            "dialect": "postgresql",
            "host": parts.hostname,
            "port": parts.port,
            "db": parts.path.lstrip("/"),
            "username": unquote(parts.username or ""),
            "password": unquote(parts.password or "") or None,
        }
    else:
        fail(f"store {url!r}: give sqlite:////path or postgresql://...")

    def timed_out(*_):
        raise TimeoutError(f"no database at {parts.scheme}://{parts.hostname or ''}{parts.path} after {CONNECT_TIMEOUT} s")

    signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(CONNECT_TIMEOUT)
    try:
        return SQLTrackerStore(domain=domain, **kwargs)
    finally:
        signal.alarm(0)


async def run(scenario):
    import rasa.shared.core.events
    import rasa.shared.core.trackers
    from rasa.shared.core.constants import (
        ACTION_LISTEN_NAME,
        ACTION_SESSION_START_NAME,
        REQUESTED_SLOT,
        SESSION_START_METADATA_SLOT,
    )
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import (
        ActionExecuted,
        ActionExecutionRejected,
        ActiveLoop,
        BotUttered,
        SessionStarted,
        SlotSet,
        UserUttered,
    )
    from sqlalchemy import func

    clock = Clock()
    for module in (rasa.shared.core.events, rasa.shared.core.trackers):
        module.time = clock

    domain = Domain.from_yaml(scenario.get("domain") or DOMAIN)
    store = open_store(scenario["store"], domain)
    expiry = domain.session_config.session_expiration_time * 60

    def run_action(tracker, name, events):
        # MessageProcessor._log_action_on_tracker: the action, then what it returned, with
        # the timestamps Rasa gives them when they are logged.
        policy = None if name == ACTION_SESSION_START_NAME else "RulePolicy"
        tracker.update(ActionExecuted(name, policy=policy, confidence=1.0), domain)
        tracker.update_with_events(events, domain)

    def utter(name):
        # ActionBotResponse: the response's text, its name in the event's metadata.
        text = domain.responses[name][0]["text"]
        data = {"elements": None, "quick_replies": None, "buttons": None, "attachment": None, "image": None}
        return BotUttered(text, {**data, "custom": None}, {"utter_action": name})

    def start_session(tracker, metadata, custom):
        # MessageProcessor._update_tracker_session and ActionSessionStart (slots carried over).
        if metadata:
            tracker.update(SlotSet(SESSION_START_METADATA_SLOT, metadata), domain)
        if custom:
            # The assistant's own `action_session_start` (an action server's), which returns
            # no SessionStarted: the processor logs it and what it returned.
            run_action(tracker, ACTION_SESSION_START_NAME, [ActionExecuted(ACTION_LISTEN_NAME)])
            return
        carried = [
            SlotSet(key=e.key, value=e.value, metadata=e.metadata)
            for e in tracker.applied_events()
            if isinstance(e, SlotSet)
        ]
        run_action(tracker, ACTION_SESSION_START_NAME, [SessionStarted(), *carried, ActionExecuted(ACTION_LISTEN_NAME)])

    def filled_since_user(tracker):
        events = []
        for e in reversed(tracker.events):
            if isinstance(e, UserUttered):
                break
            events.append(e)
        return [e for e in events if isinstance(e, SlotSet) and e.key != REQUESTED_SLOT]

    def run_form(tracker, form):
        # FormAction: activated, it asks the first slot it lacks; active, it takes the slot
        # the message filled and asks the next, or deactivates when none is left; a message
        # that filled nothing rejects it (ActionExecutionRejected, logged without the action).
        events = []
        if tracker.active_loop_name != form:
            events.append(ActiveLoop(form))
        elif not filled_since_user(tracker):
            tracker.update(ActionExecutionRejected(form, "RulePolicy", 1.0), domain)
            return
        missing = [s for s in domain.required_slots_for_form(form) if tracker.get_slot(s) is None]
        if missing:
            events += [SlotSet(REQUESTED_SLOT, missing[0]), utter(f"utter_ask_{missing[0]}")]
        else:
            events += [SlotSet(REQUESTED_SLOT, None), ActiveLoop(None)]
        run_action(tracker, form, events)

    def act(tracker, name):
        if name in domain.form_names:
            run_form(tracker, name)
        elif name == "action_deactivate_loop":
            run_action(tracker, name, [ActiveLoop(None), SlotSet(REQUESTED_SLOT, None)])
        elif name == ACTION_SESSION_START_NAME:
            start_session(tracker, {}, False)
        elif name in domain.responses:
            run_action(tracker, name, [utter(name)])
        elif name == ACTION_LISTEN_NAME:
            run_action(tracker, name, [])
        else:
            # A custom action (the action server's) that returned no events.
            run_action(tracker, name, [])

    last_ids = []
    for step in scenario["steps"]:
        if "delete" in step:
            sender = step["delete"]
            if hasattr(store, "delete"):
                await store.delete(sender)
            else:
                with store.session_scope() as session:
                    session.query(store.SQLEvent).filter(store.SQLEvent.sender_id == sender).delete()
                    session.commit()
        else:
            clock.set(step["at"])
            sender = step["sender"]
            tracker = await store.get_or_create_tracker(sender, append_action_listen=False)
            tracker.model_id = MODEL_ID
            tracker.assistant_id = ASSISTANT_ID
            metadata = step.get("metadata") or {}
            if "user" in step or "external" in step:
                # fetch_tracker_and_update_session, for a message and for an external event alike.
                last = tracker.get_last_event_for(UserUttered)
                if not tracker.applied_events() or (last and clock.now - last.timestamp > expiry):
                    start_session(tracker, metadata, step.get("custom_session_start", False))
            if "user" in step:
                intent = {"name": step.get("intent", "inform"), "confidence": 0.98}
                parse = {"text": step["user"], "intent": intent, "entities": [], "intent_ranking": [intent]}
                message_id = f"{sender}-{len(tracker.events)}"
                tracker.update(
                    UserUttered(step["user"], intent, [], parse, None, "rest", message_id, metadata), domain
                )
                # action_extract_slots: the form's slot from the text, unless the visitor
                # asked to stop (the domain's `not_intent`).
                requested = tracker.get_slot(REQUESTED_SLOT)
                if tracker.active_loop_name and requested and intent["name"] != "stop":
                    tracker.update_with_events([SlotSet(requested, step["user"])], domain)
            if "external" in step:
                tracker.update(UserUttered.create_external(step["external"], [], "rest"), domain)
            for name, value in (step.get("slots") or {}).items():
                tracker.update(SlotSet(name, value, metadata=metadata), domain)
            for name in step.get("actions") or []:
                act(tracker, name)
            await store.save(tracker)
        with store.session_scope() as session:
            last_ids.append(session.query(func.max(store.SQLEvent.id)).scalar() or 0)
    return last_ids


def main():
    try:
        scenario = json.load(sys.stdin)
    except ValueError as e:
        fail(f"the scenario on stdin is not JSON ({e})")
    try:
        # Rasa's structlog and warnings write to stdout: stdout is for the answer only.
        with contextlib.redirect_stdout(sys.stderr):
            last_ids = asyncio.run(run(scenario))
    except SystemExit:
        raise
    except BaseException as e:  # one line, whatever Rasa raised
        fail(f"{type(e).__name__}: {e}")
    print(json.dumps({"last_ids": last_ids}))


if __name__ == "__main__":
    main()
