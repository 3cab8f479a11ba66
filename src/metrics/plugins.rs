//! `sluice_plugin_phase_latency_ms{plugin,phase}`: the time each plugin phase call takes,
//! recorded per worker ([`super::local`]): a chain of ten plugins records twenty times per
//! request, and the prometheus crate's histogram made four locked read-modify-writes of each.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use super::family::{exposed, Family};
use super::local::PerWorker;

const NAME: (&str, &str) = (
    "sluice_plugin_phase_latency_ms",
    "Time spent in a plugin phase",
);

/// The latency histograms of every plugin and phase.
pub struct PluginLatency {
    desc: Desc,
    series: Family<PerWorker>,
}

impl PluginLatency {
    /// No series yet.
    pub fn new() -> PluginLatency {
        let series = Family::new(&["plugin", "phase"]);
        let labels = series.labels.iter().map(|l| l.to_string()).collect();
        let desc =
            Desc::new(NAME.0.into(), NAME.1.into(), labels, HashMap::new()).expect("valid metric");
        PluginLatency { desc, series }
    }

    /// The histogram of `plugin` (its name) in `phase`.
    pub fn series(&self, plugin: &str, phase: &str) -> Arc<PerWorker> {
        self.series.get(&[plugin, phase])
    }
}

impl Default for PluginLatency {
    fn default() -> Self {
        Self::new()
    }
}

/// The registry takes ownership of a collector: the histograms are exposed through this handle.
pub(super) struct Exposed(pub(super) Arc<PluginLatency>);

impl Collector for Exposed {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let metrics = self.0.series.collect(&[], |h, labels, out| {
            let mut m = proto::Metric::from_label(labels);
            m.set_histogram(h.proto());
            out.push(m);
        });
        vec![exposed(NAME, MetricType::HISTOGRAM, metrics)]
    }
}
