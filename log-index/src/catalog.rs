//! What the span index holds, for pickers: the distinct services, and for one service the
//! distinct operations (span names) with their span kinds, over every partition.
//!
//! Both are terms aggregations over the fast string columns `service` and `name`; the
//! operations of a service are aggregated once per span kind (the `kind` field is indexed but
//! not a fast field), so each `(name, kind)` pair is exact.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tantivy::Term;
use tantivy::aggregation::AggregationCollector;
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::agg_result::AggregationResults;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;

use crate::search::SearchError;
use crate::store::{IndexError, IndexStore};

/// Most services, or operations of one service, returned.
pub const MAX_CATALOG_ITEMS: usize = 10_000;

/// The span kinds the index stores, as in the `kind` field.
pub const SPAN_KINDS: [&str; 6] = [
    "server",
    "client",
    "internal",
    "producer",
    "consumer",
    "unspecified",
];

/// One operation of a service: a span name and a kind it was sent with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Operation {
    /// The span name.
    pub name: String,
    /// The span kind (`server`, `client`, `internal`, `producer`, `consumer`, `unspecified`).
    pub kind: String,
}

fn tantivy(context: &str) -> impl FnOnce(tantivy::TantivyError) -> SearchError + '_ {
    move |source| {
        SearchError::Index(IndexError::Tantivy {
            context: context.to_owned(),
            source,
        })
    }
}

fn field(store: &IndexStore, name: &str) -> Result<tantivy::schema::Field, SearchError> {
    store
        .schema()
        .get_field(name)
        .map_err(|_| SearchError::InvalidParameter(format!("the index has no field '{name}'")))
}

fn term_query(store: &IndexStore, name: &str, value: &str) -> Result<Box<dyn Query>, SearchError> {
    Ok(Box::new(TermQuery::new(
        Term::from_field_text(field(store, name)?, value),
        IndexRecordOption::Basic,
    )))
}

/// The distinct values of the fast string field `column` among the documents matching
/// `query`, over every partition of `store`, added to `into` (at most [`MAX_CATALOG_ITEMS`]).
fn distinct(
    store: &IndexStore,
    query: &dyn Query,
    column: &str,
    into: &mut BTreeSet<String>,
) -> Result<(), SearchError> {
    let request = json!({
        "values": { "terms": { "field": column, "size": MAX_CATALOG_ITEMS } }
    });
    let aggregations: Aggregations = serde_json::from_value(request)
        .map_err(|e| SearchError::InvalidParameter(format!("aggregation: {e}")))?;
    for partition in store.partitions() {
        let searcher = partition.searcher();
        let collector = AggregationCollector::from_aggs(aggregations.clone(), Default::default());
        let results: AggregationResults = searcher
            .search(query, &collector)
            .map_err(tantivy("catalog"))?;
        let results = serde_json::to_value(&results).unwrap_or(Value::Null);
        let buckets = results["values"]["buckets"].as_array().cloned();
        for bucket in buckets.unwrap_or_default() {
            if let Some(key) = bucket["key"].as_str() {
                into.insert(key.to_owned());
            }
        }
    }
    Ok(())
}

/// The distinct services of the spans in `store`, sorted, at most [`MAX_CATALOG_ITEMS`].
pub fn services(store: &IndexStore) -> Result<Vec<String>, SearchError> {
    let mut services = BTreeSet::new();
    distinct(store, &AllQuery, "service", &mut services)?;
    Ok(services.into_iter().take(MAX_CATALOG_ITEMS).collect())
}

/// The distinct operations of `service` with their span kinds, sorted by name then kind, at
/// most [`MAX_CATALOG_ITEMS`].
pub fn operations(store: &IndexStore, service: &str) -> Result<Vec<Operation>, SearchError> {
    let mut operations = BTreeSet::new();
    for kind in SPAN_KINDS {
        let query = BooleanQuery::new(vec![
            (Occur::Must, term_query(store, "service", service)?),
            (Occur::Must, term_query(store, "kind", kind)?),
        ]);
        let mut names = BTreeSet::new();
        distinct(store, &query, "name", &mut names)?;
        operations.extend(names.into_iter().map(|name| Operation {
            name,
            kind: kind.to_owned(),
        }));
    }
    Ok(operations.into_iter().take(MAX_CATALOG_ITEMS).collect())
}
