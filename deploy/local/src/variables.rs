//! `spin:variables@3.0.0` for the local host: the few settings the edge reads at run time.
//!
//! The edge asks for `core_url` and `ingest_key` to report events. The host answers from
//! its own configuration; an unknown name is `undefined`, as in Spin.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{Accessor, HasData};

wasmtime::component::bindgen!({
    inline: "
        package spin:variables@3.0.0;

        interface variables {
            get: async func(name: string) -> result<string, error>;

            variant error {
                invalid-name(string),
                undefined(string),
                provider(string),
                other(string),
            }
        }

        world host {
            import variables;
        }
    ",
    imports: { default: store | trappable },
});

use spin::variables::variables::{Error, Host, HostWithStore};

/// Variable values; `Debug` names them but never prints a value (one is the ingest key).
#[derive(Default)]
pub(crate) struct Variables(pub(crate) HashMap<String, String>);

impl std::fmt::Debug for Variables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

pub(crate) struct VariablesView<'a>(pub(crate) &'a Arc<Variables>);

impl Host for VariablesView<'_> {}

pub(crate) struct Vars;

impl<T> HostWithStore<T> for Vars {
    async fn get(accessor: &Accessor<T, Self>, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(accessor.with(|mut access| access.get().0.0.get(&name).cloned().ok_or(Error::Undefined(name))))
    }
}

impl HasData for Vars {
    type Data<'a> = VariablesView<'a>;
}

pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> VariablesView<'_>,
) -> wasmtime::Result<()> {
    spin::variables::variables::add_to_linker::<T, Vars>(linker, view)
}
