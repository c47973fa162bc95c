//! Operator commands: requests to paths under `/v1/` that carry `Authorization: Bearer
//! TOKEN` are handed to the server loop, which answers each between two turns (so a command
//! acts on the state machines from their own thread, and what it promises is made durable
//! like everything else before its effects are sent). Without a token configured, `/v1/` is
//! `404`; a missing or wrong token is `401`; a loop that does not answer within 5 s is `504`.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Commands queued at most; more are refused with `503` until the loop catches up.
const MAX_QUEUED: usize = 16;

/// How long the HTTP thread waits for the loop's answer.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest token accepted (a token is a shared secret: 16 characters at least).
pub const MIN_TOKEN_LEN: usize = 16;

/// One operator command, for the server loop to answer with [`CommandRequest::respond`].
#[derive(Debug)]
pub struct CommandRequest {
    method: String,
    path: String,
    query: String,
    reply: mpsc::SyncSender<(u16, String)>,
}

impl CommandRequest {
    /// `GET` or `POST`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path below `/v1`, split on `/` without empty parts: `/v1/game-servers/7/revoke`
    /// is `["game-servers", "7", "revoke"]`.
    pub fn segments(&self) -> Vec<&str> {
        self.path
            .trim_start_matches("/v1")
            .split('/')
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The value of query parameter `name`, if given (`?until_unix_ms=…`).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find_map(|(key, value)| (key == name).then_some(value))
    }

    /// Answers with `status` and a JSON `body`.
    pub fn respond(self, status: u16, body: String) {
        // The HTTP thread may have given up waiting: nobody to tell then.
        let _ = self.reply.send((status, body));
    }
}

/// The command queue between the HTTP thread and the loop.
#[derive(Debug)]
pub(crate) struct Commands {
    token: String,
    queue: Mutex<VecDeque<CommandRequest>>,
}

/// What the HTTP thread makes of a `/v1/` request.
pub(crate) enum Submitted {
    /// Queued: wait for the answer here.
    Queued(mpsc::Receiver<(u16, String)>),
    /// Answered at once (bad token, queue full).
    Answered(u16, &'static str),
}

impl Commands {
    pub(crate) fn new(token: String) -> Self {
        Self {
            token,
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// Checks `authorization` and queues the request.
    pub(crate) fn submit(&self, method: &str, url: &str, authorization: Option<&str>) -> Submitted {
        let presented = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(presented.trim().as_bytes(), self.token.as_bytes()) {
            return Submitted::Answered(401, "{\"error\":\"missing or wrong bearer token\"}");
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= MAX_QUEUED {
            return Submitted::Answered(503, "{\"error\":\"too many commands queued\"}");
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let (reply, answer) = mpsc::sync_channel(1);
        queue.push_back(CommandRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            reply,
        });
        Submitted::Queued(answer)
    }

    pub(crate) fn poll(&self) -> Option<CommandRequest> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_token_queues_and_the_queue_is_bounded() {
        let commands = Commands::new("s3cret-token-0123456".into());
        for wrong in [None, Some("Bearer nope"), Some("s3cret-token-0123456")] {
            assert!(matches!(
                commands.submit("GET", "/v1/x", wrong),
                Submitted::Answered(401, _)
            ));
        }
        let good = Some("Bearer s3cret-token-0123456");
        let Submitted::Queued(answer) = commands.submit("POST", "/v1/game-servers/7/revoke?x=1&y=2", good)
        else {
            panic!("the right token queues");
        };
        let request = commands.poll().unwrap();
        assert_eq!(request.segments(), ["game-servers", "7", "revoke"]);
        assert_eq!((request.query("y"), request.query("z")), (Some("2"), None));
        request.respond(200, "{}".into());
        assert_eq!(answer.recv().unwrap(), (200, "{}".to_owned()));
        let mut held = Vec::new();
        for _ in 0..MAX_QUEUED {
            held.push(commands.submit("GET", "/v1/x", good));
        }
        assert!(matches!(
            commands.submit("GET", "/v1/x", good),
            Submitted::Answered(503, _)
        ));
    }
}
