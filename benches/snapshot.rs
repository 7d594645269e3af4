//! Snapshot: read a sysroot with N `System RAM (virtio_mem)` ranges in /proc/iomem and N memory blocks in sysfs
//! (the sparse fixture, generated), reduce it to crash ranges, and decide: what the daemon does once per quiet
//! burst. N = 1k, 4k, 16k, 64k; throughput is per range, so a flat per-range figure means linear growth.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

mod common;

use common::{SnapshotFixture, SNAPSHOT_SIZES};

fn snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    for n in SNAPSHOT_SIZES {
        let mut fixture = SnapshotFixture::generate(n);
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::new("ranges", n), &n, |b, _| {
            b.iter(|| black_box(fixture.take_and_decide()))
        });
    }
    group.finish();
}

criterion_group!(benches, snapshot);
criterion_main!(benches);
