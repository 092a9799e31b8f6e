//! The original REPL's command syntax, turned into requests through the [`crate::schema`] table.
//!
//! `COMMAND --field value ...`, where COMMAND is the request's name in snake_case:
//!
//! - nested fields are dotted: `--rlimits.nofile 1234`;
//! - repeated messages take an index, from 0 without gaps:
//!   `--bind_mounts[0].src_path /a --bind_mounts[0].dst_path /b --bind_mounts[0].mode RO`;
//!   a repeated scalar may also be given several times without an index, each one appended;
//! - a bool given bare (`--kill`, followed by another `--field` or by nothing) is `true`;
//!   `--kill false` sets it to false (written on the wire: beefcake writes fields set to their
//!   default too);
//! - enum values by name, in any case (`RO`/`rw`, `TCP`/`udp`/`ICMP`/`all`);
//! - `--field=value` works too, for values starting with `--`.
//!
//! ```
//! use warden_client::args::parse_command;
//! use warden_client::Request;
//!
//! let words = ["stop", "--handle", "abc", "--kill"].map(String::from);
//! let Request::Stop(stop) = parse_command(&words).unwrap() else { unreachable!() };
//! assert_eq!((stop.handle.as_str(), stop.kill), ("abc", Some(true)));
//! ```

use std::collections::BTreeMap;

use warden_protocol::{Message, Request};

use crate::schema::{self, CommandSchema, FieldSchema, Kind, Label, MessageSchema};
use crate::value::{Fields, Value};

/// Why a command line is not a request. Each names the command and the field concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line was empty.
    #[error("no command given (try `help`)")]
    NoCommand,
    /// The first word is not a command.
    #[error("unknown command {name:?} (commands: {})", schema::command_names().collect::<Vec<_>>().join(", "))]
    UnknownCommand {
        /// The word given.
        name: String,
    },
    /// A word where a `--field` was expected.
    #[error(
        "unexpected argument {token:?} for command {command}: fields are given as --field value"
    )]
    UnexpectedArgument {
        /// The command.
        command: &'static str,
        /// The word.
        token: String,
    },
    /// No such field in the command's request.
    #[error("unknown field --{field} for command {command} (try `help {command}`)")]
    UnknownField {
        /// The command.
        command: &'static str,
        /// The field path as given, without `--`.
        field: String,
    },
    /// A field path that does not fit the message's shape.
    #[error("bad field --{field} for command {command}: {reason}")]
    InvalidPath {
        /// The command.
        command: &'static str,
        /// The field path as given.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A malformed index, or a gap in a list's indices.
    #[error("bad index in --{field} for command {command}: {reason}")]
    BadIndex {
        /// The command.
        command: &'static str,
        /// The field path as given.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A non-bool field with nothing after it.
    #[error("--{field} of command {command} needs a value")]
    MissingValue {
        /// The command.
        command: &'static str,
        /// The field path as given.
        field: String,
    },
    /// A value that is not of the field's kind.
    #[error("invalid value {value:?} for --{field} of command {command}: expected {expected}")]
    InvalidValue {
        /// The command.
        command: &'static str,
        /// The field path as given.
        field: String,
        /// The value given.
        value: String,
        /// What the field takes.
        expected: String,
    },
    /// The same field set twice.
    #[error("--{field} is given twice for command {command}")]
    Duplicate {
        /// The command.
        command: &'static str,
        /// The field path as given.
        field: String,
    },
    /// A required field left out.
    #[error("missing required field --{field} for command {command}")]
    MissingField {
        /// The command.
        command: &'static str,
        /// The field's path (`handle`, `bind_mounts[0].mode`).
        field: String,
    },
    /// The request built does not decode as the protocol's message (a bug in the table).
    #[error("command {command} built a request the protocol refuses: {reason}")]
    Encoding {
        /// The command.
        command: &'static str,
        /// The protocol's error.
        reason: String,
    },
}

/// Parses `words` (the command name, then its `--field value` arguments) into a request.
pub fn parse_command(words: &[String]) -> Result<Request, ParseError> {
    let (name, args) = words.split_first().ok_or(ParseError::NoCommand)?;
    let command =
        schema::command(name).ok_or_else(|| ParseError::UnknownCommand { name: name.clone() })?;
    parse_request(command, args)
}

/// Parses the `--field value` arguments of `command` into its request.
pub fn parse_request(
    command: &'static CommandSchema,
    args: &[String],
) -> Result<Request, ParseError> {
    let fields = parse_fields(command, args)?;
    let envelope = Message {
        r#type: command.ty as i32,
        payload: fields.encode(),
    };
    Request::decode_envelope(&envelope).map_err(|e| ParseError::Encoding {
        command: command.name,
        reason: e.to_string(),
    })
}

/// Parses the `--field value` arguments of `command` into the request's fields, checking that
/// every required field is there.
pub fn parse_fields(
    command: &'static CommandSchema,
    args: &[String],
) -> Result<Fields, ParseError> {
    let mut root = Builder::new(command.request);
    let mut rest = args;
    while let Some((token, tail)) = rest.split_first() {
        rest = tail;
        let Some(spec) = token.strip_prefix("--").filter(|s| !s.is_empty()) else {
            return Err(ParseError::UnexpectedArgument {
                command: command.name,
                token: token.clone(),
            });
        };
        let (path, inline) = match spec.split_once('=') {
            Some((path, value)) => (path, Some(value.to_string())),
            None => (spec, None),
        };
        let segments = parse_path(command.name, path)?;
        let field = resolve(command, command.request, &segments, path)?;
        let next_is_value = rest.first().is_some_and(|next| !next.starts_with("--"));
        let raw = match (inline, field.kind) {
            (Some(v), _) => Some(v),
            (None, _) if next_is_value => {
                let (value, tail) = rest.split_first().expect("checked above");
                rest = tail;
                Some(value.clone())
            }
            (None, Kind::Bool) => None,
            (None, _) => {
                return Err(ParseError::MissingValue {
                    command: command.name,
                    field: path.to_string(),
                })
            }
        };
        let value = parse_value(command.name, path, field, raw)?;
        root.set(command.name, path, &segments, value)?;
    }
    root.finish(command.name, "")
}

/// One dotted part of a field path: a name and maybe an index.
#[derive(Debug)]
struct Segment<'a> {
    name: &'a str,
    index: Option<usize>,
}

fn parse_path<'a>(command: &'static str, path: &'a str) -> Result<Vec<Segment<'a>>, ParseError> {
    let bad_index = |reason: String| ParseError::BadIndex {
        command,
        field: path.to_string(),
        reason,
    };
    path.split('.')
        .map(|part| match part.split_once('[') {
            None if part.contains(']') => Err(bad_index(format!("unmatched ']' in {part:?}"))),
            None => Ok(Segment {
                name: part,
                index: None,
            }),
            Some((name, tail)) => {
                let digits = tail
                    .strip_suffix(']')
                    .ok_or_else(|| bad_index(format!("{part:?} does not end with ']'")))?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad_index(format!(
                        "{digits:?} is not an index (a number from 0)"
                    )));
                }
                let index = digits
                    .parse()
                    .map_err(|_| bad_index(format!("{digits} is too large")))?;
                Ok(Segment {
                    name,
                    index: Some(index),
                })
            }
        })
        .collect()
}

/// Walks the schema along `segments` to the leaf field they name.
fn resolve(
    command: &'static CommandSchema,
    mut message: &'static MessageSchema,
    segments: &[Segment],
    path: &str,
) -> Result<&'static FieldSchema, ParseError> {
    let invalid = |reason: String| ParseError::InvalidPath {
        command: command.name,
        field: path.to_string(),
        reason,
    };
    for (i, segment) in segments.iter().enumerate() {
        let field = message
            .field(segment.name)
            .ok_or_else(|| ParseError::UnknownField {
                command: command.name,
                field: path.to_string(),
            })?;
        let last = i + 1 == segments.len();
        match (field.label, segment.index) {
            (Label::Repeated, None) if !last || matches!(field.kind, Kind::Message(_)) => {
                return Err(invalid(format!(
                    "{} is a list: give an index, as {}[0]",
                    field.name, field.name
                )))
            }
            (Label::Required | Label::Optional, Some(_)) => {
                return Err(invalid(format!(
                    "{} is not a list: remove the index",
                    field.name
                )))
            }
            _ => {}
        }
        match (field.kind, last) {
            (Kind::Message(inner), false) => message = inner,
            (Kind::Message(inner), true) => {
                let some = inner.fields.first().map_or("FIELD", |f| f.name);
                return Err(invalid(format!(
                    "{} is a message: set its fields, as --{path}.{some}",
                    field.name
                )));
            }
            (_, false) => return Err(invalid(format!("{} has no fields inside", field.name))),
            (_, true) => return Ok(field),
        }
    }
    Err(ParseError::UnknownField {
        command: command.name,
        field: path.to_string(),
    })
}

/// Reads `raw` as a value of `field`'s kind; `None` (a bare flag) is `true` for a bool.
fn parse_value(
    command: &'static str,
    path: &str,
    field: &'static FieldSchema,
    raw: Option<String>,
) -> Result<Value, ParseError> {
    let Some(raw) = raw else {
        return Ok(Value::Bool(true));
    };
    let invalid = |expected: String| ParseError::InvalidValue {
        command,
        field: path.to_string(),
        value: raw.clone(),
        expected,
    };
    match field.kind {
        Kind::String => Ok(Value::Str(raw)),
        Kind::Bytes => Ok(Value::Bytes(raw.into_bytes())),
        Kind::Bool => match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "0" => Ok(Value::Bool(false)),
            _ => Err(invalid("true or false (or nothing, for true)".into())),
        },
        Kind::U32 => raw
            .parse::<u32>()
            .map(|n| Value::Uint(n.into()))
            .map_err(|_| invalid("an unsigned 32-bit number (uint32)".into())),
        Kind::U64 => raw
            .parse::<u64>()
            .map(Value::Uint)
            .map_err(|_| invalid("an unsigned 64-bit number (uint64)".into())),
        Kind::I32 => raw
            .parse::<i32>()
            .map(Value::Int)
            .map_err(|_| invalid("a signed 32-bit number (int32)".into())),
        Kind::Enum(names) => names
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&raw))
            .map(|(name, number)| Value::Enum(*number, Some(*name)))
            .ok_or_else(|| {
                let all: Vec<_> = names.iter().map(|(n, _)| *n).collect();
                invalid(format!("one of {}", all.join(", ")))
            }),
        Kind::Message(_) => unreachable!("resolve() refuses a message as the last segment"),
    }
}

/// A message being filled in from the command line.
struct Builder {
    schema: &'static MessageSchema,
    /// By field number.
    slots: BTreeMap<usize, Slot>,
}

enum Slot {
    Scalar(Value),
    Message(Builder),
    List(BTreeMap<usize, Slot>),
}

impl Builder {
    fn new(schema: &'static MessageSchema) -> Self {
        Builder {
            schema,
            slots: BTreeMap::new(),
        }
    }

    /// Stores `value` at `segments` (already checked by [`resolve`]).
    fn set(
        &mut self,
        command: &'static str,
        path: &str,
        segments: &[Segment],
        value: Value,
    ) -> Result<(), ParseError> {
        let (segment, rest) = segments.split_first().expect("resolve() saw a segment");
        let field = self.schema.field(segment.name).expect("resolve() found it");
        let duplicate = || ParseError::Duplicate {
            command,
            field: path.to_string(),
        };
        let (slots, key) = if field.label == Label::Repeated {
            let Slot::List(items) = self
                .slots
                .entry(field.tag as usize)
                .or_insert_with(|| Slot::List(BTreeMap::new()))
            else {
                unreachable!("a repeated field's slot is a list")
            };
            let next = items.keys().next_back().map_or(0, |i| i + 1);
            (items, segment.index.unwrap_or(next))
        } else {
            (&mut self.slots, field.tag as usize)
        };
        match field.kind {
            Kind::Message(inner) => {
                let Slot::Message(builder) = slots
                    .entry(key)
                    .or_insert_with(|| Slot::Message(Builder::new(inner)))
                else {
                    unreachable!("a message field's slot is a message")
                };
                builder.set(command, path, rest, value)
            }
            _ if slots.contains_key(&key) => Err(duplicate()),
            _ => {
                slots.insert(key, Slot::Scalar(value));
                Ok(())
            }
        }
    }

    /// The finished message: required fields checked, list indices checked for gaps.
    fn finish(self, command: &'static str, prefix: &str) -> Result<Fields, ParseError> {
        let mut fields = Fields::new(self.schema);
        let mut slots = self.slots;
        for field in self.schema.fields {
            let path = format!("{prefix}{}", field.name);
            let Some(slot) = slots.remove(&(field.tag as usize)) else {
                if field.label == Label::Required {
                    return Err(ParseError::MissingField {
                        command,
                        field: path,
                    });
                }
                continue;
            };
            match slot {
                Slot::Scalar(value) => fields.insert(field, value),
                Slot::Message(inner) => fields.insert(
                    field,
                    Value::Message(inner.finish(command, &format!("{path}."))?),
                ),
                Slot::List(items) => {
                    for (expected, (index, item)) in items.into_iter().enumerate() {
                        if index != expected {
                            return Err(ParseError::BadIndex {
                                command,
                                field: format!("{path}[{index}]"),
                                reason: format!(
                                    "{path}[{expected}] is missing (indices count from 0 without gaps)"
                                ),
                            });
                        }
                        let value = match item {
                            Slot::Scalar(value) => value,
                            Slot::Message(inner) => {
                                Value::Message(inner.finish(command, &format!("{path}[{index}]."))?)
                            }
                            Slot::List(_) => unreachable!("a list entry is a scalar or a message"),
                        };
                        fields.insert(field, value);
                    }
                }
            }
        }
        Ok(fields)
    }
}

/// Splits a shell line into words as a POSIX shell would, without expansions: blanks
/// separate words; `'...'` keeps everything literally; `"..."` keeps everything but `\"` and
/// `\\`; a backslash outside quotes escapes the next character.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("a line cannot end with \\".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// The help of one command: its summary, then each field with its kind, `required` marked.
pub fn command_help(command: &'static CommandSchema) -> String {
    let mut out = format!("{}: {}\n", command.name, command.summary);
    let paths = schema::field_paths(command.request);
    if paths.is_empty() {
        out.push_str("  (no fields)\n");
    }
    let width = paths.iter().map(|p| p.path.len() + 2).max().unwrap_or(0);
    let kind_width = paths
        .iter()
        .map(|p| p.field.kind.describe().len())
        .max()
        .unwrap_or(0);
    for p in &paths {
        let flag = format!("--{}", p.path);
        let kind = p.field.kind.describe();
        let line = if p.required {
            format!("  {flag:<width$}  {kind:<kind_width$}  required")
        } else {
            format!("  {flag:<width$}  {kind}")
        };
        out.push_str(&line);
        out.push('\n');
    }
    if paths.iter().any(|p| p.path.contains("[N]")) {
        out.push_str("  [N]: an index from 0, e.g. --bind_mounts[0].src_path /a\n");
    }
    if paths.iter().any(|p| p.field.kind == Kind::Bool) {
        out.push_str("  a bool given alone (--flag) is true\n");
    }
    out
}

/// The list of commands with their summaries.
pub fn commands_help() -> String {
    let width = schema::COMMANDS
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::from("commands (`help COMMAND` lists its fields):\n");
    for c in schema::COMMANDS {
        out.push_str(&format!("  {:<width$}  {}\n", c.name, c.summary));
    }
    out.push_str("fields are given as --field value; e.g. create --grace_time 5 --bind_mounts[0].src_path /a\n");
    out
}

/// Completions of the flag being typed, `partial` (`--bind_mounts[1].s`), for `command`:
/// every field path that starts with it, indices filled in from what was typed (else 0).
pub fn complete_field(command: &'static CommandSchema, partial: &str) -> Vec<String> {
    let typed = partial.strip_prefix("--").unwrap_or("");
    if !partial.is_empty() && !partial.starts_with("--") && partial != "-" {
        return Vec::new();
    }
    // The indices typed so far, in order; an index still being typed counts too.
    let mut indices: Vec<String> = Vec::new();
    let mut rest = typed;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        indices.push(if digits.is_empty() {
            "0".into()
        } else {
            digits.clone()
        });
        rest = &after[digits.len()..];
    }
    schema::field_paths(command.request)
        .into_iter()
        .map(|p| {
            let mut filled = String::from("--");
            let mut parts = p.path.split("[N]").peekable();
            let mut i = 0;
            while let Some(part) = parts.next() {
                filled.push_str(part);
                if parts.peek().is_some() {
                    let index = indices.get(i).map_or("0", String::as_str);
                    filled.push_str(&format!("[{index}]"));
                    i += 1;
                }
            }
            filled
        })
        .filter(|candidate| candidate.starts_with(partial) || partial.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_protocol::*;

    fn words(line: &str) -> Vec<String> {
        split_words(line).unwrap()
    }

    fn parse(line: &str) -> Result<Request, ParseError> {
        parse_command(&words(line))
    }

    fn error(line: &str) -> String {
        parse(line).unwrap_err().to_string()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn create_with_nested_repeated_fields_gives_the_original_bytes() {
        let request = parse(
            "create --bind_mounts[0].src_path /src --bind_mounts[0].dst_path /dst \
             --bind_mounts[0].mode RO --grace_time 30 --handle abc",
        )
        .unwrap();
        // SPEC §1's vector, from the original Ruby encoder.
        assert_eq!(
            hex(&request.to_frame()),
            "32370d0a080b12170a0e0a042f73726312042f6473741800101e1a036162630d0a"
        );
    }

    #[test]
    fn fields_may_come_in_any_order_and_indices_out_of_order() {
        let request = parse(
            "create --bind_mounts[1].mode rw --handle h --bind_mounts[0].src_path /a \
             --bind_mounts[1].src_path /c --bind_mounts[0].mode ro \
             --bind_mounts[1].dst_path /d --bind_mounts[0].dst_path /b",
        )
        .unwrap();
        let Request::Create(create) = request else {
            panic!("not a create: {request:?}")
        };
        assert_eq!(create.handle.as_deref(), Some("h"));
        let mounts: Vec<_> = create
            .bind_mounts
            .iter()
            .map(|m| (m.src_path.as_str(), m.dst_path.as_str(), m.mode()))
            .collect();
        assert_eq!(mounts, [("/a", "/b", Mode::Ro), ("/c", "/d", Mode::Rw)]);
    }

    #[test]
    fn bare_bool_flags_are_true_and_explicit_false_is_written() {
        let Request::Stop(stop) = parse("stop --kill --background --handle h").unwrap() else {
            panic!()
        };
        assert_eq!((stop.kill, stop.background), (Some(true), Some(true)));
        let Request::Stop(stop) = parse("stop --handle h --kill").unwrap() else {
            panic!()
        };
        assert_eq!((stop.kill, stop.background), (Some(true), None));
        assert_eq!(
            hex(&parse("stop --handle h").unwrap().encode_payload()),
            "0a0168"
        );
        assert_eq!(
            hex(&parse("stop --handle h --background false")
                .unwrap()
                .encode_payload()),
            "0a01685000"
        );
    }

    #[test]
    fn nested_messages_enums_and_negative_numbers() {
        let Request::Spawn(spawn) = parse(
            "spawn --handle h --script 'echo hi' --rlimits.nofile 1234 --rlimits.as 5 --privileged",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(spawn.script, "echo hi");
        assert_eq!(spawn.privileged, Some(true));
        let rlimits = spawn.rlimits.unwrap();
        assert_eq!((rlimits.nofile, rlimits.r#as), (Some(1234), Some(5)));

        let request = parse("net_out --handle h --protocol icmp --icmp_type -1 --log").unwrap();
        let Request::NetOut(net_out) = &request else {
            panic!()
        };
        assert_eq!(net_out.protocol(), Protocol::Icmp);
        assert_eq!(net_out.icmp_type, Some(-1));
        assert_eq!(net_out.log, Some(true));
        // A negative int32 takes ten bytes, as beefcake writes it.
        assert_eq!(
            hex(&request.encode_payload()),
            "0a0168_2802_30ffffffffffffffffff01_4001".replace('_', "")
        );
    }

    #[test]
    fn equals_form_and_commands_without_fields() {
        let Request::Echo(echo) = parse("echo --message=--not-a-flag").unwrap() else {
            panic!()
        };
        assert_eq!(echo.message, "--not-a-flag");
        assert_eq!(parse("ping").unwrap(), Request::Ping(PingRequest {}));
        assert_eq!(parse("list").unwrap(), Request::List(ListRequest {}));
    }

    #[test]
    fn wrong_type_names_the_field_and_the_value() {
        assert_eq!(
            error("create --grace_time abc"),
            "invalid value \"abc\" for --grace_time of command create: expected an unsigned 32-bit number (uint32)"
        );
        assert!(error("create --grace_time 4294967296").contains("\"4294967296\""));
        assert!(error("create --grace_time -1").contains("--grace_time"));
        assert_eq!(
            error("create --bind_mounts[0].mode XX"),
            "invalid value \"XX\" for --bind_mounts[0].mode of command create: expected one of RO, RW"
        );
        assert!(error("stop --handle h --kill maybe").contains("\"maybe\" for --kill"));
    }

    #[test]
    fn unknown_fields_and_commands_are_named() {
        assert_eq!(
            error("create --nosuch 1"),
            "unknown field --nosuch for command create (try `help create`)"
        );
        assert_eq!(
            error("spawn --handle h --script s --rlimits.files 3"),
            "unknown field --rlimits.files for command spawn (try `help spawn`)"
        );
        assert!(error("frobnicate").starts_with("unknown command \"frobnicate\""));
        assert_eq!(parse_command(&[]).unwrap_err(), ParseError::NoCommand);
    }

    #[test]
    fn bad_indices() {
        assert_eq!(
            error("create --bind_mounts[x].src_path /a"),
            "bad index in --bind_mounts[x].src_path for command create: \"x\" is not an index (a number from 0)"
        );
        assert!(error("create --bind_mounts[].src_path /a").contains("is not an index"));
        assert!(error("create --bind_mounts[-1].src_path /a").contains("is not an index"));
        assert!(error("create --bind_mounts[0.src_path /a").contains("does not end with ']'"));
        assert!(error("create --bind_mounts]0[.src_path /a").contains("bad index"));
        assert!(
            error("create --bind_mounts[99999999999999999999999].src_path /a")
                .contains("too large")
        );
        // Indices count from 0, without gaps.
        assert_eq!(
            error("create --bind_mounts[1].src_path /a --bind_mounts[1].dst_path /b --bind_mounts[1].mode RO"),
            "bad index in --bind_mounts[1] for command create: bind_mounts[0] is missing (indices count from 0 without gaps)"
        );
        assert!(error("create --handle[0] h").contains("handle is not a list"));
        assert!(error("create --bind_mounts.src_path /a").contains("give an index"));
    }

    #[test]
    fn shape_errors() {
        assert!(error("spawn --handle h --script s --rlimits 3").contains("rlimits is a message"));
        assert!(error("stop --handle.x h").contains("handle has no fields inside"));
        assert_eq!(
            error("echo --message"),
            "--message of command echo needs a value"
        );
        assert_eq!(
            error("echo --message --other"),
            "--message of command echo needs a value"
        );
        assert_eq!(
            error("echo hello"),
            "unexpected argument \"hello\" for command echo: fields are given as --field value"
        );
        assert_eq!(
            error("echo --message a --message b"),
            "--message is given twice for command echo"
        );
        assert!(
            error("create --bind_mounts[0].src_path /a --bind_mounts[0].src_path /b")
                .contains("given twice")
        );
    }

    #[test]
    fn missing_required_fields_are_named() {
        assert_eq!(
            error("stop"),
            "missing required field --handle for command stop"
        );
        assert_eq!(
            error("spawn --handle h"),
            "missing required field --script for command spawn"
        );
        assert_eq!(
            error("create --bind_mounts[0].src_path /a --bind_mounts[0].dst_path /b"),
            "missing required field --bind_mounts[0].mode for command create"
        );
        assert_eq!(
            error("limit_bandwidth --handle h --rate 1"),
            "missing required field --burst for command limit_bandwidth"
        );
    }

    #[test]
    fn every_command_parses_with_its_required_fields() {
        for command in schema::COMMANDS {
            let mut args = Vec::new();
            for path in schema::field_paths(command.request) {
                if !path.required || path.path.contains("[N]") {
                    continue;
                }
                args.push(format!("--{}", path.path));
                args.push(match path.field.kind {
                    Kind::String => "x".into(),
                    _ => "1".into(),
                });
            }
            let request =
                parse_request(command, &args).unwrap_or_else(|e| panic!("{}: {e}", command.name));
            assert_eq!(request.message_type(), command.ty, "{}", command.name);
        }
    }

    #[test]
    fn split_words_quotes_like_a_shell() {
        assert_eq!(
            words(r#"run --script "echo \"hi\" there" --handle 'a b'  x\ y"#),
            [
                "run",
                "--script",
                "echo \"hi\" there",
                "--handle",
                "a b",
                "x y"
            ]
        );
        assert_eq!(words("  "), Vec::<String>::new());
        assert_eq!(words("a''b \"\""), ["ab", ""]);
        assert!(split_words("echo 'open").is_err());
        assert!(split_words("echo \"open").is_err());
        assert!(split_words("echo \\").is_err());
    }

    #[test]
    fn help_lists_fields_from_the_table() {
        let help = command_help(schema::command("create").unwrap());
        assert!(help.starts_with("create: create a container"));
        assert!(help.contains("--bind_mounts[N].mode"));
        assert!(help.contains("RO|RW"));
        assert!(help.contains("--grace_time"));
        let stop = command_help(schema::command("stop").unwrap());
        assert!(stop
            .lines()
            .any(|l| l.contains("--handle") && l.ends_with("required")));
        assert!(stop
            .lines()
            .any(|l| l.contains("--kill") && l.ends_with("bool")));
        assert!(command_help(schema::command("ping").unwrap()).contains("(no fields)"));
        let all = commands_help();
        for name in schema::command_names() {
            assert!(all.contains(name), "{name}");
        }
    }
}
