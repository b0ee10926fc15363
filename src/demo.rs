//! The built-in synthetic feed behind `tickwire --demo`: a random walk of bid, ask, last and
//! volume for fifty well-known symbols on `quotes/<SYMBOL>`, a few updates per second each, so
//! that a fresh broker shows live data at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Publisher;

/// Symbols and a plausible starting price.
pub const SYMBOLS: [(&str, f64); 50] = [
    ("AAPL", 189.5),
    ("MSFT", 415.2),
    ("GOOGL", 171.3),
    ("AMZN", 181.6),
    ("NVDA", 121.4),
    ("META", 502.1),
    ("TSLA", 178.9),
    ("BRK.B", 412.7),
    ("JPM", 198.3),
    ("V", 274.8),
    ("JNJ", 147.2),
    ("WMT", 67.9),
    ("PG", 166.4),
    ("MA", 452.3),
    ("XOM", 113.5),
    ("UNH", 492.6),
    ("HD", 345.1),
    ("CVX", 157.8),
    ("KO", 62.4),
    ("PEP", 171.9),
    ("ABBV", 168.2),
    ("MRK", 128.7),
    ("COST", 812.5),
    ("AVGO", 1420.3),
    ("ADBE", 478.6),
    ("CRM", 246.1),
    ("NFLX", 641.2),
    ("AMD", 159.4),
    ("INTC", 30.8),
    ("CSCO", 47.3),
    ("ORCL", 139.6),
    ("QCOM", 201.5),
    ("TXN", 196.2),
    ("IBM", 171.4),
    ("DIS", 101.7),
    ("NKE", 93.2),
    ("MCD", 258.9),
    ("BA", 178.4),
    ("CAT", 341.8),
    ("GS", 462.3),
    ("MS", 98.6),
    ("BAC", 39.7),
    ("WFC", 58.1),
    ("T", 17.4),
    ("VZ", 40.2),
    ("PFE", 28.9),
    ("SBUX", 78.6),
    ("UBER", 70.3),
    ("SHOP", 66.8),
    ("SAP", 191.2),
];

/// Updates per second, over all symbols (about four per symbol).
const UPDATES_PER_SECOND: u32 = 200;
const TICK: Duration = Duration::from_millis(20);

struct Quote {
    topic: String,
    symbol: &'static str,
    open: f64,
    last: f64,
    volume: u64,
}

/// Publishes the demo feed until `stop` is set.
pub fn spawn(publisher: Publisher, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tickwire-demo".into())
        .spawn(move || run(&publisher, &stop))
}

fn run(publisher: &Publisher, stop: &AtomicBool) {
    let mut rng = fastrand::Rng::new();
    let mut quotes: Vec<Quote> = SYMBOLS
        .iter()
        .map(|&(symbol, price)| Quote {
            topic: format!("quotes/{symbol}"),
            symbol,
            open: price,
            last: price,
            volume: rng.u64(100_000..2_000_000),
        })
        .collect();
    // Every symbol has a value before the first subscriber arrives.
    for q in &quotes {
        let _ = publisher.publish(&q.topic, payload(q, &mut rng).as_bytes());
    }
    let per_tick = (UPDATES_PER_SECOND * TICK.as_millis() as u32 / 1000).max(1);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        for _ in 0..per_tick {
            let q = &mut quotes[rng.usize(..SYMBOLS.len())];
            // A small random walk: about 5 basis points a step.
            let step = q.last * 0.0005 * (rng.f64() * 2.0 - 1.0) * 2.0;
            q.last = (q.last + step).max(0.01);
            q.volume += rng.u64(1..50) * 100;
            if let Err(e) = publisher.publish(&q.topic, payload(q, &mut rng).as_bytes()) {
                log::warn!("demo feed: publish to {} refused: {e}", q.topic);
            }
        }
    }
}

fn payload(q: &Quote, rng: &mut fastrand::Rng) -> String {
    let spread = (q.last * 0.0002).max(0.01);
    let bid = q.last - spread * rng.f64();
    let ask = bid + spread;
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "{{\"symbol\":\"{}\",\"bid\":{bid:.2},\"ask\":{ask:.2},\"last\":{:.2},\"open\":{:.2},\"volume\":{},\"ts\":{ts}}}",
        q.symbol, q.last, q.open, q.volume
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_with_the_board_fields() {
        let q = Quote {
            topic: "quotes/AAPL".into(),
            symbol: "AAPL",
            open: 100.0,
            last: 101.0,
            volume: 5,
        };
        let v: serde_json::Value =
            serde_json::from_str(&payload(&q, &mut fastrand::Rng::with_seed(1))).unwrap();
        for field in ["bid", "ask", "last", "open", "volume", "ts"] {
            assert!(v[field].is_number(), "{field}");
        }
        assert!(v["bid"].as_f64() <= v["ask"].as_f64());
    }

    #[test]
    fn symbols_are_valid_topics() {
        for (s, _) in SYMBOLS {
            assert_eq!(
                crate::broker::topic::validate_topic(&format!("quotes/{s}")),
                Ok(())
            );
        }
    }
}
