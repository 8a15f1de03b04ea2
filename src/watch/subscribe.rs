//! One pub/sub subscription per Sentinel, held for the watcher's life:
//! reconnects with backoff, pings so that a silently dead peer is noticed,
//! and forwards well-formed events as triggers. It never runs a pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use redis::Value;
use tokio::sync::{mpsc, Notify};
use tokio::time::{interval, sleep, timeout};
use tracing::{debug, info, warn};

use super::Trigger;
use crate::sentinel::{parse_event, CHANNELS};

/// How long a subscription must last before a reconnect starts again
/// from the shortest backoff.
const STABLE: Duration = Duration::from_secs(10);

/// Holds one pub/sub subscription to one Sentinel, reconnecting with
/// backoff; pings it so that a silently dead peer is noticed.
pub(super) async fn subscribe(
    ep: String,
    client: redis::Client,
    tx: mpsc::Sender<Trigger>,
    reset: Arc<Notify>,
    t: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let conn = async {
            let mut ps = client.get_async_pubsub().await?;
            let channels: Vec<&str> = CHANNELS.iter().map(|(c, _)| *c).collect();
            ps.subscribe(&channels).await?;
            Ok::<_, redis::RedisError>(ps.split())
        };
        match timeout(t * 3, conn).await {
            Ok(Ok((mut sink, mut stream))) => {
                let up = Instant::now();
                // A reset asked for before this connection existed is
                // about the old one.
                let _ = reset.notified().now_or_never();
                info!(sentinel = %ep, "subscribed");
                if tx.send(Trigger::Subscribed(ep.clone())).await.is_err() {
                    return;
                }
                let mut ping = interval(Duration::from_secs(1));
                ping.tick().await;
                loop {
                    tokio::select! {
                        m = stream.next() => {
                            let Some(m) = m else { break };
                            let at = Instant::now();
                            let channel = m.get_channel_name().to_string();
                            let payload = String::from_utf8_lossy(m.get_payload_bytes()).into_owned();
                            info!(sentinel = %ep, channel = %channel, payload = %payload.escape_debug(), "event");
                            match parse_event(&channel, &payload) {
                                Ok(ev) => {
                                    if tx.send(Trigger::Sentinel { from: ep.clone(), ev, at }).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => warn!(sentinel = %ep, error = %e, "malformed event ignored"),
                            }
                        }
                        _ = ping.tick() => {
                            if !matches!(timeout(t * 3, sink.ping::<Value>()).await, Ok(Ok(_))) {
                                warn!(sentinel = %ep, "no answer to PING");
                                break;
                            }
                        }
                        _ = reset.notified() => break,
                    }
                }
                warn!(sentinel = %ep, "subscription lost; reconnecting");
                // Only a subscription that lasted earns a quick reconnect:
                // an endpoint that accepts SUBSCRIBE but fails every
                // question (a data Redis listed by mistake) would
                // otherwise be hammered ten times a second.
                if up.elapsed() >= STABLE {
                    backoff = Duration::from_millis(100);
                }
            }
            Ok(Err(e)) => debug!(sentinel = %ep, error = %e, "subscribe failed"),
            Err(_) => debug!(sentinel = %ep, "subscribe timed out"),
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
