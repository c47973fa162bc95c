//! Joins a tickwire demo server (`tickwire-gs`), sends a few messages, prints what came back
//! and the statistics.
//!
//! ```text
//! cargo run -p tickwire-mio --bin tickwire-client -- --write-ticket ticket.bin --first 0 --seed 7
//! cargo run -p tickwire-smol --example smol_client -- \
//!     --server 127.0.0.1:4433 --ticket ticket.bin --identity-seed 7
//! ```
//!
//! The ticket file holds the bytes of `JoinTicket::to_bytes()` for demo client 0 of seed N,
//! whose identity and config come from `tickwire_mio::demo` (same schema hash as the server).

use std::error::Error;
use std::net::SocketAddr;

use tickwire_core::{ChannelId, ConnectOptions, JoinTicket, ReasonCode};
use tickwire_mio::demo::{client_identity, demo_config};
use tickwire_smol::{connect, wall_clock_now};

/// Ticks to keep listening for replies after sending (one second at 60 Hz).
const LISTEN_TICKS: u64 = 60;

struct Args {
    server: SocketAddr,
    ticket: String,
    identity_seed: u64,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let (mut server, mut ticket, mut identity_seed) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => server = Some(value.parse()?),
            "--ticket" => ticket = Some(value),
            "--identity-seed" => identity_seed = Some(value.parse()?),
            _ => return Err(format!("unknown argument {flag}").into()),
        }
    }
    let usage = "usage: smol_client --server ADDR --ticket PATH --identity-seed N";
    Ok(Args {
        server: server.ok_or(usage)?,
        ticket: ticket.ok_or(usage)?,
        identity_seed: identity_seed.ok_or(usage)?,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let ticket = JoinTicket::from_bytes(&std::fs::read(&args.ticket)?)?;
    let identity = client_identity(args.identity_seed, 0);
    let config = demo_config(args.identity_seed);
    smol::block_on(async {
        let mut client = connect(
            config,
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
                println!("tick {tick}: {:?} on {:?}", message.payload, message.channel);
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
