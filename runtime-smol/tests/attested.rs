//! A smol game server attested by a real verification server (tickwire-apps' `run_vs`, on its
//! own thread) with a simulated TPM, and a smol client that requires the server's play ticket,
//! all on real loopback UDP. Every wait is bounded by [`within`] (10 s).

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tickwire_apps::vs::{run_vs, vs_endpoint_config, vs_keys, VsOptions};
use tickwire_core::attest::{SimulatedTpm, TpmProvider, MEASUREMENT_PCR};
use tickwire_core::vs::{GsConfig, GsEvent, Measurement, VsConfig};
use tickwire_core::{Config, ConnectOptions, JoinTicketClaims, TicketIssuer};
use tickwire_smol::{connect, wall_clock_now, Attestation, Server, ServerOutput};

mod common;

use common::{identity, secrets, within};

const GS_ID: u64 = 42;
/// Join tickets come from a lobby key of their own; the VS's play-ticket key has id 1.
const LOBBY_KEY_ID: u32 = 5;
/// Numbers the VS's signing key (play tickets, under key id 1).
const VS_ISSUER: u64 = 9;
const SOFTWARE: [u8; 32] = [0xB1; 32];
const SETTINGS: [u8; 32] = [0xC0; 32];

/// Starts a verification server allowing [`SOFTWARE`] with [`SETTINGS`]; returns its address.
fn start_vs() -> SocketAddr {
    let options = VsOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        identity: identity(3),
        issuer: identity(VS_ISSUER),
        endpoint: vs_endpoint_config(),
        duration: Duration::from_secs(15),
        config: VsConfig {
            allow_unenrolled: true,
            measurements: vec![Measurement {
                binary_sha256: SOFTWARE,
                config_sha256: SETTINGS,
            }],
            ..VsConfig::default()
        },
        store: None,
        token_key_file: None,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || run_vs(&options, |addr| tx.send(addr).unwrap(), |_, _| {}));
    rx.recv_timeout(Duration::from_secs(10)).expect("the VS binds")
}

#[test]
fn a_smol_game_server_attests_and_its_client_verifies_the_play_ticket() {
    let vs_addr = start_vs();
    smol::block_on(async {
        let wall = wall_clock_now();
        let lobby = TicketIssuer::new(LOBBY_KEY_ID, identity(100));
        let mut server = Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            Config::default(),
            secrets(1),
            identity(1),
            GS_ID,
            wall,
        )
        .unwrap();
        server.tickets_mut().add_key(LOBBY_KEY_ID, lobby.verifying_key());
        let mut tpm = SimulatedTpm::new([5; 32]);
        tpm.extend_pcr(MEASUREMENT_PCR, SOFTWARE).unwrap();
        tpm.extend_pcr(MEASUREMENT_PCR, SETTINGS).unwrap();
        server
            .attest(Attestation {
                secrets: secrets(4),
                vs_addr,
                vs_keys: vs_keys(&identity(VS_ISSUER).verifying_key()),
                vs_identity: None,
                config: GsConfig::default(),
                software_sha256: SOFTWARE,
                config_sha256: SETTINGS,
                tpm: Box::new(tpm),
            })
            .unwrap();
        within("the first play ticket", async {
            loop {
                match server.next().await.unwrap() {
                    ServerOutput::Vs(GsEvent::Authorised { first: true, claims }) => {
                        assert_eq!(claims.gs_id, GS_ID);
                        break;
                    }
                    ServerOutput::Vs(
                        event @ (GsEvent::FirstTicketTimeout { .. } | GsEvent::Rejected { .. }),
                    ) => {
                        panic!("attestation failed: {event:?}")
                    }
                    _ => {}
                }
            }
        })
        .await;
        let server_addr = server.local_addr().unwrap();
        let serving = smol::spawn(async move {
            while let Ok(output) = server.next().await {
                if let ServerOutput::Vs(event @ GsEvent::Rejected { retrying: false, .. }) = output {
                    panic!("the VS refused: {event:?}");
                }
            }
        });

        let client_identity = identity(2);
        let claims = JoinTicketClaims::builder(client_identity.verifying_key().to_bytes(), [1; 16])
            .client_id(7)
            .audience(GS_ID)
            .valid_from(wall.unix_ms_at(Instant::now()))
            .lifetime_ms(60_000)
            .build();
        let options = ConnectOptions {
            trusted_vs_keys: Some(vs_keys(&identity(VS_ISSUER).verifying_key())),
            ..ConnectOptions::default()
        };
        let client = within(
            "the client's join",
            connect(
                Config::default(),
                secrets(2),
                client_identity,
                wall,
                server_addr,
                lobby.issue(&claims),
                options,
            ),
        )
        .await
        .expect("the client joins");
        let ticket = client
            .session()
            .play_ticket
            .as_ref()
            .expect("the client checked the play ticket");
        assert_eq!(ticket.gs_id, GS_ID);
        drop(serving);
    });
}
