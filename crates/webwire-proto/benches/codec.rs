//! Codec speed: parsing and encoding a UTF-8 request with a 16-byte and a
//! 64 KiB payload. Results and the machine they ran on: BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p webwire-proto
//! ```

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use webwire_proto::{ClientMessage, Name, Payload, Request, RequestId};

/// Payload sizes in bytes: a small request and a 64 KiB one.
const SIZES: [(&str, usize); 2] = [("16B", 16), ("64KiB", 64 * 1024)];

/// A UTF-8 request named `echo` whose payload is `size` bytes of text.
fn request(size: usize) -> ClientMessage {
    let text: String = "webwire ".chars().cycle().take(size).collect();
    let request = Request::new(
        RequestId::from(0x0102_0304_0506_0708),
        Name::from_static("echo"),
        Payload::utf8(text),
    )
    .expect("valid request");
    ClientMessage::Request(request)
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_request_utf8");
    for (label, size) in SIZES {
        let frame: Bytes = request(size).to_bytes();
        group.throughput(Throughput::Bytes(frame.len() as u64));
        // Cloning the frame is one reference-count increment: parsing takes
        // the Bytes by value, as a server does with each received message.
        group.bench_function(label, |b| {
            b.iter(|| ClientMessage::parse(black_box(frame.clone())).expect("parses"))
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_request_utf8");
    for (label, size) in SIZES {
        let message = request(size);
        let mut buf = BytesMut::with_capacity(message.encoded_len());
        group.throughput(Throughput::Bytes(message.encoded_len() as u64));
        // One reused buffer, cleared each iteration: no allocation after the first.
        group.bench_function(label, |b| {
            b.iter(|| {
                buf.clear();
                black_box(&message).encode(&mut buf);
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse, encode);
criterion_main!(benches);
