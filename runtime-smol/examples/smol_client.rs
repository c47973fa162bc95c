//! Joins a tickwire demo server (`tickwire-gs`), sends a few messages, prints what came back
//! and the statistics.
//!
//! ```text
//! cargo run -p tickwire-apps --bin tickwire-client -- --issuer-key /tmp/tw/issuer.pem \
//!     --write-ticket /tmp/tw/ticket.bin
//! cargo run -p tickwire-smol --example smol_client -- \
//!     --server 127.0.0.1:4433 --ticket /tmp/tw/ticket.bin --identity-key /tmp/tw/ticket.bin.key
//! ```
//!
//! The ticket file holds the bytes of `JoinTicket::to_bytes()`; the key file the identity it
//! names (PKCS#8 PEM, as `tickwire-client --write-ticket` writes it). The endpoint's secrets
//! come from the OS, and its config is the demo's (`tickwire_apps::demo::demo_config`, for the
//! schema hash).

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;

use tickwire_apps::demo::demo_config;
use tickwire_core::{ChannelId, ConnectOptions, JoinTicket, ReasonCode};
use tickwire_smol::{connect, wall_clock_now};
use tickwire_udp::os::load_signing_key;
use tickwire_udp::os_secrets;

/// Ticks to keep listening for replies after sending (one second at 60 Hz).
const LISTEN_TICKS: u64 = 60;

struct Args {
    server: SocketAddr,
    ticket: PathBuf,
    identity_key: PathBuf,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let (mut server, mut ticket, mut identity_key) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => server = Some(value.parse()?),
            "--ticket" => ticket = Some(PathBuf::from(value)),
            "--identity-key" => identity_key = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown argument {flag}").into()),
        }
    }
    let usage = "usage: smol_client --server ADDR --ticket PATH --identity-key PATH";
    Ok(Args {
        server: server.ok_or(usage)?,
        ticket: ticket.ok_or(usage)?,
        identity_key: identity_key.ok_or(usage)?,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let bytes = std::fs::read(&args.ticket).map_err(|e| format!("{}: {e}", args.ticket.display()))?;
    let ticket = JoinTicket::from_bytes(&bytes)?;
    let identity = load_signing_key(&args.identity_key)?;
    let config = demo_config();
    let secrets = os_secrets()?;
    smol::block_on(async {
        let mut client = connect(
            config,
            secrets,
            identity,
            wall_clock_now(),
            args.server,
            ticket,
            ConnectOptions::default(),
        )
        .await?;
        println!("joined {} as {:?}", args.server, client.session().role);
        for i in 0..3 {
            client.send(ChannelId::GAME, format!("reliable {i}").into_bytes())?;
            client.send(ChannelId::UNRELIABLE, format!("datagram {i}").into_bytes())?;
        }
        let mut ticks = 0;
        while let Some(tick) = client.next_tick().await {
            while let Some(message) = client.try_recv() {
                match std::str::from_utf8(&message.payload) {
                    Ok(text) => println!("tick {tick}: {text:?} on {:?}", message.channel),
                    Err(_) => println!(
                        "tick {tick}: {} bytes on {:?}",
                        message.payload.len(),
                        message.channel
                    ),
                }
            }
            ticks += 1;
            if ticks == LISTEN_TICKS {
                break;
            }
        }
        if let Some((reason, detail)) = client.closed() {
            println!("session ended: {reason} ({detail})");
        }
        if let Some(stats) = client.stats() {
            println!("{stats:#?}");
        }
        println!("{:#?}", client.io().pump_stats());
        client.close(ReasonCode::NORMAL, "example done").await?;
        Ok(())
    })
}
