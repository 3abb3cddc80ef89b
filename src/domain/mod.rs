//! The words the whole program speaks: the chat and its messages, the states a notification
//! announces, the visitor and the person, the email and its thread, the identifier, durations
//! and limits, and text made safe for every output. Plain data and pure rules on it. It imports
//! nothing of the crate: sources, the state, mail and the pipeline all build on it
//! (`tests/layers.rs` keeps it so).

mod chat;
mod email;
mod person;
mod span;
pub mod text;
pub mod thread;
mod tracked;
mod transcript;

pub use chat::{
    Activity, Author, ChatState, Conversation, END_OF_FLOW, Given, LEAD_FIELDS, Message, ends_flow, given,
    given_fields, turn, visitor_name,
};
pub use email::{Email, ascii_domain, round_trips};
pub use person::{CROWD, Earlier, EarlierField, Person, SHOWN, is_person};
pub use span::{Limits, Span};
pub use thread::Thread;
pub use tracked::{Seen, Tracked, fold};
pub use transcript::{HEAD, Reader, Transcript, Wanted};
