//! How the command line prints responses: human-readable, or one JSON object per response
//! (per chunk, for job output).

use std::io::Write;

use anyhow::{Context, Result};
use warden_client::schema::{self, CommandSchema};
use warden_client::value::Fields;
use warden_client::{Response, StreamResponse};

/// A response as generic fields, through the command's response schema.
pub fn fields_of(command: &CommandSchema, response: &Response) -> Result<Fields> {
    Fields::decode(command.response, &response.encode_payload())
        .with_context(|| format!("cannot show the {} response", command.name))
}

/// Prints a one-response command's answer.
pub fn print_response(command: &CommandSchema, response: &Response, json: bool) -> Result<()> {
    let fields = fields_of(command, response)?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&fields)?)?;
        return Ok(out.flush()?);
    }
    match response {
        Response::Create(r) => writeln!(out, "{}", r.handle)?,
        Response::Ping(_) => writeln!(out, "pong")?,
        Response::Echo(r) => writeln!(out, "{}", r.message)?,
        Response::List(r) => {
            for handle in &r.handles {
                writeln!(out, "{handle}")?;
            }
        }
        _ if command.response.fields.is_empty() => writeln!(out, "ok")?,
        _ => {
            for line in fields.to_lines() {
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(out.flush()?)
}

/// Prints one chunk of job output as it arrives: its data to stdout or stderr by its name
/// (human), or the whole chunk as a JSON line.
pub fn print_chunk(chunk: &StreamResponse, json: bool) -> Result<()> {
    if json {
        let fields = Fields::decode(&schema::STREAM_RESPONSE, &prost_bytes(chunk))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string(&fields)?)?;
        return Ok(out.flush()?);
    }
    if chunk.data().is_empty() {
        return Ok(());
    }
    write_output(chunk.name(), chunk.data())
}

/// Writes job output to the stream it came from ("stderr" to stderr, anything else stdout).
pub fn write_output(name: &str, data: &[u8]) -> Result<()> {
    if name == "stderr" {
        let mut err = std::io::stderr().lock();
        err.write_all(data)?;
        err.flush()?;
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(data)?;
        out.flush()?;
    }
    Ok(())
}

fn prost_bytes(chunk: &StreamResponse) -> Vec<u8> {
    warden_client::Response::Stream(chunk.clone()).encode_payload()
}
