//! Rendering a [`Snapshot`] as a Prometheus exposition, through `prometheus-client`'s encoders.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tickwire_core::stats::{EndpointStats, Histogram, TickStage, TickTimings};
use tickwire_core::vs::{GsAgentStats, GsStatus, VerifierStats};
use tickwire_core::{ReasonCode, Role};

use crate::{Readiness, Snapshot};

/// Codes this version does not define that get a `reason` label of their own per metric (the
/// lowest ones); the counts of the others are summed under `reason="other"`. Peers choose the
/// codes they close with, so without a bound a scrape could list 65 536 of them.
const MAX_UNNAMED_REASONS: usize = 8;

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text: counters announced without `_total`, `# UNIT` lines, a final
    /// `# EOF`. What Prometheus asks for first; `promtool check metrics` (2.x) cannot read it.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: counters announced with `_total`, no `# UNIT` or
    /// `# EOF`. What `promtool check metrics` reads. The same samples as
    /// [`Format::OpenMetrics`], but for the spelling of `le` bounds (`1` rather than `1.0`).
    PrometheusText,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format to answer a request whose `Accept` header is `accept`, much as Prometheus's Go
    /// client does: OpenMetrics when a media range of it is
    /// `application/openmetrics-text` (with no `q=0`), which Prometheus always sends; the
    /// Prometheus text format otherwise (no header, `*/*`, `text/plain`), which `curl` and
    /// `promtool check metrics` get.
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let openmetrics = accept.unwrap_or("").split(',').any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let refused = parts.any(|param| match param.split_once('=') {
                Some((name, q)) if name.trim().eq_ignore_ascii_case("q") => {
                    q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                }
                _ => false,
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        });
        if openmetrics {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// Renders `snapshot` and `readiness` as an exposition in `format`: one metric family per
/// metric listed in the crate docs, every one with a `# HELP` line; a few tens of kilobytes
/// at most.
///
/// With [`Snapshot::gs_agent`]: `tickwire_gs_status{status}` (one-hot over `starting`,
/// `authorised`, `admissions_paused`, `starved`, `failed`), `tickwire_gs_admissions_paused`
/// (0 or 1), `tickwire_gs_play_ticket_age_seconds` (once a ticket arrived),
/// `tickwire_gs_receipts_pending` (gauges), and the counters
/// `tickwire_gs_play_tickets_received_total`, `tickwire_gs_starvation_closed_sessions_total`,
/// `tickwire_gs_vs_sessions_lost_total`, `tickwire_gs_vs_rejections_total`,
/// `tickwire_gs_quote_failures_total`, `tickwire_gs_revocations_applied_total`,
/// `tickwire_gs_receipts_total{result="received"|"rejected"}`,
/// `tickwire_gs_digests_abandoned_total`, `tickwire_gs_untracked_inputs_total`.
///
/// With [`Snapshot::verifier`]: the gauges `tickwire_vs_game_servers_authorised` and
/// `tickwire_vs_revocations_in_force`, and the counters
/// `tickwire_vs_joins_total{result="accepted"}` and `{result="rejected",reason}`,
/// `tickwire_vs_reattestations_total`, `tickwire_vs_attestation_failures_total{reason}`,
/// `tickwire_vs_deauthorisations_total{reason}`, `tickwire_vs_tickets_issued_total{kind="play"|"join"}`,
/// `tickwire_vs_receipts_signed_total`, `tickwire_vs_revocations_dropped_total`,
/// `tickwire_vs_facts_dropped_total`.
pub fn render(snapshot: &Snapshot, readiness: Readiness, format: Format) -> String {
    render_owned(snapshot.clone(), readiness, Extras::default(), format)
}

/// What a scrape shows besides the snapshot, measured by the admin thread at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extras {
    /// Seconds until the WebTransport certificate's `notAfter` (negative once expired); `None`
    /// renders no `tickwire_webtransport_certificate_expiry_seconds`.
    pub(crate) certificate_expiry_seconds: Option<f64>,
}

/// [`render`] of a snapshot the caller no longer needs.
pub(crate) fn render_owned(
    snapshot: Snapshot,
    readiness: Readiness,
    extras: Extras,
    format: Format,
) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector {
        snapshot,
        readiness,
        extras,
    }));
    let mut out = String::with_capacity(16 * 1024);
    let encoded = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::PrometheusText => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
    };
    encoded.expect("encoding into a String cannot fail: our collector returns only the writer's errors");
    out
}

/// The registry's only source: encodes one snapshot on each scrape.
#[derive(Debug)]
struct SnapshotCollector {
    snapshot: Snapshot,
    readiness: Readiness,
    extras: Extras,
}

impl Collector for SnapshotCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut out = Families { encoder };
        let snapshot = &self.snapshot;
        out.process(snapshot, self.readiness)?;
        out.endpoint(&snapshot.endpoint)?;
        if let Some(ticks) = &snapshot.ticks {
            out.ticks(ticks)?;
        }
        if let Some(agent) = &snapshot.gs_agent {
            out.gs_agent(agent)?;
        }
        if let Some(verifier) = &snapshot.verifier {
            out.verifier(verifier)?;
        }
        if let Some(seconds) = self.extras.certificate_expiry_seconds {
            out.seconds_gauge(
                "tickwire_webtransport_certificate_expiry",
                "Time until the WebTransport certificate browsers pin expires (its notAfter); negative once expired.",
                seconds,
            )?;
        }
        Ok(())
    }
}

/// A label set: `(name, value)` pairs, in the order they are written.
type Labels = Vec<(&'static str, Cow<'static, str>)>;

/// One label.
fn label(name: &'static str, value: &'static str) -> Labels {
    vec![(name, Cow::Borrowed(value))]
}

/// `1` for true, `0` for false: the value of a 0/1 gauge.
fn flag(value: bool) -> u64 {
    u64::from(value)
}

/// Writes metric families: a descriptor (`# HELP`, `# TYPE`, maybe `# UNIT`) and its samples.
/// Names are given without `_total` (the encoders append it to counters) and without the unit
/// (appended from `unit`).
struct Families<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl Families<'_> {
    fn family(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        metric_type: MetricType,
        write: impl FnOnce(MetricEncoder<'_>) -> fmt::Result,
    ) -> fmt::Result {
        write(self.encoder.encode_descriptor(name, help, unit, metric_type)?)
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.counters(name, help, None, &[(Labels::new(), value)])
    }

    fn counters(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        series: &[(Labels, u64)],
    ) -> fmt::Result {
        self.family(name, help, unit, MetricType::Counter, |mut metric| {
            for (labels, value) in series {
                ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
            }
            Ok(())
        })
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.gauges(name, help, &[(Labels::new(), value)])
    }

    fn gauges(&mut self, name: &str, help: &str, series: &[(Labels, u64)]) -> fmt::Result {
        self.family(name, help, None, MetricType::Gauge, |mut metric| {
            for (labels, value) in series {
                ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
            }
            Ok(())
        })
    }

    fn seconds_gauge(&mut self, name: &str, help: &str, seconds: f64) -> fmt::Result {
        self.family(name, help, Some(&Unit::Seconds), MetricType::Gauge, |metric| {
            ConstGauge::new(seconds).encode(metric)
        })
    }

    fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) -> fmt::Result {
        self.histograms(name, help, &[(Labels::new(), histogram)])
    }

    /// Histograms in seconds, one per label set.
    fn histograms(&mut self, name: &str, help: &str, series: &[(Labels, &Histogram)]) -> fmt::Result {
        self.family(
            name,
            help,
            Some(&Unit::Seconds),
            MetricType::Histogram,
            |mut metric| {
                for (labels, histogram) in series {
                    // The encoders take per-bucket counts and accumulate them themselves.
                    let mut below = 0;
                    let buckets: Vec<(f64, u64)> = histogram
                        .cumulative_buckets()
                        .map(|(bound, cumulative)| {
                            let count = cumulative.saturating_sub(below);
                            below = cumulative;
                            (bound, count)
                        })
                        .collect();
                    metric.encode_family(labels)?.encode_histogram::<NoLabelSet>(
                        histogram.sum_seconds(),
                        histogram.count(),
                        &buckets,
                        None,
                    )?;
                }
                Ok(())
            },
        )
    }

    fn process(&mut self, snapshot: &Snapshot, readiness: Readiness) -> fmt::Result {
        self.family(
            "tickwire",
            "What this process is: kind is game_server or verification_server.",
            None,
            MetricType::Info,
            |metric| Info::new(label("kind", snapshot.kind.name())).encode(metric),
        )?;
        self.gauge(
            "tickwire_ready",
            "Whether the server admits players (1) or not (0), as /ready answers.",
            flag(readiness == Readiness::Ready),
        )?;
        self.gauge(
            "tickwire_draining",
            "Whether the process is draining before exit (1) or not (0).",
            flag(readiness == Readiness::Draining),
        )
    }

    fn endpoint(&mut self, e: &EndpointStats) -> fmt::Result {
        let d = &e.datagrams;
        self.gauges(
            "tickwire_sessions",
            "Sessions now: handshakes in progress and established sessions.",
            &[
                (label("state", "handshaking"), e.handshakes_pending as u64),
                (label("state", "established"), e.sessions_live as u64),
            ],
        )?;
        self.gauges(
            "tickwire_sessions_established_by_role",
            "Established sessions now, by the role the client joined as.",
            &role_series(&e.sessions_by_role),
        )?;
        let mut handshakes = vec![(label("outcome", "established"), e.sessions_established)];
        handshakes.extend(reason_series(&e.rejections).into_iter().map(|(reason, count)| {
            (
                vec![("outcome", Cow::Borrowed("rejected")), ("reason", reason)],
                count,
            )
        }));
        self.counters(
            "tickwire_handshakes",
            "Handshakes that ended: established, or rejected (by either side) with a reason.",
            None,
            &handshakes,
        )?;
        self.counters(
            "tickwire_sessions_established",
            "Sessions established, by carrier: native QUIC or WebTransport (browsers).",
            None,
            &[
                (
                    label("carrier", "native"),
                    e.sessions_established
                        .saturating_sub(e.webtransport_sessions_established),
                ),
                (
                    label("carrier", "webtransport"),
                    e.webtransport_sessions_established,
                ),
            ],
        )?;
        self.counters(
            "tickwire_disconnections",
            "Established sessions that ended, by reason.",
            None,
            &by_reason("reason", &e.disconnections),
        )?;
        self.counters(
            "tickwire_connections_refused",
            "Incoming connections refused before a session: at the pending-handshake limit, at \
             the per-address pending limit, or closed before their Hello to make room.",
            None,
            &[
                (
                    label("cause", "pending_limit"),
                    e.connections_refused
                        .saturating_sub(e.handshakes_refused_per_addr),
                ),
                (label("cause", "per_address"), e.handshakes_refused_per_addr),
                (label("cause", "evicted_no_hello"), e.handshakes_evicted_no_hello),
            ],
        )?;
        self.counter(
            "tickwire_handshakes_rate_limited",
            "Handshakes from validated addresses rejected by the per-address handshake rate limit.",
            e.handshakes_rate_limited,
        )?;
        self.counters(
            "tickwire_udp_datagrams",
            "UDP datagrams received (rx) and sent (tx).",
            None,
            &[
                (label("direction", "rx"), d.received),
                (label("direction", "tx"), e.udp_tx_datagrams),
            ],
        )?;
        self.counters(
            "tickwire_udp",
            "UDP payload bytes received (rx) and sent (tx).",
            Some(&Unit::Bytes),
            &[
                (label("direction", "rx"), e.udp_rx_bytes),
                (label("direction", "tx"), e.udp_tx_bytes),
            ],
        )?;
        self.counters(
            "tickwire_datagrams_received",
            "What became of each UDP datagram received: routed to a connection, dropped, \
             answered statelessly, or an Initial that would start a connection.",
            None,
            &[
                (label("outcome", "to_connection"), d.to_connections),
                (label("outcome", "dropped"), d.dropped),
                (label("outcome", "stateless_response"), d.stateless_responses),
                (label("outcome", "initial"), d.initials),
            ],
        )?;
        self.counters(
            "tickwire_initials",
            "What became of each connection-starting Initial: answered with a Retry, refused, \
             accepted, or failed to accept.",
            None,
            &[
                (label("outcome", "retry"), d.retries_sent),
                (label("outcome", "refused"), d.refused),
                (label("outcome", "accepted"), d.accepted),
                (label("outcome", "accept_failed"), d.accept_failed),
            ],
        )?;
        self.counter(
            "tickwire_initials_validated",
            "Connection-starting Initials carrying a valid Retry token (source address validated).",
            d.initials_validated,
        )?;
        self.counters(
            "tickwire_retry_packets_sent",
            "Retry packets sent, by why: the address was over its handshake limits, the \
             handshake would only carry a rejection, or to validate the address.",
            None,
            &[
                (label("cause", "rate_limited"), d.retries_rate_limited),
                (label("cause", "before_rejection"), d.retries_before_rejection),
                (
                    label("cause", "address_validation"),
                    d.retries_sent
                        .saturating_sub(d.retries_rate_limited)
                        .saturating_sub(d.retries_before_rejection),
                ),
            ],
        )?;
        self.counter(
            "tickwire_responses_dropped",
            "Endpoint-level responses (version negotiation, stateless resets, refusals) dropped \
             because their queue was full.",
            e.responses_dropped,
        )?;
        self.counters(
            "tickwire_recording",
            "Session recording bytes (PROTOCOL.md section 11) handed to the writer (recorded), or \
             dropped because a session's recording buffer was full (dropped; marked by a Gap record).",
            Some(&Unit::Bytes),
            &[
                (label("outcome", "recorded"), e.recorded_bytes),
                (label("outcome", "dropped"), e.recording_dropped_bytes),
            ],
        )?;
        self.counters(
            "tickwire_rate_limited",
            "Requests refused by a rate limiter: handshakes per address, messages per session.",
            None,
            &[
                (label("limiter", "address"), e.address_limiter.limited),
                (label("limiter", "message"), e.message_limiter.limited),
            ],
        )?;
        self.counters(
            "tickwire_message_refusals",
            "Received messages a server refused under its channel table (not delivered), by \
             cause: the session may not send on the channel, or the channel's own rate limit.",
            None,
            &[
                (label("cause", "not_permitted"), e.message_refusals.not_permitted),
                (label("cause", "rate_limited"), e.message_refusals.rate_limited),
            ],
        )?;
        self.gauge(
            "tickwire_addresses_tracked",
            "Source addresses the per-address handshake limiter tracks now.",
            e.addresses_tracked as u64,
        )?;
        let r = &e.reassembly;
        self.counters(
            "tickwire_reassembly_dropped_fragments",
            "Message fragments dropped by reassembly, by cause (summed over all connections).",
            None,
            &[
                (label("cause", "too_large"), r.dropped_too_large),
                (label("cause", "too_many_fragments"), r.dropped_too_many_fragments),
                (label("cause", "inconsistent"), r.dropped_inconsistent),
                (label("cause", "partial_limit"), r.evicted_partial_limit),
                (label("cause", "memory_budget"), r.evicted_memory_budget),
                (label("cause", "timeout"), r.expired_timeout),
                (label("cause", "late_duplicate"), r.late_duplicates),
            ],
        )?;
        let c = &e.compression;
        let labels = |direction: &'static str, form: &'static str| {
            vec![
                ("direction", Cow::Borrowed(direction)),
                ("form", Cow::Borrowed(form)),
            ]
        };
        self.counters(
            "tickwire_compression_messages",
            "Messages on compressed channels sent (tx) and decompressed (rx).",
            None,
            &[
                (label("direction", "rx"), c.messages_received),
                (label("direction", "tx"), c.messages_sent),
            ],
        )?;
        self.counters(
            "tickwire_compression",
            "Bytes of the messages on compressed channels, before (uncompressed) and after \
             (compressed, flag byte included) compression; their ratio is the compression ratio.",
            Some(&Unit::Bytes),
            &[
                (labels("rx", "compressed"), c.compressed_bytes_received),
                (labels("rx", "uncompressed"), c.uncompressed_bytes_received),
                (labels("tx", "compressed"), c.compressed_bytes_sent),
                (labels("tx", "uncompressed"), c.uncompressed_bytes_sent),
            ],
        )?;
        self.counter(
            "tickwire_compression_refused",
            "Received messages on compressed channels refused by the decompressor (bad flag, \
             corrupt frame, or over the decompressed-size cap).",
            c.refused,
        )?;
        self.histogram(
            "tickwire_rtt",
            "Round-trip time samples of every connection.",
            &e.rtt,
        )?;
        self.histogram(
            "tickwire_jitter",
            "Jitter estimates of every connection, one per fresh ping (RFC 3550).",
            &e.jitter,
        )?;
        self.histogram(
            "tickwire_handshake_duration",
            "Time from a connection's first packet to its session being established.",
            &e.handshake_time,
        )?;
        self.histogram(
            "tickwire_tick_lateness",
            "How late the scheduler delivered each server tick.",
            &e.tick_lateness,
        )?;
        self.counter(
            "tickwire_ticks",
            "Server ticks delivered by the scheduler.",
            e.ticks,
        )
    }

    fn ticks(&mut self, t: &TickTimings) -> fmt::Result {
        self.histogram(
            "tickwire_tick_duration",
            "Duration of whole server ticks, as the game loop measured them.",
            &t.tick,
        )?;
        let stages: Vec<(Labels, &Histogram)> = TickStage::ALL
            .iter()
            .map(|stage| (label("stage", stage.name()), t.stage(*stage)))
            .collect();
        self.histograms(
            "tickwire_tick_stage_duration",
            "Duration of each stage of a server tick: poll, apply, simulate, extract, send.",
            &stages,
        )
    }

    fn gs_agent(&mut self, a: &GsAgentStats) -> fmt::Result {
        let statuses = [
            (GsStatus::Starting, "starting"),
            (GsStatus::Authorised, "authorised"),
            (GsStatus::AdmissionsPaused, "admissions_paused"),
            (GsStatus::Starved, "starved"),
            (GsStatus::Failed, "failed"),
        ];
        let one_hot: Vec<(Labels, u64)> = statuses
            .iter()
            .map(|(status, name)| (label("status", name), flag(a.status == *status)))
            .collect();
        self.gauges(
            "tickwire_gs_status",
            "Where the game server stands with its verification server: 1 for the status now, \
             0 for the others.",
            &one_hot,
        )?;
        self.gauge(
            "tickwire_gs_admissions_paused",
            "Whether new clients are refused for want of a valid play ticket (1) or not (0).",
            flag(a.admissions_paused),
        )?;
        if let Some(age) = a.ticket_age {
            self.seconds_gauge(
                "tickwire_gs_play_ticket_age",
                "Time since the last play ticket arrived.",
                age.as_secs_f64(),
            )?;
        }
        self.counter(
            "tickwire_gs_play_tickets_received",
            "Play tickets received from the verification server.",
            a.tickets_received,
        )?;
        self.counter(
            "tickwire_gs_starvation_closed_sessions",
            "Client sessions closed because the play tickets stopped or the agent gave up.",
            a.sessions_closed_starved,
        )?;
        self.counter(
            "tickwire_gs_vs_sessions_lost",
            "Times the session with the verification server ended and had to be reconnected.",
            a.vs_sessions_lost,
        )?;
        self.counter(
            "tickwire_gs_vs_rejections",
            "Times the verification server refused the join or withdrew authorisation.",
            a.vs_rejections,
        )?;
        self.counter(
            "tickwire_gs_quote_failures",
            "Times the TPM failed to produce a quote.",
            a.quote_failures,
        )?;
        self.counter(
            "tickwire_gs_revocations_applied",
            "Revocations from the verification server applied.",
            a.revocations_applied,
        )?;
        self.gauge(
            "tickwire_gs_receipts_pending",
            "Transcript digests awaiting a receipt now.",
            a.receipts_pending as u64,
        )?;
        self.counters(
            "tickwire_gs_receipts",
            "Transcript receipts from the verification server: received and verified, or rejected.",
            None,
            &[
                (label("result", "received"), a.receipts_received),
                (label("result", "rejected"), a.receipts_rejected),
            ],
        )?;
        self.counter(
            "tickwire_gs_digests_abandoned",
            "Transcript digests abandoned without a receipt.",
            a.digests_abandoned,
        )?;
        self.counter(
            "tickwire_gs_untracked_inputs",
            "Inputs not chained into a transcript because the transcript table was full.",
            a.untracked_inputs,
        )
    }

    fn verifier(&mut self, v: &VerifierStats) -> fmt::Result {
        self.gauge(
            "tickwire_vs_game_servers_authorised",
            "Game servers authorised now.",
            v.game_servers_authorised as u64,
        )?;
        let mut joins = vec![(label("result", "accepted"), v.joins_accepted)];
        joins.extend(
            reason_series(&v.joins_rejected)
                .into_iter()
                .map(|(reason, count)| {
                    (
                        vec![("result", Cow::Borrowed("rejected")), ("reason", reason)],
                        count,
                    )
                }),
        );
        self.counters(
            "tickwire_vs_joins",
            "Game server joins: accepted after attestation, or rejected with a reason.",
            None,
            &joins,
        )?;
        self.counter(
            "tickwire_vs_reattestations",
            "Re-attestations passed.",
            v.reattestations,
        )?;
        self.counters(
            "tickwire_vs_attestation_failures",
            "Failed attestations (joins refused and failed re-attestations), by reason.",
            None,
            &by_reason("reason", &v.attestation_failures),
        )?;
        self.counters(
            "tickwire_vs_deauthorisations",
            "Game server authorisations withdrawn, by reason.",
            None,
            &by_reason("reason", &v.deauthorisations),
        )?;
        self.counters(
            "tickwire_vs_tickets_issued",
            "Tickets signed: play tickets for game servers, join tickets for clients.",
            None,
            &[
                (label("kind", "play"), v.play_tickets_issued),
                (label("kind", "join"), v.join_tickets_issued),
            ],
        )?;
        self.counter(
            "tickwire_vs_receipts_signed",
            "Transcript receipts signed.",
            v.receipts_signed,
        )?;
        self.gauge(
            "tickwire_vs_revocations_in_force",
            "Revocations in force now.",
            v.revocations_in_force as u64,
        )?;
        self.counter(
            "tickwire_vs_revocations_dropped",
            "Revocations dropped because the revocation list was full.",
            v.revocations_dropped,
        )?;
        self.counter(
            "tickwire_vs_facts_dropped",
            "Durable facts dropped because the runtime did not drain them (should stay 0).",
            v.facts_dropped,
        )
    }
}

/// `reason` label values and counts: named codes in lower case, at most
/// [`MAX_UNNAMED_REASONS`] other codes as their number, the rest summed as `other`.
fn reason_series(counts: &BTreeMap<ReasonCode, u64>) -> Vec<(Cow<'static, str>, u64)> {
    let mut series = Vec::with_capacity(counts.len().min(ReasonCode::ALL.len() + MAX_UNNAMED_REASONS + 1));
    let mut unnamed = 0;
    let mut other = 0;
    for (code, count) in counts {
        match code.name() {
            Some(name) => series.push((Cow::Owned(name.to_ascii_lowercase()), *count)),
            None if unnamed < MAX_UNNAMED_REASONS => {
                unnamed += 1;
                series.push((Cow::Owned(code.0.to_string()), *count));
            }
            None => other += count,
        }
    }
    if other > 0 {
        series.push((Cow::Borrowed("other"), other));
    }
    series
}

fn by_reason(name: &'static str, counts: &BTreeMap<ReasonCode, u64>) -> Vec<(Labels, u64)> {
    reason_series(counts)
        .into_iter()
        .map(|(reason, count)| (vec![(name, reason)], count))
        .collect()
}

/// One series per role this version defines (0 when absent), and `other` for any newer one.
fn role_series(by_role: &BTreeMap<Role, usize>) -> Vec<(Labels, u64)> {
    let known = [
        (Role::Player, "player"),
        (Role::Spectator, "spectator"),
        (Role::Admin, "admin"),
        (Role::GameServer, "game_server"),
    ];
    let mut series: Vec<(Labels, u64)> = known
        .iter()
        .map(|(role, name)| {
            let count = by_role.get(role).copied().unwrap_or(0);
            (label("role", name), count as u64)
        })
        .collect();
    let other: usize = by_role
        .iter()
        .filter(|(role, _)| !known.iter().any(|(k, _)| k == *role))
        .map(|(_, count)| count)
        .sum();
    if other > 0 {
        series.push((label("role", "other"), other as u64));
    }
    series
}
