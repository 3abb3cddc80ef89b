//! Writes a realistic export (schema v1) of a given size, for benchmarks and soak runs:
//! several bots with flows of varied length; about 30% of chats completed, 50% abandoned,
//! the rest still open near `--now`; some abandoned ones resumed later. Deterministic per seed.
//!
//!     cargo run --release --example gen_export -- --conversations 1000000 --out /tmp/export.sqlite
//!     cargo run --release --example gen_export -- --append 1000 --out /tmp/export.sqlite --now 2026-11-24T13:00:00Z
//!
//! Conversation ids are random UUIDs by default, as most runtimes write them (`--ids cuid` for
//! Typebot's shape, `--ids seq` for the sequential `conv-00000042` of earlier benchmarks).

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use rusqlite::{Connection, params};

#[derive(Parser)]
struct Args {
    /// Create a new export with this many conversations
    #[arg(long, conflicts_with = "append")]
    conversations: Option<u64>,
    /// Append this many messages to an existing export: visitors coming back, new chats
    #[arg(long)]
    append: Option<u64>,
    #[arg(long)]
    out: String,
    /// The export's "now": the newest activity is just before it
    #[arg(long, default_value = "2026-11-24T12:00:00Z")]
    now: DateTime<Utc>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The shape of conversation ids: random UUIDs (Rasa's sender ids, Flowise's `chatId`,
    /// Dify's conversations), cuid-like (Typebot's results), or sequential (`conv-00000042`)
    #[arg(long, value_enum, default_value_t = Ids::Uuid)]
    ids: Ids,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Ids {
    Uuid,
    Cuid,
    Seq,
}

/// Conversation ids of the chosen shape. Random ids come from a generator of their own, so
/// the chats themselves (bots, flows, times, answers) are the same whatever the shape.
struct Namer {
    ids: Ids,
    rng: Rng,
}

impl Namer {
    fn new(ids: Ids, seed: u64) -> Self {
        Namer { ids, rng: Rng(seed ^ 0x1D5_1D5_1D5) }
    }

    /// The `i`th conversation's id; `new` marks one appended later (`--append`), at `stamp`.
    fn name(&mut self, i: u64, new: Option<i64>) -> String {
        match self.ids {
            Ids::Seq => match new {
                Some(stamp) => format!("conv-new-{stamp}-{i:08}"),
                None => format!("conv-{i:08}"),
            },
            Ids::Uuid => {
                let (a, b) = (self.rng.next(), self.rng.next());
                // Version 4, variant 10xx.
                let a = (a & !0xF000) | 0x4000;
                let b = (b & !(0xC << 60)) | (0x8 << 60);
                format!(
                    "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                    a >> 32,
                    (a >> 16) & 0xFFFF,
                    a & 0xFFFF,
                    b >> 48,
                    b & 0xFFFF_FFFF_FFFF
                )
            }
            Ids::Cuid => {
                // cuid2's shape: a letter, then 23 base-36 characters.
                const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
                let mut id = String::with_capacity(24);
                id.push((b'a' + self.rng.below(26) as u8) as char);
                for _ in 0..23 {
                    id.push(ALPHABET[self.rng.below(36) as usize] as char);
                }
                id
            }
        }
    }
}

/// SplitMix64: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Step {
    gambit: &'static str,
    input_type: &'static str,
    field: Option<&'static str>,
    question: &'static str,
}

const STEPS: &[Step] = &[
    Step { gambit: "ask_name", input_type: "text", field: Some("name"), question: "Hi! What's your name?" },
    Step { gambit: "ask_email", input_type: "email", field: Some("email"), question: "What's your email?" },
    Step { gambit: "ask_phone", input_type: "phone", field: Some("phone"), question: "And a phone number?" },
    Step { gambit: "ask_company", input_type: "text", field: Some("company"), question: "Which company?" },
    Step {
        gambit: "ask_size",
        input_type: "buttons",
        field: Some("team_size"),
        question: "How big is the team? (1-10 / 11-50 / 50+)",
    },
    Step {
        gambit: "ask_plan",
        input_type: "buttons",
        field: Some("plan"),
        question: "Which plan? (Starter / Team / Enterprise)",
    },
    Step { gambit: "ask_budget", input_type: "number", field: Some("budget"), question: "What's your monthly budget?" },
    Step {
        gambit: "ask_date",
        input_type: "date",
        field: Some("start_date"),
        question: "When would you like to start?",
    },
    Step { gambit: "ask_issue", input_type: "text", field: Some("issue"), question: "What can we help you with?" },
    Step {
        gambit: "ask_rating",
        input_type: "rating",
        field: Some("rating"),
        question: "How would you rate us so far?",
    },
    Step { gambit: "ask_source", input_type: "buttons", field: Some("source"), question: "How did you hear about us?" },
];

const BOTS: &[(&str, &str, usize)] = &[
    ("lead", "Lead Bot", 5),
    ("quote", "Quote Wizard", 9),
    ("support", "Help Desk", 4),
    ("demo", "Demo Booking", 7),
    ("survey", "Feedback Survey", 11),
];

const FIRST_NAMES: &[&str] = &["Jane", "Sam", "Priya", "Alex", "Chen", "Maria", "Omar", "Lena", "Kofi", "Ana"];
const LAST_NAMES: &[&str] = &["Doe", "Lee", "Raman", "Kim", "Wei", "Garcia", "Haddad", "Fischer", "Mensah", "Silva"];

struct Writer<'c> {
    conversations: rusqlite::Statement<'c>,
    messages: rusqlite::Statement<'c>,
}

impl Writer<'_> {
    fn message(&mut self, conversation: &str, at: DateTime<Utc>, sender: &str, step: &Step, body: &str) -> Result<()> {
        let field = if sender == "visitor" { step.field } else { None };
        self.messages.execute(params![
            conversation,
            at.to_rfc3339(),
            sender,
            step.gambit,
            step.input_type,
            field,
            body
        ])?;
        Ok(())
    }

    /// The bot asks the given steps' questions and the visitor answers each; when the steps
    /// reach the flow's end, end_conversation follows. Returns the time of the last message.
    fn chat(
        &mut self,
        rng: &mut Rng,
        conversation: &str,
        steps: &[Step],
        finish: bool,
        mut at: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        let who = (FIRST_NAMES[rng.below(10) as usize], LAST_NAMES[rng.below(10) as usize]);
        for step in steps {
            self.message(conversation, at, "bot", step, step.question)?;
            at += Duration::seconds(5 + rng.below(60) as i64);
            let answer = match step.field {
                Some("name") => format!("{} {}", who.0, who.1),
                Some("email") => format!("{}.{}@example.com", who.0.to_lowercase(), who.1.to_lowercase()),
                Some("phone") => format!("+1 555 {:04}", rng.below(10_000)),
                _ => format!("Answer {} to {}", rng.below(1000), step.gambit),
            };
            self.message(conversation, at, "visitor", step, &answer)?;
            at += Duration::seconds(1);
        }
        if finish {
            let end = Step { gambit: "done", input_type: "end_conversation", field: None, question: "" };
            self.message(conversation, at, "bot", &end, "Thanks! We'll be in touch.")?;
        }
        Ok(at)
    }
}

fn flow_of(bot: usize) -> &'static [Step] {
    &STEPS[..BOTS[bot].2]
}

fn create(conn: &mut Connection, n: u64, now: DateTime<Utc>, rng: &mut Rng, namer: &mut Namer) -> Result<()> {
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         CREATE TABLE bots (id TEXT PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE conversations (id TEXT PRIMARY KEY, bot_id TEXT NOT NULL REFERENCES bots(id),
           visitor_id TEXT NOT NULL, started_at TEXT NOT NULL, page_url TEXT);
         CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL REFERENCES conversations(id),
           sent_at TEXT NOT NULL, sender TEXT NOT NULL, gambit_id TEXT, input_type TEXT, field TEXT, body TEXT NOT NULL);",
    )?;
    let tx = conn.transaction()?;
    for (id, name, _) in BOTS {
        tx.execute("INSERT INTO bots VALUES (?1, ?2)", params![id, name])?;
    }
    {
        let mut w = writer(&tx)?;
        let span = Duration::days(90);
        // Tails written after the main pass, as the runtime writes them later: visitors who come
        // back, and chats still going on near `now`.
        let mut tails: Vec<(String, usize, usize, bool, DateTime<Utc>)> = Vec::new();
        for i in 0..n {
            let id = namer.name(i, None);
            let bot = (rng.below(BOTS.len() as u64)) as usize;
            let flow = flow_of(bot);
            let start = now - span + span * (i as i32) / (n as i32).max(1);
            w.conversations.execute(params![
                id,
                BOTS[bot].0,
                format!("visitor-{}", rng.next() % 400_000),
                start.to_rfc3339(),
                "https://example.com/pricing"
            ])?;
            match rng.below(100) {
                0..30 => {
                    w.chat(rng, &id, flow, true, start)?;
                }
                30..80 => {
                    let stop = 1 + rng.below(flow.len() as u64 - 1) as usize;
                    let last = w.chat(rng, &id, &flow[..stop], false, start)?;
                    if rng.chance(15) {
                        let back = (last + Duration::hours(2 + rng.below(48) as i64)).min(now - Duration::minutes(40));
                        tails.push((id, bot, stop, rng.chance(50), back));
                    }
                }
                _ => {
                    // Still open: the visitor is in the middle of the flow just before `now`.
                    let stop = 1 + rng.below(flow.len() as u64 - 1) as usize;
                    let first = w.chat(rng, &id, &flow[..1], false, start)?;
                    let late = (now - Duration::minutes(rng.below(25) as i64 + 1)).max(first);
                    tails.push((id, bot, stop.max(2), false, late));
                }
            }
        }
        tails.sort_by_key(|t| t.4);
        for (id, bot, from, finish, at) in tails {
            let flow = flow_of(bot);
            let to = if finish { flow.len() } else { (from + 1).min(flow.len()) };
            w.chat(rng, &id, &flow[from.min(to)..to], finish, at)?;
        }
    }
    tx.commit()?;
    conn.execute_batch("CREATE INDEX messages_by_conversation ON messages(conversation_id, id); ANALYZE;")?;
    Ok(())
}

/// New activity since the last run, as the runtime appends it: half are new chats, half are
/// visitors coming back to recent ones, each adding a question and an answer.
fn append(conn: &mut Connection, messages: u64, now: DateTime<Utc>, rng: &mut Rng, namer: &mut Namer) -> Result<()> {
    let conversations: i64 = conn.query_row("SELECT count(*) FROM conversations", [], |r| r.get(0))?;
    let tx = conn.transaction()?;
    {
        let mut w = writer(&tx)?;
        let mut written = 0;
        let mut i = 0;
        while written < messages {
            let at = now - Duration::seconds(rng.below(3600) as i64);
            let (id, bot) = if i % 2 == 0 {
                let id = namer.name(i, Some(now.timestamp()));
                let bot = rng.below(BOTS.len() as u64) as usize;
                w.conversations.execute(params![id, BOTS[bot].0, "visitor-new", at.to_rfc3339(), None::<String>])?;
                (id, bot)
            } else {
                let recent = conversations - 1 - rng.below(1000.min(conversations as u64)) as i64;
                let (id, bot): (String, String) = tx.query_row(
                    "SELECT id, bot_id FROM conversations ORDER BY rowid LIMIT 1 OFFSET ?1",
                    [recent],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                (id, BOTS.iter().position(|b| b.0 == bot).unwrap_or(0))
            };
            let flow = flow_of(bot);
            let step = rng.below(flow.len() as u64) as usize;
            w.chat(rng, &id, &flow[step..step + 1], false, at)?;
            written += 2;
            i += 1;
        }
    }
    tx.commit()?;
    Ok(())
}

fn writer<'c>(tx: &'c rusqlite::Transaction) -> Result<Writer<'c>> {
    Ok(Writer {
        conversations: tx.prepare("INSERT INTO conversations VALUES (?1, ?2, ?3, ?4, ?5)")?,
        messages: tx.prepare(
            "INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut rng = Rng(args.seed);
    match (args.conversations, args.append) {
        (Some(n), None) => {
            if std::path::Path::new(&args.out).exists() {
                bail!("{} exists; remove it first", args.out);
            }
            let mut conn = Connection::open(&args.out).with_context(|| format!("creating {}", args.out))?;
            create(&mut conn, n, args.now, &mut rng, &mut Namer::new(args.ids, args.seed))
        }
        (None, Some(k)) => {
            let mut conn = Connection::open(&args.out).with_context(|| format!("opening {}", args.out))?;
            rng.0 ^= args.now.timestamp() as u64;
            let mut namer = Namer::new(args.ids, args.seed ^ args.now.timestamp() as u64);
            append(&mut conn, k, args.now, &mut rng, &mut namer)
        }
        _ => bail!("give --conversations N or --append K"),
    }
}
