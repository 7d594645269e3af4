//! Instruction counts, the stable second figure next to criterion's times on a shared machine. Run under
//! callgrind with collection limited to the `measured_*` functions (benches/bench.sh does this):
//!
//!     valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_*' \
//!         target/release/deps/instructions-… event-path
//!
//! Each mode runs its work `ROUNDS` times; divide callgrind's total by ROUNDS × the element count it prints.
//! Without valgrind the binary just runs the work once more (`cargo bench` runs it as a smoke test).

use std::hint::black_box;
use std::time::Instant;

mod common;

use common::{handle_storm, new_debouncer, storm, SnapshotFixture, BLOCKS};

const ROUNDS: u64 = 3;

#[inline(never)]
fn measured_event_path(messages: &[Vec<u8>], start: Instant) {
    black_box(handle_storm(black_box(messages), new_debouncer(), start));
}

#[inline(never)]
fn measured_snapshot(fixture: &mut SnapshotFixture) {
    black_box(fixture.take_and_decide());
}

fn main() {
    // cargo passes `--bench`; the mode is the first argument that is not an option.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    match args.first().map(String::as_str) {
        None | Some("event-path") => {
            let messages = storm(BLOCKS);
            let start = Instant::now();
            for _ in 0..ROUNDS {
                measured_event_path(&messages, start);
            }
            println!("event-path rounds={ROUNDS} elements={}", messages.len());
        }
        Some("snapshot") => {
            let ranges: u64 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(16_384);
            let mut fixture = SnapshotFixture::generate(ranges);
            for _ in 0..ROUNDS {
                measured_snapshot(&mut fixture);
            }
            println!("snapshot rounds={ROUNDS} elements={ranges}");
        }
        Some(other) => {
            eprintln!("unknown mode {other:?}: event-path | snapshot [RANGES]");
            std::process::exit(2);
        }
    }
}
