//! Join tickets end to end: what the client is told when its ticket is refused at the door, and
//! how a live session ends when its ticket is revoked or expires.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use tickwire_core::config::Config;
use tickwire_core::testing::{Net, GS_ID};
use tickwire_core::{
    ConnHandle, ConnectOptions, Initiator, JoinTicket, JoinTicketClaims, ReasonCode, TicketIssuer,
};

const MINUTE_MS: u64 = 60_000;

/// A network with a default server (its wall clock `skew_ms` off the issuer's) and one client.
fn setup(skew_ms: i64) -> (Net, usize, usize) {
    let mut net = Net::new(tickwire_core::testing::epoch(), 2);
    let wall = net.wall_clock().skewed(skew_ms);
    let server = net.add_server_with(Net::config(), wall);
    let client = net.add_client(Net::config());
    (net, server, client)
}

/// `client` presents a ticket for `claims`, edited by `edit`, signed by the harness issuer.
fn connect_with_claims(
    net: &mut Net,
    client: usize,
    server: usize,
    edit: impl FnOnce(&mut JoinTicketClaims),
) -> ConnHandle {
    let mut claims = net.claims_for(client);
    edit(&mut claims);
    let ticket = net.issuer.issue(&claims);
    net.connect_with(client, server, ticket, ConnectOptions::default())
}

/// The reason the server refused the client's join on `conn` with.
fn refused(net: &mut Net, client: usize, conn: ConnHandle) -> ReasonCode {
    let (reason, _, initiator) = net.run_until_rejected(client, conn, Duration::from_secs(5));
    assert_eq!(initiator, Initiator::Peer, "{reason}");
    reason
}

/// Whether the join on `conn` succeeds.
fn admitted(net: &mut Net, client: usize, conn: ConnHandle) -> bool {
    net.run_until(Duration::from_secs(5), |n| {
        n.node(client).connected(conn) || n.node(client).closure_of(conn).is_some()
    });
    net.node(client).connected(conn)
}

/// Moves a ticket's validity window by `offset_ms` (negative = into the past).
fn shift(claims: &mut JoinTicketClaims, offset_ms: i64) {
    let shift = |t: u64| t.saturating_add_signed(offset_ms);
    claims.issued_at_ms = shift(claims.issued_at_ms);
    claims.not_before_ms = shift(claims.not_before_ms);
    claims.expires_at_ms = shift(claims.expires_at_ms);
}

#[test]
fn a_ticket_is_single_use_even_for_another_client() {
    let (mut net, server, first) = setup(0);
    let second = net.add_client(Net::config());
    let used = net.claims_for(first);
    let ticket = net.issuer.issue(&used);
    let conn = net.connect_with(first, server, ticket, ConnectOptions::default());
    assert!(admitted(&mut net, first, conn));

    let conn = connect_with_claims(&mut net, second, server, |c| c.jti = used.jti);
    assert_eq!(refused(&mut net, second, conn), ReasonCode::TICKET_REPLAYED);
}

#[test]
fn an_expired_ticket_is_refused() {
    let (mut net, server, client) = setup(0);
    // Expired two minutes ago: far beyond the 30 s skew allowance.
    let conn = connect_with_claims(&mut net, client, server, |c| shift(c, -3 * MINUTE_MS as i64));
    assert_eq!(refused(&mut net, client, conn), ReasonCode::TICKET_EXPIRED);
}

#[test]
fn server_clock_skew_is_tolerated_up_to_max_skew() {
    let skew = Config::default().tickets.max_skew_ms as i64;
    assert_eq!(skew, 30_000);
    // The ticket is valid for the next minute on the issuer's clock.
    for (server_skew_ms, verdict) in [
        (-skew + 1_000, None),
        (-skew - 1_000, Some(ReasonCode::TICKET_NOT_YET_VALID)),
        (MINUTE_MS as i64 + skew - 1_000, None),
        (MINUTE_MS as i64 + skew + 1_000, Some(ReasonCode::TICKET_EXPIRED)),
    ] {
        let (mut net, server, client) = setup(server_skew_ms);
        let conn = net.connect(client, server);
        match verdict {
            None => assert!(admitted(&mut net, client, conn), "skew {server_skew_ms} ms"),
            Some(reason) => assert_eq!(
                refused(&mut net, client, conn),
                reason,
                "skew {server_skew_ms} ms"
            ),
        }
    }
}

#[test]
fn a_not_yet_valid_ticket_says_when_it_becomes_valid() {
    let (mut net, server, client) = setup(-40_000);
    let conn = net.connect(client, server);
    let (reason, retry_after, _) = net.run_until_rejected(client, conn, Duration::from_secs(5));
    assert_eq!(reason, ReasonCode::TICKET_NOT_YET_VALID);
    let retry_after = retry_after.expect("TICKET_NOT_YET_VALID carries the wait");
    // 40 s behind, 30 s allowed: valid in about 10 s (less the handshake's few round trips).
    assert!(
        (Duration::from_millis(9_900)..=Duration::from_secs(10)).contains(&retry_after),
        "{retry_after:?}"
    );
}

#[test]
fn a_ticket_for_another_game_server_is_refused() {
    let (mut net, server, client) = setup(0);
    let conn = connect_with_claims(&mut net, client, server, |c| c.gs_id = GS_ID + 1);
    assert_eq!(refused(&mut net, client, conn), ReasonCode::TICKET_WRONG_AUDIENCE);
}

#[test]
fn a_ticket_for_another_identity_is_refused() {
    let (mut net, server, client) = setup(0);
    let other = net.add_client(Net::config());
    let someone_elses = net.ticket_for(other);
    let conn = net.connect_with(client, server, someone_elses, ConnectOptions::default());
    assert_eq!(
        refused(&mut net, client, conn),
        ReasonCode::TICKET_IDENTITY_MISMATCH
    );
}

#[test]
fn a_ticket_from_an_unknown_issuer_key_is_refused() {
    let (mut net, server, client) = setup(0);
    let rogue = TicketIssuer::new(99, SigningKey::from_bytes(&[9; 32]));
    let ticket: JoinTicket = rogue.issue(&net.claims_for(client));
    let conn = net.connect_with(client, server, ticket, ConnectOptions::default());
    assert_eq!(refused(&mut net, client, conn), ReasonCode::TICKET_UNKNOWN_KEY);
}

fn revoke_client(net: &mut Net, server: usize, client_id: u64) {
    let gs = net.node_mut(server).endpoint.server_mut().unwrap();
    gs.tickets().revoke_client(client_id).unwrap();
}

#[test]
fn revoking_a_client_ends_its_live_session_within_a_revalidation_period() {
    let (mut net, server, client) = setup(0);
    let (conn, _) = net.join(client, server);
    let client_id = net.claims_for(client).client_id; // the id harness tickets give it

    revoke_client(&mut net, server, client_id);
    let revoked_at = net.elapsed();
    let (reason, _, initiator) = net.run_until_disconnected(client, conn, Duration::from_secs(2));
    assert_eq!((reason, initiator), (ReasonCode::TICKET_REVOKED, Initiator::Peer));
    let period = Duration::from_secs(1); // revalidate_every_ticks = 60 at 60 Hz
    let one_way = net.link.latency;
    assert!(net.elapsed() - revoked_at <= period + one_way);
}

#[test]
fn with_close_on_expiry_an_expired_ticket_ends_the_session() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 3);
    let mut config = Net::config();
    config.close_sessions_on_ticket_expiry = true;
    config.tickets.max_skew_ms = 0;
    let server = net.add_server(config);
    let client = net.add_client(Net::config());
    let conn = connect_with_claims(&mut net, client, server, |c| {
        c.expires_at_ms = c.issued_at_ms + 3_000
    });
    assert!(admitted(&mut net, client, conn));

    let (reason, _, initiator) = net.run_until_disconnected(client, conn, Duration::from_secs(5));
    assert_eq!((reason, initiator), (ReasonCode::TICKET_EXPIRED, Initiator::Peer));
    // Found by the first revalidation after expiry (once a second).
    let elapsed = net.elapsed();
    assert!(
        elapsed > Duration::from_secs(3) && elapsed <= Duration::from_secs(4) + net.link.latency,
        "{elapsed:?}"
    );
}

#[test]
fn without_close_on_expiry_a_session_outlives_its_join_ticket() {
    let (mut net, server, client) = setup(0);
    let conn = connect_with_claims(&mut net, client, server, |c| {
        c.expires_at_ms = c.issued_at_ms + 1_000
    });
    assert!(admitted(&mut net, client, conn));
    net.run_for(Duration::from_secs(40));
    assert!(net.node(client).connected(conn));

    // Outliving the ticket does not outlive a revocation.
    let client_id = net.claims_for(client).client_id;
    revoke_client(&mut net, server, client_id);
    let (reason, _, _) = net.run_until_disconnected(client, conn, Duration::from_secs(2));
    assert_eq!(reason, ReasonCode::TICKET_REVOKED);
}
