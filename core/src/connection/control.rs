//! The control stream: the handshake's Hello and Accept (`PROTOCOL.md` §4), on both sides.

use std::time::Duration;

use quinn_proto::{Dir, StreamId};

use super::{Conn, Ctx, State};
use crate::channel::CONTROL_PRIORITY;
use crate::handshake::{AwaitingHello, Exporter, Rejection, ServerContribution, ServerPolicy, Session};
use crate::shared::Event;
use crate::tick::TickSync;
use crate::ticket::JoinTicket;
use crate::tls::{EXPORTER_LABEL, EXPORTER_LEN};
use crate::wire::{self, Control, ReasonCode};

use super::streams::QueuedFrame;

impl Conn {
    fn exporter(&self) -> Option<Exporter> {
        let mut out = [0u8; EXPORTER_LEN];
        self.quic
            .crypto_session()
            .export_keying_material(&mut out, EXPORTER_LABEL, b"")
            .ok()?;
        Some(out)
    }

    pub(super) fn handle_quic_connected(&mut self, ctx: &mut Ctx<'_>) {
        // A WebTransport session first runs HTTP/3; its handshake starts with the Challenge.
        if self.start_webtransport(ctx) {
            return;
        }
        let Some(exporter) = self.exporter() else {
            self.close_now(
                ctx,
                Rejection::new(ReasonCode::TRANSPORT_ERROR, "TLS exporter unavailable"),
            );
            return;
        };
        match std::mem::replace(&mut self.state, State::Closed) {
            State::ClientConnecting(handshake) => {
                let (next, hello) = (*handshake).start(exporter, (ctx.nonce)());
                self.state = State::ClientAwaitingAccept(Box::new(next));
                let Some(id) = self.quic.streams().open(Dir::Bi) else {
                    self.close(
                        ctx,
                        Rejection::new(ReasonCode::TRANSPORT_ERROR, "no control stream credit"),
                    );
                    return;
                };
                let _ = self.quic.send_stream(id).set_priority(CONTROL_PRIORITY);
                self.control = Some(id);
                self.queue_control(&hello);
            }
            State::ServerConnecting(None) => self.await_hello(ctx, exporter),
            State::ServerConnecting(Some(rejection)) => {
                self.state = State::ServerConnecting(None);
                self.close_now(ctx, rejection);
            }
            other => self.state = other,
        }
    }

    /// Server: waits for the Hello, whose signature binds to `binding` (the exporter, or a
    /// WebTransport session's certificate binding), for at most `hello_timeout_ms`.
    pub(super) fn await_hello(&mut self, ctx: &Ctx<'_>, binding: Exporter) {
        self.state = State::ServerAwaitingHello(AwaitingHello::new(binding));
        self.hello_wait_since = Some(ctx.now);
        let hello_by = ctx.now + Duration::from_millis(ctx.config.hello_timeout_ms);
        self.handshake_deadline = self.handshake_deadline.map(|d| d.min(hello_by));
    }

    /// Reads the control stream and acts on every complete frame the state can take.
    pub(super) fn read_control(&mut self, ctx: &mut Ctx<'_>) {
        let Some(id) = self.control else { return };
        let decoder = &mut self.control_rx;
        Self::drain_stream(&mut self.quic, id, |bytes| decoder.push_bytes(bytes));
        while self.next_control_frame(ctx) {}
    }

    /// Acts on the next complete control frame, if the state expects one; `true` if it took
    /// one and the session is still open (so another may follow).
    fn next_control_frame(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if matches!(
            self.state,
            State::ServerConnecting(_) | State::Verifying | State::Closed
        ) {
            return false; // keep buffered until the handshake state can take it
        }
        let frame = match self.control_rx.poll_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => return false,
            Err(e) => {
                self.close(ctx, Rejection::new(ReasonCode::BAD_HANDSHAKE, e.to_string()));
                return false;
            }
        };
        let message: Control = match wire::decode(&frame) {
            Ok(message) => message,
            Err(e) => {
                self.close(ctx, Rejection::new(ReasonCode::BAD_HANDSHAKE, e.to_string()));
                return false;
            }
        };
        match std::mem::replace(&mut self.state, State::Closed) {
            State::ClientConnecting(handshake) => {
                // Only a WebTransport server speaks first, with the Challenge (`PROTOCOL.md`
                // §12.5).
                let binding = match &message {
                    Control::Challenge(challenge) => self.check_challenge(challenge),
                    _ => Err(Rejection::new(ReasonCode::BAD_HANDSHAKE, "expected a Challenge")),
                };
                match binding {
                    Ok(binding) => {
                        let (next, hello) = (*handshake).start(binding, (ctx.nonce)());
                        self.state = State::ClientAwaitingAccept(Box::new(next));
                        self.queue_control(&hello);
                        self.flush(ctx.now);
                    }
                    Err(rejection) => {
                        self.state = State::Verifying;
                        self.close(ctx, rejection);
                    }
                }
            }
            State::ClientAwaitingAccept(awaiting) => match awaiting.handle_accept(&message, ctx.unix_ms) {
                Ok(session) => self.establish(ctx, session),
                Err(rejection) => {
                    self.state = State::Verifying;
                    self.close(ctx, rejection);
                }
            },
            State::ServerAwaitingHello(awaiting) => {
                self.state = State::Verifying;
                self.answer_hello(ctx, awaiting, &message);
            }
            other => {
                self.state = other;
                self.close(
                    ctx,
                    Rejection::new(ReasonCode::PROTOCOL_VIOLATION, "unexpected control message"),
                );
            }
        }
        !matches!(self.state, State::Closed)
    }

    /// Server: checks the Hello against the endpoint's policy and join-ticket verifier
    /// (`PROTOCOL.md` §4.4.1), then answers with an Accept and goes live, or closes with the
    /// rejection.
    fn answer_hello(&mut self, ctx: &mut Ctx<'_>, awaiting: AwaitingHello, hello: &Control) {
        let config = ctx.config;
        let contribution = ServerContribution {
            nonce: (ctx.nonce)(),
            session_id: u64::from_be_bytes((ctx.nonce)()[..8].try_into().expect("nonce is 24 bytes")),
            server_tick: ctx.server_tick,
            tick_rate_hz: u16::try_from(config.tick.tick_rate_hz).unwrap_or(u16::MAX),
        };
        let unix_ms = ctx.unix_ms;
        let Some(server) = ctx.server.as_mut() else {
            // Only server connections wait for a Hello, and they are processed with one.
            self.close(
                ctx,
                Rejection::new(ReasonCode::PROTOCOL_VIOLATION, "unexpected Hello"),
            );
            return;
        };
        let policy = ServerPolicy {
            version_min: config.version_min,
            version_max: config.version_max,
            schema_hash: config.schema_hash,
            capabilities: config.offered_capabilities(),
            identity: server.identity,
            accept_game_servers: config.accept_game_servers,
            play_ticket: server.play_ticket,
            dictionary_hash: ctx.codec.dictionary_hash(),
        };
        let tickets = &mut *server.tickets;
        let verdict = awaiting.handle_hello(
            &policy,
            hello,
            contribution,
            |ticket: &JoinTicket, key: &[u8; 32]| tickets.verify(ticket, unix_ms, key),
        );
        match verdict {
            Ok((session, accept)) => {
                self.queue_control(&accept);
                self.establish(ctx, session);
                self.flush(ctx.now);
            }
            Err(rejection) => self.close(ctx, rejection),
        }
    }

    fn establish(&mut self, ctx: &mut Ctx<'_>, session: Session) {
        self.state = State::Established;
        self.handshake_deadline = None;
        if self.tick_sync.is_some() {
            // The server's tick rate is authoritative: the client paces its ticks by it.
            let mut config = ctx.config.tick_sync.clone();
            config.tick_rate_hz = u32::from(session.tick_rate_hz);
            let mut sync = TickSync::new(config);
            sync.handle_sample(ctx.now, session.server_tick, self.quic.rtt());
            self.tick_sync = Some(sync);
        }
        self.heartbeat.handle_receive(ctx.now);
        ctx.events.push_back(Event::Connected {
            conn: ctx.handle,
            session: Box::new(session.clone()),
        });
        ctx.session_events += 1;
        self.session = Some(session);
        self.send_heartbeat(ctx.now, self.local_tick(ctx.server_tick), true);
        // Reliable messages that arrived with or before the accept were held in QUIC until now.
        let early: Vec<StreamId> = self.rx_streams.keys().copied().collect();
        for id in early {
            self.read_stream(ctx, id);
        }
    }

    pub(super) fn queue_control(&mut self, message: &Control) {
        self.control_tx.push_back(QueuedFrame {
            bytes: wire::encode_frame(&wire::encode(message)),
            written: 0,
            deadline: None,
        });
    }
}
