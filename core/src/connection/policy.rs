//! The channel table's rules for received messages (`PROTOCOL.md` §7.1), enforced by a server
//! on every message a client sends, after the per-connection rate limit and before delivery:
//!
//! 1. the session's role must be among the channel's `senders` and its ticket must grant every
//!    permission bit they require; otherwise the message is refused as
//!    [`RefusalCause::NotPermitted`], and the `max_permission_violations`-th such refusal
//!    closes the session with `PERMISSION_DENIED`;
//! 2. the channel's own token bucket, if it has one, must hold a token; otherwise the message
//!    is refused as [`RefusalCause::RateLimited`] (`Breach::Drop`) or the session is closed
//!    with `RATE_LIMITED` and the time until the bucket holds a token again (`Breach::Close`).
//!
//! Refusals are counted one by one in [`ConnectionStats::refusals`](crate::ConnectionStats)
//! and reported as [`Event::MessageRefused`] at most once per channel and cause per server
//! tick, so a flood cannot flood the application too. Datagram messages are checked whole,
//! after reassembly (whose memory is bounded by `fragment.memory_budget_bytes`); reliable ones
//! per frame. The state is one optional bucket and two tick stamps per channel.
//!
//! A client checks its own session against the table in [`Conn::check_may_send`], so that an
//! honest client never sends what the server would refuse.

use std::time::{Duration, Instant};

use super::{Conn, Ctx};
use crate::channel::{Breach, ChannelId};
use crate::config::Config;
use crate::handshake::Rejection;
use crate::limits::TokenBucket;
use crate::shared::{Event, RefusalCause, SendError};
use crate::wire::{ReasonCode, MAX_CHANNELS};

/// A server connection's per-channel receive state.
#[derive(Debug)]
pub(super) struct Policy {
    /// Each channel's own token bucket, by channel id (`None`: no limit of its own).
    buckets: Vec<Option<TokenBucket>>,
    /// By channel id and cause (`RefusalCause as usize`): the server tick in which a
    /// [`Event::MessageRefused`] was last reported. Made at the first refusal, so that the
    /// 1 KiB table stays out of an honest peer's connection state.
    reported: Option<Box<[[Option<u64>; 2]; MAX_CHANNELS]>>,
}

impl Policy {
    /// Full buckets for the channels of `config` that have a rate limit.
    pub(super) fn new(config: &Config, now: Instant) -> Self {
        let buckets = config
            .channels
            .iter()
            .map(|channel| {
                channel
                    .rate_limit
                    .map(|limit| TokenBucket::new(limit.burst, limit.messages_per_second, now))
            })
            .collect();
        Self {
            buckets,
            reported: None,
        }
    }
}

/// A retry-after in whole milliseconds, rounded up, for a close reason (`PROTOCOL.md` §6).
fn retry_after_ms(wait: Duration) -> u32 {
    let ms = wait.as_nanos().div_ceil(1_000_000);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

impl Conn {
    /// Server: whether a message the peer sent on `channel` may be delivered, under the channel
    /// table's senders and rate limit (see the module docs). A refused message is counted and
    /// may be reported, and may close the session. Always true on a client connection.
    pub(super) fn police(&mut self, ctx: &mut Ctx<'_>, channel: ChannelId) -> bool {
        let Some(policy) = self.policy.as_mut() else {
            return true;
        };
        let index = usize::from(channel.0);
        let Some(entry) = ctx.config.channels.get(index) else {
            return true; // the receive paths checked the channel's kind, so it is in the table
        };
        let permitted = self
            .session
            .as_ref()
            .is_some_and(|session| entry.senders.permits(session.role, session.permissions));
        let cause = if !permitted {
            RefusalCause::NotPermitted
        } else {
            let Some(bucket) = policy.buckets.get_mut(index).and_then(Option::as_mut) else {
                return true;
            };
            match bucket.try_take(ctx.now, 1) {
                Ok(()) => return true,
                Err(limited) => {
                    self.stats.refusals.rate_limited += 1;
                    if entry
                        .rate_limit
                        .is_some_and(|limit| limit.on_breach == Breach::Close)
                    {
                        let rejection = Rejection {
                            reason: ReasonCode::RATE_LIMITED,
                            retry_after_ms: Some(retry_after_ms(limited.retry_after)),
                            detail: format!("message rate exceeded on channel {}", channel.0),
                        };
                        self.close(ctx, rejection);
                        return false;
                    }
                    RefusalCause::RateLimited
                }
            }
        };
        let reported = policy
            .reported
            .get_or_insert_with(|| Box::new([[None; 2]; MAX_CHANNELS]));
        let stamp = &mut reported[index % MAX_CHANNELS][cause as usize];
        if *stamp != Some(ctx.server_tick) {
            *stamp = Some(ctx.server_tick);
            ctx.events.push_back(Event::MessageRefused {
                conn: ctx.handle,
                channel,
                reason: cause,
            });
        }
        if cause == RefusalCause::NotPermitted {
            self.stats.refusals.not_permitted += 1;
            let max = ctx.config.max_permission_violations;
            if max != 0 && self.stats.refusals.not_permitted >= u64::from(max) {
                let detail = format!(
                    "{} messages refused on channels this session may not send on (last: channel {})",
                    self.stats.refusals.not_permitted, channel.0
                );
                self.close(ctx, Rejection::new(ReasonCode::PERMISSION_DENIED, detail));
            }
        }
        false
    }

    /// Client: whether this session may send on `channel` under the channel table's senders,
    /// so that `send` refuses locally what the server would refuse. Ok when there is nothing
    /// to check (a server's own sends, no session yet, a channel not in the table): the send
    /// itself reports those.
    ///
    /// # Errors
    /// [`SendError::NotPermitted`] if the session's role or permissions do not qualify.
    pub(crate) fn check_may_send(&self, config: &Config, channel: ChannelId) -> Result<(), SendError> {
        if self.is_inbound() {
            return Ok(());
        }
        let (Some(session), Some(entry)) = (&self.session, config.channels.get(usize::from(channel.0)))
        else {
            return Ok(());
        };
        if entry.senders.permits(session.role, session.permissions) {
            Ok(())
        } else {
            Err(SendError::NotPermitted(channel))
        }
    }
}
