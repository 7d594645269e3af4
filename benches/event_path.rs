//! Event path: raw uevent bytes → domain event → debouncer, as the daemon handles a 1 TiB virtio-mem add
//! (8192 blocks of 128 MiB, `add` then `online` each: 16,384 uevents). Throughput is per uevent.

use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

mod common;

use common::{handle_storm, new_debouncer, storm, BLOCKS};

fn event_path(c: &mut Criterion) {
    let messages = storm(BLOCKS);
    let start = Instant::now();
    // A storm that is not one burst would mean the benchmark measures something else.
    let check = handle_storm(&messages, new_debouncer(), start);
    assert_eq!(check.coalesced(), messages.len() as u64 - 1);

    let mut group = c.benchmark_group("event_path");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("uevents_16384", |b| {
        b.iter_batched(
            new_debouncer,
            |debouncer| black_box(handle_storm(black_box(&messages), debouncer, start)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, event_path);
criterion_main!(benches);
