//! The availability reader: reads what each warehouse holds from Odoo, in one call per
//! warehouse for any number of SKUs, and stores it.
//!
//! - At start (and after every reconnect): every product of every warehouse in use (the
//!   agents' and the channels'), a full read.
//! - After each merge pass: the SKUs the pass touched ([`Touched`]).
//! - Every `availability_poll`: the products whose quants or moves Odoo wrote since the
//!   cursor, which catches what people and Odoo itself do (a sales order reserving, a receipt,
//!   a scrap, an adjustment). The cursor is the moment the previous poll started, on Odoo's
//!   clock (from its answers' `Date`), read again with an overlap of [`OVERLAP`], because Odoo
//!   stamps a record with its transaction's start time: a long transaction commits rows dated
//!   before rows already seen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_protocol::{Qty, Timestamp};
use tokio_util::sync::CancellationToken;

use super::{Availability, JournalPosition, Touched, free};
use crate::channels::Channels;
use crate::odoo::stock_levels::StockLevel;
use crate::odoo::{OdooClient, OdooConfig, OdooError};
use crate::store::{Store, StoreError};

/// How far back each poll looks before the cursor.
pub const OVERLAP: Duration = Duration::from_secs(60);

/// How long the reader trusts what it learned of Odoo's products (which product ids a SKU
/// has, and the other way round) before it asks again: a product whose internal reference
/// was changed in Odoo is read under its new SKU within this time. Within it, the read after a
/// merge pass is one call per warehouse, the product lookup saved.
pub const PRODUCTS_KEPT: Duration = Duration::from_secs(300);

/// What the admin API shows of the reader.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReaderState {
    pub connected: bool,
    /// The last full read or poll that succeeded (RFC 3339).
    pub last_read_at: Option<String>,
    /// Odoo's write date the poll follows from.
    pub cursor: Option<String>,
    pub last_error: Option<String>,
}

/// Shared with the admin API.
#[derive(Debug, Default)]
pub struct ReaderStatus(Mutex<ReaderState>);

impl ReaderStatus {
    pub fn snapshot(&self) -> ReaderState {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut ReaderState)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Odoo(#[from] OdooError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything the reader needs, started by `Central::serve`.
#[derive(Debug)]
pub struct Reader {
    pub store: Store,
    pub odoo: OdooConfig,
    /// The channels fed (their outboxes are filled with each read, their workers woken).
    pub channels: Arc<Channels>,
    pub touched: Arc<Touched>,
    pub poll: Duration,
    pub status: Arc<ReaderStatus>,
}

impl Reader {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let started = std::time::Instant::now();
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.session(&shutdown) => r,
            };
            // A connection that worked for a while starts the backoff again from the start.
            if started.elapsed() > Duration::from_secs(60) {
                failures = 0;
            }
            if let Err(error) = result {
                tracing::warn!(%error, "reading availability from Odoo failed");
                self.status.update(|s| {
                    s.connected = false;
                    s.last_error = Some(error.to_string());
                });
            }
            failures = failures.saturating_add(1);
            let pause = Duration::from_millis(500u64 << failures.min(6));
            tokio::select! { () = shutdown.cancelled() => return, () = tokio::time::sleep(pause) => {} }
        }
    }

    /// One connection: a full read, then touched SKUs and polls until an error.
    async fn session(&self, shutdown: &CancellationToken) -> Result<(), ReadError> {
        let odoo = OdooClient::connect(&self.odoo).await?;
        let mut state = Session::new(odoo);
        self.status.update(|s| s.connected = true);
        // Followed from before the full read: nothing written meanwhile is missed.
        let started = odoo_now(&state.odoo);
        let codes = self.warehouse_codes().await?;
        for code in &codes {
            self.read(&mut state, code, None).await?;
        }
        let stored = self.store.blocking(|s| s.odoo_write_cursor()).await?;
        let mut cursor = stored.unwrap_or(started);
        self.done(&cursor);
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = self.touched.noted() => {
                    for (code, skus) in self.touched.take() {
                        let products = state.products_of(&skus).await?;
                        self.read(&mut state, &code, Some((products, skus))).await?;
                    }
                }
                _ = tick.tick() => {
                    let since = minus(&cursor, OVERLAP);
                    // The next poll follows from the moment this one starts, on Odoo's clock.
                    let next = odoo_now(&state.odoo);
                    let products = state.odoo.stock_written_since(&since).await?;
                    if !products.is_empty() {
                        let products: Vec<i64> = products.into_iter().collect();
                        state.learn_skus(&products).await?;
                        let skus: BTreeSet<String> = products
                            .iter()
                            .filter_map(|p| state.sku_of.get(p).cloned())
                            .collect();
                        for code in self.warehouse_codes().await? {
                            self.read(&mut state, &code, Some((products.clone(), skus.clone()))).await?;
                        }
                    }
                    if next > cursor {
                        cursor = next;
                        let at = cursor.clone();
                        self.store.blocking(move |s| s.set_odoo_write_cursor(&at)).await?;
                    }
                    self.done(&cursor);
                }
            }
        }
    }

    fn done(&self, cursor: &str) {
        self.status.update(|s| {
            s.last_read_at = Some(jiff::Timestamp::now().to_string());
            s.cursor = Some(cursor.to_owned());
            s.last_error = None;
        });
    }

    /// The warehouses in use: the registered agents' and the channels'.
    async fn warehouse_codes(&self) -> Result<BTreeSet<String>, ReadError> {
        let mut codes: BTreeSet<String> = self
            .store
            .blocking(|s| {
                s.list_agents()
                    .map(|agents| agents.into_iter().map(|a| a.warehouse).collect())
            })
            .await?;
        for channel in self.channels.configs.iter() {
            codes.extend(channel.warehouses.iter().cloned());
        }
        Ok(codes)
    }

    /// Reads one warehouse (every product, or `only` these products and SKUs) and stores it.
    async fn read(
        &self,
        state: &mut Session,
        code: &str,
        only: Option<(Vec<i64>, BTreeSet<String>)>,
    ) -> Result<(), ReadError> {
        let Some(view) = state.view_location(code).await? else {
            return Ok(());
        };
        let includes = self.positions(code).await?;
        // Stamped before the call: the figures hold everything Odoo committed before this
        // moment (a WooCommerce channel relies on it, see ARCHITECTURE.md "No oversell").
        let read_at = jiff::Timestamp::now().to_string();
        let levels = state
            .odoo
            .stock_levels(view, only.as_ref().map(|(p, _)| p.as_slice()))
            .await?;
        let ids: Vec<i64> = levels.iter().map(|l| l.product).collect();
        state.learn_skus(&ids).await?;
        let asked = only.clone().map(|(_, skus)| skus).unwrap_or_default();
        let rows = rows_for(code, &levels, &state.sku_of, &asked, &read_at, &includes);
        let channels = Arc::clone(&self.channels.configs);
        // A full read offers every SKU again (a channel added, a buffer changed since).
        let full = only.is_none();
        let changed = self
            .store
            .blocking(move |s| s.record_availability_with(&rows, &channels, full))
            .await?;
        if !changed.is_empty() {
            tracing::debug!(
                warehouse = code,
                changed = changed.len(),
                "availability changed"
            );
            self.channels.wake();
        }
        Ok(())
    }

    /// How far each agent of `code` is merged (read before Odoo is: the figures include at
    /// least that much).
    async fn positions(&self, code: &str) -> Result<Vec<JournalPosition>, ReadError> {
        let code = code.to_owned();
        Ok(self
            .store
            .blocking(move |store| {
                let agents: BTreeSet<String> = store
                    .list_agents()?
                    .into_iter()
                    .filter(|a| a.warehouse == code)
                    .map(|a| a.agent_id)
                    .collect();
                let progress = store.merge_progress()?;
                let mut out: Vec<JournalPosition> = progress
                    .into_iter()
                    .filter(|((agent, _), _)| agents.contains(agent))
                    .map(|((agent, log), p)| JournalPosition {
                        agent,
                        log: log.to_string(),
                        through: p.resolved_seq,
                    })
                    .collect();
                out.sort_by(|a, b| (&a.agent, &a.log).cmp(&(&b.agent, &b.log)));
                Ok(out)
            })
            .await?)
    }
}

/// What one connection caches of Odoo.
#[derive(Debug)]
struct Session {
    odoo: OdooClient,
    /// Warehouse code → view location (`None`: Odoo has no such warehouse).
    warehouses: BTreeMap<String, Option<i64>>,
    /// Product id → SKU, and SKU → its product ids (several: internal references are not
    /// unique in Odoo), kept for [`PRODUCTS_KEPT`] from `products_since`.
    sku_of: HashMap<i64, String>,
    ids_of: HashMap<String, Vec<i64>>,
    products_since: Instant,
}

impl Session {
    fn new(odoo: OdooClient) -> Session {
        Session {
            odoo,
            warehouses: BTreeMap::new(),
            sku_of: HashMap::new(),
            ids_of: HashMap::new(),
            products_since: Instant::now(),
        }
    }

    /// Forgets what was learned of the products once it is [`PRODUCTS_KEPT`] old.
    fn expire_products(&mut self) {
        if self.products_since.elapsed() >= PRODUCTS_KEPT {
            self.sku_of.clear();
            self.ids_of.clear();
            self.products_since = Instant::now();
        }
    }

    async fn view_location(&mut self, code: &str) -> Result<Option<i64>, OdooError> {
        if let Some(found) = self.warehouses.get(code) {
            return Ok(*found);
        }
        let found = self
            .odoo
            .warehouses(&[code.to_owned()])
            .await?
            .into_iter()
            .next()
            .map(|w| w.view_location);
        if found.is_none() {
            tracing::warn!(
                warehouse = code,
                "Odoo has no warehouse with this code: no availability read for it"
            );
        }
        self.warehouses.insert(code.to_owned(), found);
        Ok(found)
    }

    async fn learn_skus(&mut self, products: &[i64]) -> Result<(), OdooError> {
        self.expire_products();
        let unknown: Vec<i64> = products
            .iter()
            .copied()
            .filter(|p| !self.sku_of.contains_key(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !unknown.is_empty() {
            self.sku_of.extend(self.odoo.skus_of(&unknown).await?);
        }
        Ok(())
    }

    /// The product ids of `skus`, asked of Odoo only for SKUs not looked up within
    /// [`PRODUCTS_KEPT`].
    async fn products_of(&mut self, skus: &BTreeSet<String>) -> Result<Vec<i64>, OdooError> {
        self.expire_products();
        let unknown: Vec<String> = skus
            .iter()
            .filter(|sku| !self.ids_of.contains_key(*sku))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            // A SKU Odoo has no product for is asked again next time: it may have one by then.
            for row in self.odoo.products(&unknown).await? {
                self.sku_of.insert(row.id, row.sku.clone());
                let ids = self.ids_of.entry(row.sku).or_default();
                if !ids.contains(&row.id) {
                    ids.push(row.id);
                }
            }
        }
        Ok(skus
            .iter()
            .filter_map(|sku| self.ids_of.get(sku))
            .flatten()
            .copied()
            .collect())
    }
}

/// Odoo's clock now, as Odoo writes dates.
fn odoo_now(odoo: &OdooClient) -> String {
    let micros = Timestamp::now()
        .as_micros()
        .saturating_add(odoo.clock_offset_micros());
    jiff::Timestamp::from_microsecond(micros)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// An Odoo datetime `by` earlier (unchanged when it cannot be read).
fn minus(at: &str, by: Duration) -> String {
    let Ok(t) = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", at) else {
        return at.to_owned();
    };
    let by = jiff::SignedDuration::try_from(by).unwrap_or_default();
    t.checked_sub(by).map_or_else(
        |_| at.to_owned(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// The rows of one warehouse read: the levels summed per SKU (Odoo does not make SKUs unique),
/// and a zero row for each SKU asked about that has no stock there any more.
pub fn rows_for(
    warehouse: &str,
    levels: &[StockLevel],
    sku_of: &HashMap<i64, String>,
    asked: &BTreeSet<String>,
    read_at: &str,
    includes: &[JournalPosition],
) -> Vec<Availability> {
    let mut sums: BTreeMap<&str, (i64, i64)> = asked.iter().map(|s| (s.as_str(), (0, 0))).collect();
    for level in levels {
        let Some(sku) = sku_of.get(&level.product) else {
            continue;
        };
        let sum = sums.entry(sku.as_str()).or_default();
        sum.0 = sum.0.saturating_add(level.on_hand.micros());
        sum.1 = sum.1.saturating_add(level.reserved.micros());
    }
    sums.into_iter()
        .map(|(sku, (on_hand, reserved))| {
            let (on_hand, reserved) = (Qty::from_micros(on_hand), Qty::from_micros(reserved));
            Availability {
                sku: sku.to_owned(),
                warehouse: warehouse.to_owned(),
                on_hand,
                reserved,
                free: free(on_hand, reserved),
                read_at: read_at.to_owned(),
                includes: includes.to_vec(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(product: i64, on_hand: i64, reserved: i64) -> StockLevel {
        StockLevel {
            product,
            on_hand: Qty::from_units(on_hand),
            reserved: Qty::from_units(reserved),
        }
    }

    #[test]
    fn rows_sum_per_sku_and_zero_what_was_asked_and_is_gone() {
        let sku_of: HashMap<i64, String> = [
            (1, "A".to_owned()),
            (2, "A".to_owned()),
            (3, "B".to_owned()),
        ]
        .into();
        let asked: BTreeSet<String> = ["A".to_owned(), "GONE".to_owned()].into();
        let rows = rows_for(
            "WH",
            &[
                level(1, 10, 2),
                level(2, 5, 0),
                level(3, 7, 7),
                level(9, 1, 0),
            ],
            &sku_of,
            &asked,
            "t",
            &[],
        );
        let by: BTreeMap<&str, (Qty, Qty)> = rows
            .iter()
            .map(|r| (r.sku.as_str(), (r.on_hand, r.free)))
            .collect();
        assert_eq!(by["A"], (Qty::from_units(15), Qty::from_units(13)));
        assert_eq!(by["B"], (Qty::from_units(7), Qty::ZERO));
        assert_eq!(by["GONE"], (Qty::ZERO, Qty::ZERO));
        // A product without a SKU is not a row.
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn the_cursor_is_reread_with_an_overlap() {
        assert_eq!(
            minus("2026-12-03 10:00:30", Duration::from_secs(60)),
            "2026-12-03 09:59:30"
        );
        assert_eq!(minus("not a date", OVERLAP), "not a date");
    }
}
