//! `spin:key-value@3.0.0` for the local host, over the local edge store
//! (`verge_kv_store`, which the native edge node reads too).

use std::sync::Arc;

pub(crate) use verge_kv_store::EdgeStore;
use verge_kv_store::{DEFAULT_STORE, StoreError};
use wasmtime::component::{Access, Accessor, FutureReader, HasData, Resource, ResourceTable, StreamReader};

wasmtime::component::bindgen!({
    inline: "
        package spin:key-value@3.0.0;

        interface key-value {
            resource store {
                open: static async func(label: string) -> result<store, error>;
                get: async func(key: string) -> result<option<list<u8>>, error>;
                set: async func(key: string, value: list<u8>) -> result<_, error>;
                delete: async func(key: string) -> result<_, error>;
                exists: async func(key: string) -> result<bool, error>;
                get-keys: async func() -> tuple<stream<string>, future<result<_, error>>>;
            }

            variant error {
                store-table-full,
                no-such-store,
                access-denied,
                other(string),
            }
        }

        world host {
            import key-value;
        }
    ",
    imports: { default: store | trappable },
    with: { "spin:key-value/key-value.store": OpenStore },
});

use spin::key_value::key_value::{Error, Host, HostStore, HostStoreWithStore};

/// An opened store handed to the guest; there is one store, so it carries nothing.
/// (`pub` because the generated bindings re-export it.)
#[derive(Debug)]
#[allow(unreachable_pub)]
pub struct OpenStore;

/// What the key-value functions see of the per-request state.
pub(crate) struct KvView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) store: &'a Arc<EdgeStore>,
}

/// Marker for the key-value part of the host state.
pub(crate) struct Kv;

impl HasData for Kv {
    type Data<'a> = KvView<'a>;
}

impl<T> HostStoreWithStore<T> for Kv {
    fn drop(mut access: Access<'_, T, Self>, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        access.get().table.delete(store)?;
        Ok(())
    }

    async fn open(accessor: &Accessor<T, Self>, label: String) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        if label != DEFAULT_STORE {
            return Ok(Err(Error::NoSuchStore));
        }
        accessor.with(|mut access| Ok(Ok(access.get().table.push(OpenStore)?)))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        _store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(accessor.with(|mut access| access.get().store.get(&key).map_err(other)))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        _store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(accessor.with(|mut access| access.get().store.set(&key, &value).map_err(other)))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        _store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(accessor.with(|mut access| access.get().store.delete(&key).map_err(other)))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        _store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        Ok(accessor.with(|mut access| access.get().store.get(&key).map(|value| value.is_some()).map_err(other)))
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        _store: Resource<OpenStore>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), Error>>)> {
        accessor.with(|mut access| {
            let (keys, result) = match access.get().store.keys() {
                Ok(keys) => (keys, Ok(())),
                Err(err) => (Vec::new(), Err(other(err))),
            };
            Ok((
                StreamReader::new(&mut access, keys)?,
                FutureReader::new(&mut access, async move { wasmtime::error::Ok(result) })?,
            ))
        })
    }
}

impl HostStore for KvView<'_> {}

impl Host for KvView<'_> {}

pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    spin::key_value::key_value::add_to_linker::<T, Kv>(linker, view)
}

fn other(err: StoreError) -> Error {
    Error::Other(err.0)
}
