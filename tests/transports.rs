//! The other ways out: a sendmail command and a folder of .eml files carry the same email
//! SMTP would, and their failures keep it queued.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::{Fixture, read_eml};

#[test]
fn sendmail_gets_the_message_on_stdin_and_the_recipients_as_arguments() {
    let f = Fixture::new(1);
    let script = f.dir.path().join("fake-sendmail");
    // A stand-in for /usr/sbin/sendmail: the same interface, writing what it is given to files.
    std::fs::write(&script, "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\ncat > \"$0.eml\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    f.set_transport(&format!("kind = \"sendmail\"\ncommand = \"{}\"", script.display()));
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);

    let args = std::fs::read_to_string(f.dir.path().join("fake-sendmail.args")).unwrap();
    assert!(args.lines().any(|a| a == "owner@example.com"), "{args}");
    assert!(args.lines().any(|a| a == "notifier@example.com"), "the envelope sender: {args}");
    let m = read_eml(&f.dir.path().join("fake-sendmail.eml"));
    assert!(m.subject.starts_with("Lead Bot: chat with Jane Doe [#"));
    assert_eq!(m.reply_to.as_deref(), Some("jane@example.com"));
}

#[test]
fn a_failing_sendmail_keeps_the_email_queued() {
    let f = Fixture::new(1);
    f.set_transport("kind = \"sendmail\"\ncommand = \"/bin/false\"");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 3);
    assert!(out.stderr.contains("not sent (attempt 1)"), "{}", out.stderr);
    assert_eq!(f.outbox().iter().map(|r| r.status.as_str()).collect::<Vec<_>>(), ["pending"]);
}

#[test]
fn the_folder_transport_writes_one_eml_per_email() {
    let f = Fixture::new(1);
    f.set_transport("kind = \"folder\"\npath = \"outbox\"");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let mut subjects: Vec<String> =
        std::fs::read_dir(f.dir.path().join("outbox")).unwrap().map(|e| read_eml(&e.unwrap().path()).subject).collect();
    subjects.sort();
    assert_eq!(subjects.len(), 2);
    assert!(subjects[0].starts_with("Lead Bot: chat with Jane Doe [#"), "{subjects:?}");
    assert!(subjects[1].starts_with("Lead Bot: chat with Sam Lee [#"), "{subjects:?}");
}

/// The folder transport marks a page of emails sent after one sync, so a run can stop between
/// renaming files into place and marking them. The next run takes a file already in place as
/// sent: it neither writes it again (a pickup agent may be reading it) nor loses it.
#[test]
fn a_file_already_in_place_counts_as_sent_and_is_not_written_again() {
    let f = Fixture::new(1);
    f.set_transport("kind = \"folder\"\npath = \"outbox\"");
    for i in 0..3 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), &format!("v{i}@example.com"), i);
    }
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let dir = f.dir.path().join("outbox");
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 3);
    // As a run killed after the renames and before the marks leaves it.
    support::sql_on_state(&f, "UPDATE outbox SET status = 'pending', sent_at = NULL, attempts = 0");
    std::fs::write(&files[0], "picked up and rewritten by the mail agent").unwrap();
    let out = f.run_at("2026-11-24T10:05:00Z", &["-v"], 0);
    assert_eq!(out.stderr.matches("sent abandoned email").count(), 3, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), "picked up and rewritten by the mail agent");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3, "no second copy, no temporary file");
    assert!(f.outbox().iter().all(|r| r.status == "sent" && r.attempts == 1), "{:?}", f.outbox());
}
