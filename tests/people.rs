//! People, not rows: an email about a returning visitor shows who they are from their other
//! chats; placeholders and shared ids never merge strangers. Through the built binary.

mod support;

use support::{Fixture, SmtpServer, mails};

/// Ana finishes a chat on Monday giving everything; on Tuesday she comes back under the same
/// visitor id, types her name and leaves.
fn ana(f: &Fixture) {
    let at = |day: u32, s: u32| format!("2026-11-{day:02}T09:00:{s:02}Z");
    f.conversation("mon", &at(23, 0));
    f.bot("mon", &at(23, 0), "ask_name", "text", "What's your name?");
    f.visitor("mon", &at(23, 1), Some("name"), "Ana Souza");
    f.bot("mon", &at(23, 2), "ask_email", "email", "Your email?");
    f.visitor("mon", &at(23, 3), Some("email"), "ana@example.com");
    f.bot("mon", &at(23, 4), "ask_phone", "phone", "And your phone?");
    f.visitor("mon", &at(23, 5), Some("phone"), "+55 11 5555 0100");
    f.end("mon", &at(23, 6));
    f.conversation("tue", &at(24, 0));
    f.bot("tue", &at(24, 0), "ask_name", "text", "What's your name?");
    f.visitor("tue", &at(24, 1), Some("name"), "Ana Souza");
    f.bot("tue", &at(24, 2), "ask_email", "email", "Your email?");
    f.sql("UPDATE conversations SET visitor_id = 'v-ana' WHERE id IN ('mon', 'tue')");
}

#[test]
fn a_returning_visitor_is_a_known_person_in_the_email() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    ana(&f);
    f.run_at("2026-11-23T09:01:00Z", &[], 0); // Monday's chat, completed
    f.run_at("2026-11-24T10:00:00Z", &[], 0); // Tuesday's, abandoned
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    let (monday, tuesday) = (&m[0], &m[1]);
    assert!(!monday.text.contains("chatted before"), "a first-time visitor: {}", monday.text);
    let earlier = support::identifier(&monday.subject);
    assert_ne!(support::identifier(&tuesday.subject), earlier, "each conversation keeps its own thread");
    assert!(!tuesday.subject.starts_with("Re: "));
    for line in [
        "  name: Ana Souza\n".to_owned(),
        format!("  email: ana@example.com (in an earlier chat, #{earlier}, 2026-11-23)\n"),
        format!("  phone: +55 11 5555 0100 (in an earlier chat, #{earlier}, 2026-11-23)\n"),
        format!("Ana Souza chatted before:\n  #{earlier}, Lead Bot, completed on 2026-11-23\n"),
    ] {
        assert!(tuesday.text.contains(&line), "{line:?} in\n{}", tuesday.text);
    }
    assert_eq!(tuesday.reply_to.as_deref(), Some("ana@example.com"), "Reply-To falls back to the person's address");
    assert!(tuesday.html.contains(&format!("#{earlier}, Lead Bot, completed on 2026-11-23")), "{}", tuesday.html);
}

#[test]
fn placeholder_and_shared_visitor_ids_never_merge_strangers() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.mail_setting("burst = 100"); // every email on its own: the flood guard has its own tests
    // Strangers the runtime could not tell apart ("undefined"), and one id on 60 chats (a
    // kiosk, a test visitor): emailed in a first run, then one more chat under each id.
    f.lead_who_leaves("a", "Alice", "alice@example.com", 0);
    for i in 0..60 {
        f.lead_who_leaves(&format!("k{i}"), &format!("Kiosk {i}"), "kiosk@example.com", 2 + i % 50);
    }
    f.sql("UPDATE conversations SET visitor_id = 'undefined' WHERE id = 'a'");
    f.sql("UPDATE conversations SET visitor_id = 'kiosk-7' WHERE id LIKE 'k%'");
    f.run_at("2026-11-24T11:00:00Z", &[], 0);
    let at = |s: u32| format!("2026-11-24T11:10:{s:02}Z");
    for (id, visitor, name) in [("b", "undefined", "Bob"), ("k-last", "kiosk-7", "Kiosk last")] {
        f.conversation(id, &at(0));
        f.bot(id, &at(0), "ask_name", "text", "What's your name?");
        f.visitor(id, &at(1), Some("name"), name);
        f.sql(&format!("UPDATE conversations SET visitor_id = '{visitor}' WHERE id = '{id}'"));
    }
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 63);
    let bob = m.iter().find(|m| m.subject.contains("Bob")).unwrap();
    assert_eq!(bob.reply_to, None, "no address of Alice's");
    for mail in &m {
        assert!(!mail.text.contains("chatted before") && !mail.text.contains("earlier chat"), "{}", mail.text);
    }
}
