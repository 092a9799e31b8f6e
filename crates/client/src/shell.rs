//! The interactive shell: rustyline with history in ~/.warden_history, `help`, and tab
//! completion of command names and of the current command's `--field` names.

use std::borrow::Cow;
use std::path::PathBuf;

use anyhow::Result;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use warden_client::args::{complete_field, split_words};
use warden_client::schema;

use crate::Session;

const PROMPT: &str = "warden> ";
const SHELL_WORDS: &[&str] = &["help", "exit", "quit"];

/// Where the history is kept: `$HOME/.warden_history`, none without a HOME.
fn history_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".warden_history"))
}

/// Reads and runs command lines until end of input or `exit`.
pub fn run(mut session: Session) -> Result<()> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .history_ignore_dups(true)?
        .build();
    let mut editor: Editor<WardenHelper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(WardenHelper));
    let history = history_path();
    if let Some(path) = &history {
        // A missing or unreadable history file is just an empty history.
        let _ = editor.load_history(path);
    }
    loop {
        let line = match editor.readline(PROMPT) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                save(&mut editor, history.as_ref());
                return Err(e.into());
            }
        };
        if !line.trim().is_empty() {
            // Added by hand: rustyline's auto_add_history skips lines read from a non-tty.
            let _ = editor.add_history_entry(line.as_str());
        }
        let words = match split_words(&line) {
            Ok(words) => words,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        match words.first().map(String::as_str) {
            None => continue,
            Some("exit" | "quit") => break,
            Some(_) => {
                if let Err(e) = session.execute(&words) {
                    crate::report(&e);
                }
            }
        }
    }
    save(&mut editor, history.as_ref());
    Ok(())
}

fn save(editor: &mut Editor<WardenHelper, DefaultHistory>, path: Option<&PathBuf>) {
    if let Some(path) = path {
        if let Err(e) = editor.save_history(path) {
            eprintln!(
                "warning: cannot save the history to {}: {e}",
                path.display()
            );
        }
    }
}

/// Completion from the schema table.
struct WardenHelper;

impl WardenHelper {
    /// The candidates for the word ending at `pos` in `line`, and where that word starts.
    fn candidates(line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| {
            i + before[i..].chars().next().map_or(1, char::len_utf8)
        });
        let partial = &before[start..];
        let previous: Vec<&str> = before[..start].split_whitespace().collect();
        let names = || schema::command_names().chain(SHELL_WORDS.iter().copied());
        let candidates = match previous.as_slice() {
            [] => names()
                .filter(|n| n.starts_with(partial))
                .map(String::from)
                .collect(),
            ["help"] => schema::command_names()
                .filter(|n| n.starts_with(partial))
                .map(String::from)
                .collect(),
            [command, rest @ ..] => match schema::command(command) {
                // After a flag that takes a value, the value is being typed: nothing to offer.
                Some(c) if !rest.last().is_some_and(|w| takes_value(c, w)) => {
                    complete_field(c, partial)
                }
                _ => Vec::new(),
            },
        };
        (start, candidates)
    }
}

/// Whether `word` is a `--field` of `command` that takes a separate value (not a bool).
fn takes_value(command: &'static schema::CommandSchema, word: &str) -> bool {
    let Some(path) = word.strip_prefix("--") else {
        return false;
    };
    if path.contains('=') {
        return false;
    }
    let template: String = {
        let mut t = String::new();
        let mut chars = path.chars();
        while let Some(c) = chars.next() {
            t.push(c);
            if c == '[' {
                for c in chars.by_ref() {
                    if c == ']' {
                        t.push_str("N]");
                        break;
                    }
                }
            }
        }
        t
    };
    schema::field_paths(command.request)
        .iter()
        .any(|p| p.path == template && p.field.kind != schema::Kind::Bool)
}

impl Completer for WardenHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, candidates) = Self::candidates(line, pos);
        let pairs = candidates
            .into_iter()
            .map(|c| Pair {
                display: c.clone(),
                replacement: format!("{c} "),
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for WardenHelper {
    type Hint = String;
}

impl Highlighter for WardenHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Validator for WardenHelper {}

impl Helper for WardenHelper {}

#[cfg(test)]
mod tests {
    use super::WardenHelper;

    fn complete(line: &str) -> Vec<String> {
        WardenHelper::candidates(line, line.len()).1
    }

    #[test]
    fn completes_command_names() {
        assert_eq!(
            complete("li"),
            [
                "link",
                "limit_memory",
                "limit_disk",
                "limit_bandwidth",
                "limit_cpu",
                "list"
            ]
        );
        assert_eq!(complete("net"), ["net_in", "net_out"]);
        assert_eq!(complete("help cop"), ["copy_in", "copy_out"]);
        assert_eq!(complete("he"), ["help"]);
    }

    #[test]
    fn completes_fields_of_the_current_command() {
        assert_eq!(complete("stop --"), ["--handle", "--background", "--kill"]);
        assert_eq!(complete("stop --handle h --k"), ["--kill"]);
        assert_eq!(complete("spawn --rlimits.no"), ["--rlimits.nofile"]);
        assert_eq!(
            complete("create --bind_mounts[2].s"),
            ["--bind_mounts[2].src_path"]
        );
        assert_eq!(
            complete("create --bind"),
            [
                "--bind_mounts[0].src_path",
                "--bind_mounts[0].dst_path",
                "--bind_mounts[0].mode"
            ]
        );
        // A value is being typed: no flags offered.
        assert!(complete("stop --handle ").is_empty());
        // After a bool flag, the next flag.
        assert_eq!(complete("stop --kill --h"), ["--handle"]);
        assert!(complete("nosuch --").is_empty());
    }
}
