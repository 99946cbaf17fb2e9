//! `/openapi/v2` in protobuf, the only form kubectl asks for: gnostic's
//! `openapi.v2.Document` with its definitions, which kubectl's client-side
//! validation reads (for kinds without a PATCH operation, and for Lists).
//! Gnostic's messages have no Rust crate, and only a dozen of their fields
//! matter here, so they are encoded by hand (field numbers from gnostic's
//! OpenAPIv2.proto).

use serde_json::Value;

/// Protobuf wire encoding of one message.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn bytes(&mut self, field: u32, data: &[u8]) {
        self.varint(u64::from(field << 3 | 2));
        self.varint(data.len() as u64);
        self.0.extend_from_slice(data);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn message(&mut self, field: u32, m: Message) {
        self.bytes(field, &m.0);
    }

    fn boolean(&mut self, field: u32, b: bool) {
        self.varint(u64::from(field << 3));
        self.varint(u64::from(b));
    }
}

/// A `NamedAny` vendor extension: its value as YAML, as gnostic keeps them.
fn extension(name: &str, value: &Value) -> Message {
    let mut any = Message::default();
    any.string(2, &serde_yaml::to_string(value).unwrap_or_default());
    let mut named = Message::default();
    named.string(1, name);
    named.message(2, any);
    named
}

/// A JSON Schema object as `openapi.v2.Schema`.
fn schema(s: &Value) -> Message {
    let mut m = Message::default();
    let text = |k: &str| s[k].as_str().unwrap_or_default();
    m.string(1, text("$ref"));
    m.string(2, text("format"));
    m.string(4, text("description"));
    for required in s["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        m.string(19, required);
    }
    match &s["additionalProperties"] {
        Value::Object(_) => {
            let mut item = Message::default();
            item.message(1, schema(&s["additionalProperties"]));
            m.message(21, item);
        }
        Value::Bool(b) => {
            let mut item = Message::default();
            item.boolean(2, *b);
            m.message(21, item);
        }
        _ => {}
    }
    if let Some(kind) = s["type"].as_str() {
        let mut item = Message::default();
        item.string(1, kind);
        m.message(22, item);
    }
    if s["items"].is_object() {
        let mut item = Message::default();
        item.message(1, schema(&s["items"]));
        m.message(23, item);
    }
    for part in s["allOf"].as_array().into_iter().flatten() {
        m.message(24, schema(part));
    }
    if let Some(properties) = s["properties"].as_object() {
        let mut all = Message::default();
        for (name, property) in properties {
            all.message(1, named_schema(name, property));
        }
        m.message(25, all);
    }
    for (name, value) in s.as_object().into_iter().flatten().filter(|(k, _)| k.starts_with("x-")) {
        m.message(31, extension(name, value));
    }
    m
}

fn named_schema(name: &str, s: &Value) -> Message {
    let mut named = Message::default();
    named.string(1, name);
    named.message(2, schema(s));
    named
}

/// The document's swagger version, info and definitions (kubectl reads no
/// paths from it).
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut m = Message::default();
    m.string(1, doc["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Message::default();
    info.string(1, doc["info"]["title"].as_str().unwrap_or_default());
    info.string(2, doc["info"]["version"].as_str().unwrap_or_default());
    m.message(2, info);
    let mut definitions = Message::default();
    for (name, s) in doc["definitions"].as_object().into_iter().flatten() {
        definitions.message(1, named_schema(name, s));
    }
    m.message(9, definitions);
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_format_of_a_small_document() {
        let doc = json!({"swagger": "2.0", "info": {"title": "T", "version": "v"}, "definitions": {"a": {"type": "string"}}});
        // Document{swagger:"2.0", info{title:"T", version:"v"}, definitions{NamedSchema{name:"a", Schema{type{value:"string"}}}}}
        let expected = [
            &[0x0a, 3][..], b"2.0",
            &[0x12, 6, 0x0a, 1], b"T", &[0x12, 1], b"v",
            &[0x4a, 18, 0x0a, 16, 0x0a, 1], b"a", &[0x12, 11, 0xb2, 0x01, 8, 0x0a, 6], b"string",
        ]
        .concat();
        assert_eq!(encode(&doc), expected);
    }
}
