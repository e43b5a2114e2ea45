//! What is measured at each size of the node, in what order. On Docker: the floor and the
//! collector in turns at every concurrency, then the collector on the list path
//! (`--event-index=false`) and another build where asked for, then the docker CLI. On CRI: the
//! CRI floor and the collector in turns at every concurrency, then another build where asked
//! for.

use crate::config::RuntimeKind;
use crate::layout::PodKey;
use crate::measure::{Bench, Point};
use crate::server::{ServerFacts, Variant};

pub(crate) async fn measure_size(
    bench: &Bench<'_>,
) -> Result<(Vec<Point>, Vec<ServerFacts>), String> {
    match bench.side.kind() {
        RuntimeKind::Docker => measure_docker(bench).await,
        RuntimeKind::Cri => measure_cri(bench).await,
    }
}

async fn measure_docker(bench: &Bench<'_>) -> Result<(Vec<Point>, Vec<ServerFacts>), String> {
    let config = bench.config;
    let mut points = Vec::new();
    let mut all_facts = Vec::new();
    let max_c = config.concurrency.iter().copied().max().unwrap_or(1);

    // The default collector, each concurrency right after the floor's.
    let variant = Variant {
        path: "collector",
        binary: config.collector.clone(),
        args: config.collector_args.clone(),
    };
    let (server, mut facts) = bench.start(&variant).await?;
    for &c in &config.concurrency {
        // Floor and collector take turns, so that other work on the machine weighs on both.
        let total = config.requests.max(c * 10);
        let share = total.div_ceil(config.rounds);
        let (mut floor, mut collector) = (Vec::new(), Vec::new());
        for _ in 0..config.rounds {
            floor.push(bench.floor(c, share).await);
            collector.push(bench.collector(&server, variant.path, c, share).await);
        }
        points.extend(Point::merge(floor));
        points.extend(Point::merge(collector));
        if c == 1 {
            points.push(bench.floor_seq().await);
            points.push(bench.list_only().await);
        }
    }
    bench.finish(server, &mut facts).await;
    all_facts.push(facts);

    // The collector on the list path (`--event-index=false`), where asked for.
    if let Some(args) = &config.list_args {
        let variant = Variant {
            path: "collector-list",
            binary: config.collector.clone(),
            args: config.collector_args.iter().chain(args).cloned().collect(),
        };
        let (server, mut facts) = bench.start(&variant).await?;
        for c in [1, max_c] {
            let total = config.requests.max(c * 10);
            points.push(bench.collector(&server, variant.path, c, total).await);
        }
        bench.finish(server, &mut facts).await;
        all_facts.push(facts);
    }

    // Another build, where asked for.
    if let Some(binary) = &config.compare {
        let variant = Variant {
            path: "collector-b",
            binary: binary.clone(),
            args: config.collector_args.clone(),
        };
        let (server, mut facts) = bench.start(&variant).await?;
        for c in [1, max_c] {
            let total = config.requests.max(c * 10);
            points.push(bench.collector(&server, variant.path, c, total).await);
        }
        bench.finish(server, &mut facts).await;
        all_facts.push(facts);
    }

    // The command line, one query at a time (a person at a shell).
    points.push(bench.cli().await);
    Ok((points, all_facts))
}

async fn measure_cri(bench: &Bench<'_>) -> Result<(Vec<Point>, Vec<ServerFacts>), String> {
    let config = bench.config;
    let mut points = Vec::new();
    let mut all_facts = Vec::new();
    let max_c = config.concurrency.iter().copied().max().unwrap_or(1);

    // The default collector on the CRI socket, each concurrency right after the CRI floor's.
    let variant = Variant {
        path: "cri-collector",
        binary: config.collector.clone(),
        args: config.collector_args.clone(),
    };
    let (server, mut facts) = bench.start(&variant).await?;
    for &c in &config.concurrency {
        // Floor and collector take turns, so that other work on the machine weighs on both.
        let total = config.requests.max(c * 10);
        let share = total.div_ceil(config.rounds);
        let (mut floor, mut collector) = (Vec::new(), Vec::new());
        for _ in 0..config.rounds {
            floor.push(bench.cri_floor(c, share).await);
            collector.push(bench.collector(&server, variant.path, c, share).await);
        }
        points.extend(Point::merge(floor));
        points.extend(Point::merge(collector));
        if c == 1 {
            points.push(bench.cri_list_only().await);
        }
    }
    bench.finish(server, &mut facts).await;
    all_facts.push(facts);

    // Another build, where asked for.
    if let Some(binary) = &config.compare {
        let variant = Variant {
            path: "cri-collector-b",
            binary: binary.clone(),
            args: config.collector_args.clone(),
        };
        let (server, mut facts) = bench.start(&variant).await?;
        for c in [1, max_c] {
            let total = config.requests.max(c * 10);
            points.push(bench.collector(&server, variant.path, c, total).await);
        }
        bench.finish(server, &mut facts).await;
        all_facts.push(facts);
    }
    Ok((points, all_facts))
}

/// Every pod, in an order that is the same for every path and spreads over namespaces.
pub(crate) fn shuffled(pods: &[PodKey], seed: u64) -> Vec<PodKey> {
    let mut v = pods.to_vec();
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in (1..v.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        v.swap(i, (state % (i as u64 + 1)) as usize);
    }
    v
}
