//! `warden`: the command line and interactive shell of wardend.
//!
//! `warden [--socket PATH] [--json] [--] COMMAND --field value ...` sends one request and
//! exits; without a command it starts a shell. See docs/client.md.

mod output;
mod shell;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use warden_client::args::{command_help, commands_help, parse_command};
use warden_client::{schema, Client, Request, DEFAULT_SOCKET};

#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    about = "Talk to wardend: one command, or an interactive shell when none is given.",
    after_help = "Examples:\n  warden ping\n  warden -- create --grace_time 5 --bind_mounts[0].src_path /a --bind_mounts[0].dst_path /b --bind_mounts[0].mode RO\n  warden run --handle H --script 'echo hi'\n  warden help create"
)]
struct Cli {
    /// The server's unix socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,

    /// Print responses as JSON (one object per line; one per chunk for job output).
    #[arg(long)]
    json: bool,

    /// The command and its fields (`create --grace_time 5`); none starts the shell.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

/// A connection made on first use and kept across commands (the shell's), remade after a
/// failure that broke it.
pub struct Session {
    socket: PathBuf,
    json: bool,
    /// In the shell, job commands also print the exit status.
    interactive: bool,
    client: Option<Client>,
}

impl Session {
    fn new(socket: PathBuf, json: bool, interactive: bool) -> Self {
        Session {
            socket,
            json,
            interactive,
            client: None,
        }
    }

    /// Runs one command line; the exit code it should end the program with.
    pub fn execute(&mut self, words: &[String]) -> Result<u8> {
        if words.first().map(String::as_str) == Some("help") {
            print!("{}", help(words.get(1).map(String::as_str))?);
            return Ok(0);
        }
        if words.len() > 1 && words[1..].iter().any(|w| w == "--help" || w == "-h") {
            print!("{}", help(Some(&words[0]))?);
            return Ok(0);
        }
        let request = parse_command(words)?;
        let result = self.send(request);
        if let Err(e) = &result {
            if let Some(e) = e.downcast_ref::<warden_client::Error>() {
                if !e.connection_usable() {
                    self.client = None;
                }
            }
        }
        result
    }

    fn client(&mut self) -> Result<&mut Client> {
        if self.client.is_none() {
            self.client = Some(Client::connect(&self.socket)?);
        }
        Ok(self.client.as_mut().expect("set above"))
    }

    fn send(&mut self, request: Request) -> Result<u8> {
        let json = self.json;
        let command = schema::command_for_type(request.message_type())
            .expect("every request type has a command");
        let final_chunk = match request {
            Request::Run(run) => {
                let stream = self.client()?.run_streaming_request(run)?;
                Some(stream_output(stream, json)?)
            }
            Request::Stream(req) => {
                let stream = self.client()?.stream(req)?;
                Some(stream_output(stream, json)?)
            }
            Request::Link(req) => {
                let response = self.client()?.link(req)?;
                let status = response.exit_status();
                if json {
                    output::print_response(command, &response.into(), true)?;
                } else {
                    output::write_output("stdout", response.stdout())?;
                    output::write_output("stderr", response.stderr())?;
                }
                return Ok(self.job_exit(status));
            }
            other => {
                let response = self.client()?.request(&other)?;
                output::print_response(command, &response, json)?;
                None
            }
        };
        Ok(final_chunk.map_or(0, |status| self.job_exit(status)))
    }

    fn job_exit(&self, status: u32) -> u8 {
        if self.interactive && !self.json {
            eprintln!("exit status: {status}");
        }
        u8::try_from(status).unwrap_or(u8::MAX)
    }
}

/// Prints a job's output as it comes; its exit status.
fn stream_output(stream: warden_client::JobStream<'_>, json: bool) -> Result<u32> {
    for chunk in stream {
        let chunk = chunk?;
        output::print_chunk(&chunk, json)?;
        if let Some(status) = chunk.exit_status {
            return Ok(status);
        }
    }
    anyhow::bail!("the job's output ended without an exit status")
}

fn help(command: Option<&str>) -> Result<String> {
    match command {
        None => Ok(commands_help()),
        Some(name) => {
            let command = schema::command(name).ok_or_else(|| {
                warden_client::args::ParseError::UnknownCommand { name: name.into() }
            })?;
            Ok(command_help(command))
        }
    }
}

/// Prints `error: ...` with each cause the message does not already contain.
pub fn report(e: &anyhow::Error) {
    let mut message = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    eprintln!("error: {message}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.is_empty() {
        let session = Session::new(cli.socket, cli.json, true);
        return match shell::run(session) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report(&e);
                ExitCode::FAILURE
            }
        };
    }
    let mut session = Session::new(cli.socket, cli.json, false);
    match session.execute(&cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}
