//! A published Typebot flow (`"PublicTypebot".groups` and `.edges`), as far as a transcript
//! needs it: the text bubbles the bot showed, and the input blocks the visitor answered.
//! Typebot stores no bot messages, so this is where they come back from. Pure: JSON in, text out.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

#[derive(Debug, Default)]
pub struct Flow {
    groups: Vec<Group>,
    /// Edge id to the group (and block) it leads to.
    edges: HashMap<String, (String, Option<String>)>,
    /// Block id to (group, block) indexes.
    places: HashMap<String, (usize, usize)>,
}

#[derive(Debug)]
struct Group {
    id: String,
    blocks: Vec<Block>,
}

#[derive(Debug)]
struct Block {
    id: String,
    kind: Kind,
    /// `outgoingEdgeId`: where the flow goes after this block.
    next: Option<String>,
}

#[derive(Debug, PartialEq)]
enum Kind {
    /// A text bubble, as plain text, `{{variables}}` still in it.
    Text(String),
    /// An input block, and the id of the variable its answer is saved in.
    Input(Option<String>),
    /// Any other block: media bubbles, logic, integrations.
    Other,
}

/// What the bot showed before an input block, and the question it asked there.
#[derive(Debug, PartialEq)]
pub struct Before<'f> {
    pub bubbles: Vec<&'f str>,
    /// The variable the answer is saved in.
    pub variable: Option<&'f str>,
}

/// What the bot said after an answer, and the input it then waited at (none: the flow's end).
#[derive(Debug, Default, PartialEq)]
pub struct After<'f> {
    pub bubbles: Vec<&'f str>,
    pub waits_at: Option<&'f str>,
}

impl Flow {
    /// Reads a published flow; the error says which part has a shape this version does not know
    /// (a newer Typebot's flow, or not one at all).
    pub fn parse(groups: &str, edges: Option<&str>) -> Result<Flow, String> {
        let groups: Value = serde_json::from_str(groups).map_err(|e| format!("groups is not JSON ({e})"))?;
        let Some(groups) = groups.as_array() else { return Err("groups is not a list".into()) };
        let mut flow = Flow::default();
        for (g, group) in groups.iter().enumerate() {
            let id = string(group, "id").ok_or_else(|| format!("group {g} has no id"))?;
            let blocks = group
                .get("blocks")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("group {id:?} has no blocks list"))?;
            let mut parsed = Vec::with_capacity(blocks.len());
            for (b, block) in blocks.iter().enumerate() {
                let block_id = string(block, "id").ok_or_else(|| format!("block {b} of group {id:?} has no id"))?;
                let kind = string(block, "type").ok_or_else(|| format!("block {block_id:?} has no type"))?;
                flow.places.insert(block_id.to_owned(), (g, b));
                parsed.push(Block {
                    id: block_id.to_owned(),
                    kind: kind_of(kind, block),
                    next: string(block, "outgoingEdgeId").map(str::to_owned),
                });
            }
            flow.groups.push(Group { id: id.to_owned(), blocks: parsed });
        }
        let edges: Value = match edges {
            Some(e) => serde_json::from_str(e).map_err(|e| format!("edges is not JSON ({e})"))?,
            None => Value::Array(Vec::new()),
        };
        for edge in edges.as_array().into_iter().flatten() {
            let (Some(id), Some(to)) = (string(edge, "id"), edge.get("to")) else { continue };
            if let Some(group) = string(to, "groupId") {
                flow.edges.insert(id.to_owned(), (group.to_owned(), string(to, "blockId").map(str::to_owned)));
            }
        }
        Ok(flow)
    }

    /// The text bubbles of `block`'s group between the input before it and it: what the bot
    /// said before the visitor answered. None: the block is not in this flow (edited since).
    pub fn before(&self, block: &str) -> Option<Before<'_>> {
        let &(g, b) = self.places.get(block)?;
        let blocks = &self.groups[g].blocks;
        let start = blocks[..b].iter().rposition(|x| matches!(x.kind, Kind::Input(_))).map_or(0, |i| i + 1);
        let bubbles = blocks[start..b].iter().filter_map(|x| text(&x.kind)).collect();
        let variable = match &blocks[b].kind {
            Kind::Input(v) => v.as_deref(),
            _ => None,
        };
        Some(Before { bubbles, variable })
    }

    /// The text bubbles after `block` up to the next input (whose id comes with them) or the
    /// flow's end, following edges across groups (each group once: a flow may loop): what the
    /// bot said after the visitor's last answer, and where it waits for the next.
    pub fn after(&self, block: &str) -> After<'_> {
        let mut out = After::default();
        let Some(&(mut g, b)) = self.places.get(block) else { return out };
        let mut from = b + 1;
        let mut visited = HashSet::from([g]);
        loop {
            let blocks = &self.groups[g].blocks;
            for x in blocks.get(from..).unwrap_or_default() {
                match &x.kind {
                    Kind::Input(_) => return After { waits_at: Some(&x.id), ..out },
                    kind => out.bubbles.extend(text(kind)),
                }
            }
            // The group's end: where its last block leads.
            let Some((group, start)) = blocks.last().and_then(|x| self.edges.get(x.next.as_deref()?)) else {
                return out;
            };
            let Some(target) = self.groups.iter().position(|x| &x.id == group) else { return out };
            if !visited.insert(target) {
                return out;
            }
            g = target;
            from = match start.as_ref().and_then(|s| self.places.get(s)) {
                Some(&(tg, tb)) if tg == target => tb,
                _ => 0,
            };
        }
    }
}

fn string<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key)?.as_str()
}

fn text(kind: &Kind) -> Option<&str> {
    match kind {
        Kind::Text(t) if !t.trim().is_empty() => Some(t),
        _ => None,
    }
}

fn kind_of(kind: &str, block: &Value) -> Kind {
    // Every input type Typebot has ends in " input" ("text input", "email input", ...),
    // but the cards input.
    if kind.ends_with(" input") || kind == "cards" {
        return Kind::Input(block.get("options").and_then(|o| string(o, "variableId")).map(str::to_owned));
    }
    if kind != "text" {
        return Kind::Other;
    }
    let content = block.get("content");
    let rich = content.and_then(|c| c.get("richText")).and_then(Value::as_array);
    match rich {
        Some(elements) => Kind::Text(rich_text(elements)),
        None => Kind::Text(content.and_then(|c| string(c, "plainText")).unwrap_or_default().to_owned()),
    }
}

/// Plain text of the editor's rich text: the text leaves of each element, one line per
/// paragraph-level element.
pub fn rich_text(elements: &[Value]) -> String {
    fn walk(node: &Value, out: &mut String) {
        if let Some(text) = node.get("text").and_then(Value::as_str) {
            out.push_str(text);
        }
        for child in node.get("children").and_then(Value::as_array).into_iter().flatten() {
            walk(child, out);
        }
    }
    let lines: Vec<String> = elements
        .iter()
        .map(|e| {
            let mut line = String::new();
            walk(e, &mut line);
            line
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

/// `{{Name}}` replaced by the variable's value, as Typebot shows it: empty when it has none.
pub fn fill(text: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else { break };
        out.push_str(&rest[..open]);
        out.push_str(&value(rest[open + 2..open + 2 + close].trim()).unwrap_or_default());
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bubble(id: &str, text: &str) -> Value {
        json!({"id": id, "type": "text", "content": {"richText": [{"type": "p", "children": [{"text": text}]}]}})
    }

    fn input(id: &str, kind: &str, variable: &str) -> Value {
        json!({"id": id, "type": kind, "options": {"variableId": variable}})
    }

    fn flow() -> Flow {
        let groups = json!([
            {"id": "g1", "blocks": [
                bubble("b1", "Hi! I'm Ana."), bubble("b2", "What's your name?"), input("i1", "text input", "v_name"),
                bubble("b3", "Nice to meet you, {{Name}}. Your email?"), input("i2", "email input", "v_email"),
                {"id": "b4", "type": "Set variable", "outgoingEdgeId": "e1"}]},
            {"id": "g2", "blocks": [
                {"id": "b5", "type": "image", "content": {"url": "x"}}, bubble("b6", "Thanks, we'll call you.")]}
        ]);
        let edges = json!([{"id": "e1", "from": {"blockId": "b4"}, "to": {"groupId": "g2"}}]);
        Flow::parse(&groups.to_string(), Some(&edges.to_string())).unwrap()
    }

    #[test]
    fn the_bubbles_before_an_input_are_what_the_bot_asked() {
        let f = flow();
        assert_eq!(
            f.before("i1"),
            Some(Before { bubbles: vec!["Hi! I'm Ana.", "What's your name?"], variable: Some("v_name") })
        );
        assert_eq!(
            f.before("i2"),
            Some(Before { bubbles: vec!["Nice to meet you, {{Name}}. Your email?"], variable: Some("v_email") })
        );
        assert_eq!(f.before("gone"), None, "a block edited out of the flow");
        assert_eq!(
            f.after("i2"),
            After { bubbles: vec!["Thanks, we'll call you."], waits_at: None },
            "across the edge to the closing group"
        );
        assert_eq!(
            f.after("i1"),
            After { bubbles: vec!["Nice to meet you, {{Name}}. Your email?"], waits_at: Some("i2") }
        );
    }

    #[test]
    fn a_looping_flow_ends() {
        let groups = json!([{"id": "g", "blocks": [input("i", "text input", "v"), {"id": "x", "type": "Jump", "outgoingEdgeId": "e"}]}]);
        let edges = json!([{"id": "e", "to": {"groupId": "g"}}]);
        assert_eq!(Flow::parse(&groups.to_string(), Some(&edges.to_string())).unwrap().after("i"), After::default());
    }

    #[test]
    fn unknown_shapes_are_named() {
        assert!(Flow::parse("{", None).unwrap_err().contains("not JSON"));
        assert_eq!(Flow::parse(r#"{"blocks": []}"#, None).unwrap_err(), "groups is not a list");
        assert!(Flow::parse(r#"[{"id": "g", "steps": []}]"#, None).unwrap_err().contains("no blocks list"));
        assert!(Flow::parse(r#"[{"id": "g", "blocks": [{"id": "b"}]}]"#, None).unwrap_err().contains("no type"));
    }

    #[test]
    fn rich_text_reads_as_plain_lines_and_variables_fill_in() {
        let rich = json!([
            {"type": "p", "children": [{"text": "Hello "}, {"text": "there", "bold": true}]},
            {"type": "p", "children": [{"type": "a", "url": "https://x", "children": [{"text": "our site"}]}]}
        ]);
        assert_eq!(rich_text(rich.as_array().unwrap()), "Hello there\nour site");
        let value = |name: &str| (name == "Name").then(|| "Jane".to_owned());
        assert_eq!(fill("Hi {{Name}}, {{ Name }}! {{Other}}.", value), "Hi Jane, Jane! .");
        assert_eq!(fill("open {{ and none", value), "open {{ and none");
    }
}
