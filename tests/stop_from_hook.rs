//! Stopping a broker from its own `on_connection` hook, which runs on a worker thread: it cannot
//! wait for the workers (one of them is the caller), so it starts the stop and returns, and never
//! deadlocks; the workers finish on their own within the shutdown bound. (The C API refuses the
//! same call with TW_ERR_WRONG_THREAD: tests/c_library.rs, bad_arguments.c.)

mod util;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tickwire::{Broker, ConnectionEvent, SHUTDOWN_WITHIN};
use util::broker::Sub;

#[test]
fn shutdown_from_the_hook_returns_and_the_broker_stops() {
    let slot: Arc<Mutex<Option<Broker>>> = Arc::default();
    let (done, returned) = mpsc::channel();
    let hook_slot = slot.clone();
    let broker = Broker::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .local_listen(None)
        .workers(2)
        .on_connection(move |event, _| {
            if event != ConnectionEvent::Opened {
                return;
            }
            let Some(b) = hook_slot.lock().unwrap().take() else {
                return;
            };
            let on_worker = b.is_worker_thread();
            let started = Instant::now();
            b.shutdown();
            let _ = done.send((on_worker, started.elapsed()));
        })
        .start()
        .expect("broker starts");
    let addr = broker.public_addr();
    assert!(
        !broker.is_worker_thread(),
        "the test thread is not a worker"
    );
    *slot.lock().unwrap() = Some(broker);

    let mut sub = Sub::connect_to(addr, "/ws");
    let (on_worker, took) = returned
        .recv_timeout(Duration::from_secs(10))
        .expect("shutdown returned inside the hook (no deadlock)");
    assert!(on_worker, "the hook runs on a worker thread");
    assert!(
        took < Duration::from_millis(500),
        "shutdown waited {took:?} in the hook"
    );
    // The client is told, and the listener closes, within the bound.
    let deadline = Instant::now() + SHUTDOWN_WITHIN;
    loop {
        match sub.ws.read() {
            Ok(tungstenite::Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1001);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("no close 1001: {e}"),
        }
    }
    util::eventually(SHUTDOWN_WITHIN, "the listener closed", || {
        std::net::TcpStream::connect(addr).is_err()
    });
    assert!(Instant::now() < deadline + Duration::from_secs(1));
}
