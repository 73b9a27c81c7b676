//! [`delegating_object_store!`](crate::delegating_object_store): the one place that writes out
//! `ObjectStore` methods passing straight through to an inner store, for wrappers that change
//! only a few operations (durable writes, injected faults, counted reads).

/// What the macro's expansion names, reachable from crates that do not depend on these
/// themselves.
#[doc(hidden)]
pub mod reexport {
    pub use async_trait::async_trait;
    pub use bytes::Bytes;
    pub use futures::stream::BoxStream;
    pub use object_store::path::Path;
    pub use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    };
}

/// Implements `ObjectStore` for a wrapper: the methods written in the block as given, and each
/// method named in `delegate` as a pass-through to the field named after `self.`.
///
/// ```ignore
/// delegating_object_store! {
///     impl ObjectStore for Faulty => self.inner;
///     delegate { get_opts, get_ranges }
///     async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions)
///         -> object_store::Result<PutResult> { ... }
/// }
/// ```
///
/// A macro rather than a generic wrapper type: `ObjectStore` is an `async_trait` trait, and
/// each wrapper overrides a different subset of its methods with its own state at hand.
#[macro_export]
macro_rules! delegating_object_store {
    (
        impl ObjectStore for $ty:ty => self.$inner:ident;
        delegate { $($m:ident),* $(,)? }
        $($items:tt)*
    ) => {
        $crate::delegating_object_store!(@acc [$ty] [$inner] [$($items)*] $($m)*);
    };

    // Each delegated method is appended to the accumulated items, so that the whole impl is
    // emitted at once below with `async_trait` seeing every `async fn`.
    (@acc [$ty:ty] [$inner:ident] [$($items:tt)*] put_opts $($rest:ident)*) => {
        $crate::delegating_object_store!(@acc [$ty] [$inner] [$($items)*
            async fn put_opts(
                &self,
                location: &$crate::delegate::reexport::Path,
                payload: $crate::delegate::reexport::PutPayload,
                opts: $crate::delegate::reexport::PutOptions,
            ) -> $crate::delegate::reexport::Result<$crate::delegate::reexport::PutResult> {
                self.$inner.put_opts(location, payload, opts).await
            }
        ] $($rest)*);
    };
    (@acc [$ty:ty] [$inner:ident] [$($items:tt)*] put_multipart_opts $($rest:ident)*) => {
        $crate::delegating_object_store!(@acc [$ty] [$inner] [$($items)*
            async fn put_multipart_opts(
                &self,
                location: &$crate::delegate::reexport::Path,
                opts: $crate::delegate::reexport::PutMultipartOptions,
            ) -> $crate::delegate::reexport::Result<
                Box<dyn $crate::delegate::reexport::MultipartUpload>,
            > {
                self.$inner.put_multipart_opts(location, opts).await
            }
        ] $($rest)*);
    };
    (@acc [$ty:ty] [$inner:ident] [$($items:tt)*] get_opts $($rest:ident)*) => {
        $crate::delegating_object_store!(@acc [$ty] [$inner] [$($items)*
            async fn get_opts(
                &self,
                location: &$crate::delegate::reexport::Path,
                options: $crate::delegate::reexport::GetOptions,
            ) -> $crate::delegate::reexport::Result<$crate::delegate::reexport::GetResult> {
                self.$inner.get_opts(location, options).await
            }
        ] $($rest)*);
    };
    (@acc [$ty:ty] [$inner:ident] [$($items:tt)*] get_ranges $($rest:ident)*) => {
        $crate::delegating_object_store!(@acc [$ty] [$inner] [$($items)*
            async fn get_ranges(
                &self,
                location: &$crate::delegate::reexport::Path,
                ranges: &[::std::ops::Range<u64>],
            ) -> $crate::delegate::reexport::Result<Vec<$crate::delegate::reexport::Bytes>> {
                self.$inner.get_ranges(location, ranges).await
            }
        ] $($rest)*);
    };
    (@acc [$ty:ty] [$inner:ident] [$($items:tt)*] delete_stream $($rest:ident)*) => {
        $crate::delegating_object_store!(@acc [$ty] [$inner] [$($items)*
            fn delete_stream(
                &self,
                locations: $crate::delegate::reexport::BoxStream<
                    'static,
                    $crate::delegate::reexport::Result<$crate::delegate::reexport::Path>,
                >,
            ) -> $crate::delegate::reexport::BoxStream<
                'static,
                $crate::delegate::reexport::Result<$crate::delegate::reexport::Path>,
            > {
                self.$inner.delete_stream(locations)
            }
        ] $($rest)*);
    };
    (@acc [$ty:ty] [$inner:ident] [$($items:tt)*] list $($rest:ident)*) => {
        $crate::delegating_object_store!(@acc [$ty] [$inner] [$($items)*
            fn list(
                &self,
                prefix: Option<&$crate::delegate::reexport::Path>,
            ) -> $crate::delegate::reexport::BoxStream<
                'static,
                $crate::delegate::reexport::Result<$crate::delegate::reexport::ObjectMeta>,
            > {
                self.$inner.list(prefix)
            }
        ] $($rest)*);
    };
    (@acc [$ty:ty] [$inner:ident] [$($items:tt)*] list_with_offset $($rest:ident)*) => {
        $crate::delegating_object_store!(@acc [$ty] [$inner] [$($items)*
            fn list_with_offset(
                &self,
                prefix: Option<&$crate::delegate::reexport::Path>,
                offset: &$crate::delegate::reexport::Path,
            ) -> $crate::delegate::reexport::BoxStream<
                'static,
                $crate::delegate::reexport::Result<$crate::delegate::reexport::ObjectMeta>,
            > {
                self.$inner.list_with_offset(prefix, offset)
            }
        ] $($rest)*);
    };
    (@acc [$ty:ty] [$inner:ident] [$($items:tt)*] list_with_delimiter $($rest:ident)*) => {
        $crate::delegating_object_store!(@acc [$ty] [$inner] [$($items)*
            async fn list_with_delimiter(
                &self,
                prefix: Option<&$crate::delegate::reexport::Path>,
            ) -> $crate::delegate::reexport::Result<$crate::delegate::reexport::ListResult> {
                self.$inner.list_with_delimiter(prefix).await
            }
        ] $($rest)*);
    };
    (@acc [$ty:ty] [$inner:ident] [$($items:tt)*] copy_opts $($rest:ident)*) => {
        $crate::delegating_object_store!(@acc [$ty] [$inner] [$($items)*
            async fn copy_opts(
                &self,
                from: &$crate::delegate::reexport::Path,
                to: &$crate::delegate::reexport::Path,
                options: $crate::delegate::reexport::CopyOptions,
            ) -> $crate::delegate::reexport::Result<()> {
                self.$inner.copy_opts(from, to, options).await
            }
        ] $($rest)*);
    };
    (@acc [$ty:ty] [$inner:ident] [$($items:tt)*] rename_opts $($rest:ident)*) => {
        $crate::delegating_object_store!(@acc [$ty] [$inner] [$($items)*
            async fn rename_opts(
                &self,
                from: &$crate::delegate::reexport::Path,
                to: &$crate::delegate::reexport::Path,
                options: $crate::delegate::reexport::RenameOptions,
            ) -> $crate::delegate::reexport::Result<()> {
                self.$inner.rename_opts(from, to, options).await
            }
        ] $($rest)*);
    };
    (@acc [$ty:ty] [$inner:ident] [$($items:tt)*]) => {
        #[$crate::delegate::reexport::async_trait]
        impl $crate::delegate::reexport::ObjectStore for $ty {
            $($items)*
        }
    };
}
