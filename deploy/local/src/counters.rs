//! `wasi:keyvalue@0.2.0-draft2` (`store` and `atomics`) for the local host: the store the
//! edge counts rate limits in, labelled `verge-counters`, shared by every instance of the
//! host so a limit holds across them (`verge_kv_store::counters`).
//!
//! Only that one label opens; edge KV stays behind `spin:key-value`, so counting can never
//! touch published data. Values are little-endian `i64`s, as `increment` keeps them;
//! compare-and-swap is not offered (the edge does not use it), and says so.

use std::sync::Arc;

use verge_kv_store::counters::{COUNTERS_STORE, Counters};
use wasmtime::component::{HasData, Resource, ResourceTable};

wasmtime::component::bindgen!({
    inline: "
        package wasi:keyvalue@0.2.0-draft2;

        interface store {
            variant error {
                no-such-store,
                access-denied,
                other(string)
            }

            record key-response {
                keys: list<string>,
                cursor: option<string>
            }

            open: func(identifier: string) -> result<bucket, error>;

            resource bucket {
                get: func(key: string) -> result<option<list<u8>>, error>;
                set: func(key: string, value: list<u8>) -> result<_, error>;
                delete: func(key: string) -> result<_, error>;
                exists: func(key: string) -> result<bool, error>;
                list-keys: func(cursor: option<string>) -> result<key-response, error>;
            }
        }

        interface atomics {
            use store.{bucket, error};

            variant cas-error {
                store-error(error),
                cas-failed(cas),
            }

            resource cas {
                new: static func(bucket: borrow<bucket>, key: string) -> result<cas, error>;
                current: func() -> result<option<list<u8>>, error>;
            }

            increment: func(bucket: borrow<bucket>, key: string, delta: s64) -> result<s64, error>;
            swap: func(cas: cas, value: list<u8>) -> result<_, cas-error>;
        }

        world host {
            import store;
            import atomics;
        }
    ",
    imports: { default: trappable },
    with: {
        "wasi:keyvalue/store.bucket": CounterBucket,
        "wasi:keyvalue/atomics.cas": NoCas,
    },
});

use wasi::keyvalue::atomics::{self, CasError};
use wasi::keyvalue::store::{self, Error, KeyResponse};

/// The opened counters store; there is one, so it carries nothing.
/// (`pub` because the generated bindings re-export it.)
#[derive(Debug)]
#[allow(unreachable_pub)]
pub struct CounterBucket;

/// Compare-and-swap handles are never made.
#[derive(Debug)]
#[allow(unreachable_pub)]
pub struct NoCas;

/// What the counter functions see of an instance's state.
pub(crate) struct CountersView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) counters: &'a Arc<Counters>,
}

struct Marker;

impl HasData for Marker {
    type Data<'a> = CountersView<'a>;
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn decode(bytes: &[u8]) -> Result<i64, Error> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| Error::Other("a counter is 8 bytes, little-endian".into()))?;
    Ok(i64::from_le_bytes(bytes))
}

impl store::Host for CountersView<'_> {
    fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<CounterBucket>, Error>> {
        if identifier != COUNTERS_STORE {
            return Ok(Err(Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(CounterBucket)?))
    }
}

impl store::HostBucket for CountersView<'_> {
    fn get(&mut self, _: Resource<CounterBucket>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(Ok(self.counters.get(&key).map(|value| value.to_le_bytes().to_vec())))
    }

    fn set(&mut self, _: Resource<CounterBucket>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        Ok(decode(&value).map(|value| self.counters.set(&key, value)))
    }

    fn delete(&mut self, _: Resource<CounterBucket>, key: String) -> wasmtime::Result<Result<(), Error>> {
        self.counters.delete(&key);
        Ok(Ok(()))
    }

    fn exists(&mut self, _: Resource<CounterBucket>, key: String) -> wasmtime::Result<Result<bool, Error>> {
        Ok(Ok(self.counters.get(&key).is_some()))
    }

    fn list_keys(
        &mut self,
        _: Resource<CounterBucket>,
        _cursor: Option<String>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        Ok(Err(Error::Other("the counters store does not list its keys".into())))
    }

    fn drop(&mut self, bucket: Resource<CounterBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for CountersView<'_> {
    fn increment(
        &mut self,
        _: Resource<CounterBucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, Error>> {
        Ok(Ok(self.counters.add(&key, delta, now_secs())))
    }

    fn swap(&mut self, cas: Resource<NoCas>, _value: Vec<u8>) -> wasmtime::Result<Result<(), CasError>> {
        self.table.delete(cas)?;
        Ok(Err(CasError::StoreError(Error::Other("compare-and-swap is not offered".into()))))
    }
}

impl atomics::HostCas for CountersView<'_> {
    fn new(&mut self, _: Resource<CounterBucket>, _key: String) -> wasmtime::Result<Result<Resource<NoCas>, Error>> {
        Ok(Err(Error::Other("compare-and-swap is not offered".into())))
    }

    fn current(&mut self, _: Resource<NoCas>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(Err(Error::Other("compare-and-swap is not offered".into())))
    }

    fn drop(&mut self, cas: Resource<NoCas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> CountersView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, Marker>(linker, view)?;
    atomics::add_to_linker::<T, Marker>(linker, view)
}
