//! Labelled series of the gateway's own metric types, exposed as the prometheus crate
//! exposes its own (label pairs sorted by name).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

/// A series' label values, in its family's label order.
type Values = Box<[Box<str>]>;

/// Series by label values. Series live as long as the process,
/// as the crate's did: a counter must not restart while Prometheus scrapes it.
pub struct Family<T> {
    /// The label names, in the order `get` takes their values.
    pub labels: &'static [&'static str],
    series: RwLock<HashMap<Values, Arc<T>>>,
}

impl<T: Default> Family<T> {
    /// A family with no series yet.
    pub fn new(labels: &'static [&'static str]) -> Self {
        Family {
            labels,
            series: RwLock::default(),
        }
    }

    /// The series of `values` (made on first use).
    pub fn get(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.labels.len());
        let key: Values = values.iter().map(|v| Box::from(*v)).collect();
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return s.clone();
        }
        let mut series = self.series.write().unwrap_or_else(|e| e.into_inner());
        series.entry(key).or_default().clone()
    }

    /// One metric per series, made by `fill` from the series and its label pairs (the
    /// family's labels and `extra`, sorted by name as the crate sorts them).
    pub fn collect(
        &self,
        extra: &[(&str, &str)],
        mut fill: impl FnMut(&T, Vec<LabelPair>, &mut Vec<proto::Metric>),
    ) -> Vec<proto::Metric> {
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(series.len());
        for (values, s) in series.iter() {
            let mut pairs: Vec<(&str, &str)> = self
                .labels
                .iter()
                .copied()
                .zip(values.iter().map(|v| &**v))
                .chain(extra.iter().copied())
                .collect();
            pairs.sort_unstable_by_key(|(name, _)| *name);
            let pairs = pairs
                .into_iter()
                .map(|(name, value)| {
                    let mut p = LabelPair::default();
                    p.set_name(name.to_string());
                    p.set_value(value.to_string());
                    p
                })
                .collect();
            fill(s, pairs, &mut out);
        }
        out
    }
}

/// A metric family of `kind` with its series `metrics`.
pub fn exposed(
    (name, help): (&str, &str),
    kind: MetricType,
    metrics: Vec<proto::Metric>,
) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}
