//! The built-in synthetic feed behind `tickwire --demo`: fifty well-known symbols on
//! `quotes/<SYMBOL>`, a few updates per second each, so that a fresh broker shows live data at
//! once. Each publication is the symbol's whole quote record (twenty fields, as a market-data
//! feed sends them); an update changes only a few of them — the bid and ask on a quote, the
//! last price, size and volume on a trade — which is what `delta: true` subscribers save on.

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
    exchange: &'static str,
    prev_close: f64,
    open: f64,
    high: f64,
    low: f64,
    bid: f64,
    ask: f64,
    bid_size: u32,
    ask_size: u32,
    last: f64,
    last_size: u32,
    volume: u64,
    /// Price times size over the day, for the VWAP.
    turnover: f64,
    trades: u64,
}

impl Quote {
    fn new(symbol: &'static str, price: f64, rng: &mut fastrand::Rng) -> Quote {
        let open = price * (1.0 + 0.01 * (rng.f64() - 0.5));
        let volume = rng.u64(100_000..2_000_000);
        Quote {
            topic: format!("quotes/{symbol}"),
            symbol,
            exchange: if symbol.len() <= 3 { "XNYS" } else { "XNAS" },
            prev_close: price,
            open,
            high: open.max(price),
            low: open.min(price),
            bid: price - 0.01,
            ask: price + 0.01,
            bid_size: 100 * rng.u32(1..20),
            ask_size: 100 * rng.u32(1..20),
            last: price,
            last_size: 100,
            volume,
            turnover: price * volume as f64,
            trades: volume / 150,
        }
    }

    /// One market event: a quote change most of the time (bid and ask move), a trade otherwise
    /// (last, size, volume and the day's range move).
    fn step(&mut self, rng: &mut fastrand::Rng) {
        // A small random walk: about 5 basis points a step.
        let mid = (self.bid + self.ask) / 2.0;
        let mid = (mid + mid * 0.001 * (rng.f64() - 0.5)).max(0.02);
        let spread = (mid * 0.0002).max(0.01);
        if rng.u8(..4) > 0 {
            self.bid = mid - spread / 2.0;
            self.ask = mid + spread / 2.0;
        } else {
            self.last = if rng.bool() { self.ask } else { self.bid };
            self.last_size = 100 * rng.u32(1..10);
            self.volume += u64::from(self.last_size);
            self.turnover += self.last * f64::from(self.last_size);
            self.trades += 1;
            self.high = self.high.max(self.last);
            self.low = self.low.min(self.last);
        }
    }
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
        .map(|&(symbol, price)| Quote::new(symbol, price, &mut rng))
        .collect();
    // Every symbol has a value before the first subscriber arrives.
    for q in &quotes {
        let _ = publisher.publish(&q.topic, payload(q).as_bytes());
    }
    let per_tick = (UPDATES_PER_SECOND * TICK.as_millis() as u32 / 1000).max(1);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        for _ in 0..per_tick {
            let q = &mut quotes[rng.usize(..SYMBOLS.len())];
            q.step(&mut rng);
            if let Err(e) = publisher.publish(&q.topic, payload(q).as_bytes()) {
                log::warn!("demo feed: publish to {} refused: {e}", q.topic);
            }
        }
    }
}

/// The whole record, as JSON.
fn payload(q: &Quote) -> String {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let vwap = if q.volume > 0 {
        q.turnover / q.volume as f64
    } else {
        q.last
    };
    let change = q.last - q.prev_close;
    format!(
        "{{\"symbol\":\"{}\",\"exchange\":\"{}\",\"currency\":\"USD\",\"status\":\"trading\",\
         \"lot_size\":100,\"prev_close\":{:.2},\"open\":{:.2},\"high\":{:.2},\"low\":{:.2},\
         \"bid\":{:.2},\"ask\":{:.2},\"bid_size\":{},\"ask_size\":{},\"last\":{:.2},\
         \"last_size\":{},\"change\":{change:.2},\"volume\":{},\"vwap\":{vwap:.4},\"trades\":{},\
         \"ts\":{ts}}}",
        q.symbol,
        q.exchange,
        q.prev_close,
        q.open,
        q.high,
        q.low,
        q.bid,
        q.ask,
        q.bid_size,
        q.ask_size,
        q.last,
        q.last_size,
        q.volume,
        q.trades,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_with_the_board_fields() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut q = Quote::new("AAPL", 100.0, &mut rng);
        for _ in 0..100 {
            q.step(&mut rng);
            let v: serde_json::Value = serde_json::from_str(&payload(&q)).unwrap();
            assert_eq!(v.as_object().map(|o| o.len()), Some(20));
            for field in ["bid", "ask", "last", "open", "volume", "ts"] {
                assert!(v[field].is_number(), "{field}");
            }
            assert!(v["bid"].as_f64() <= v["ask"].as_f64());
        }
    }

    #[test]
    fn an_update_changes_a_few_fields_so_a_delta_is_small() {
        let mut rng = fastrand::Rng::with_seed(2);
        let mut q = Quote::new("MSFT", 400.0, &mut rng);
        let mut total = (0, 0);
        for _ in 0..50 {
            let before = payload(&q);
            q.step(&mut rng);
            let after = payload(&q);
            let patch = crate::broker::delta::patch_between(before.as_bytes(), after.as_bytes())
                .expect("a delta");
            total = (total.0 + patch.len(), total.1 + after.len());
        }
        // Two to six fields of twenty change: the patches are a fraction of the records.
        assert!(total.0 * 4 < total.1, "{total:?}");
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
