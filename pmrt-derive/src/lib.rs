//! `#[derive(Persistent)]` for structs that live in a pool.
//!
//! The derive refuses what cannot safely live in persistent memory and proves the rest
//! at compile time:
//! * the struct must be `#[repr(C)]` or `#[repr(transparent)]`, so its layout is the
//!   same in every build that opens the pool;
//! * every field must itself be `Persistent` (no references, raw pointers, `Box`,
//!   `String`, or anything with `Drop`: they would dangle after a restart);
//! * the size must equal the sum of the field sizes: no padding, so every byte written
//!   to the pool is initialised;
//! * enums and unions are refused (not every bit pattern is a valid value).
//!
//! The type number is `#[persistent(type_num = N)]`, or by default a 24-bit hash of the
//! type's module path and name (stable as long as the type is not moved or renamed).

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields};

/// Derives `pmrt::Persistent`; see the crate documentation.
#[proc_macro_derive(Persistent, attributes(persistent))]
pub fn derive_persistent(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let name = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "Persistent cannot be derived for generic types; implement it by hand",
        ));
    }
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(f) => f.named.iter().collect::<Vec<_>>(),
            Fields::Unnamed(f) => f.unnamed.iter().collect::<Vec<_>>(),
            Fields::Unit => Vec::new(),
        },
        Data::Enum(_) | Data::Union(_) => {
            return Err(syn::Error::new_spanned(name, "Persistent can only be derived for structs (not every bit pattern is a valid enum or union)"));
        }
    };
    let mut repr_ok = false;
    let mut type_num: Option<syn::LitInt> = None;
    for attr in &input.attrs {
        if attr.path().is_ident("repr") {
            attr.parse_nested_meta(|m| {
                if m.path.is_ident("C") || m.path.is_ident("transparent") {
                    repr_ok = true;
                }
                Ok(())
            })?;
        } else if attr.path().is_ident("persistent") {
            attr.parse_nested_meta(|m| {
                if m.path.is_ident("type_num") {
                    type_num = Some(m.value()?.parse()?);
                    Ok(())
                } else {
                    Err(m.error("expected `type_num = N`"))
                }
            })?;
        }
    }
    if !repr_ok {
        return Err(syn::Error::new_spanned(
            name,
            "Persistent types must be #[repr(C)] or #[repr(transparent)] so their layout is stable",
        ));
    }
    let types: Vec<_> = fields.iter().map(|f| &f.ty).collect();
    let name_str = name.to_string();
    let tn = if let Some(n) = type_num {
        quote!(#n)
    } else {
        quote!(::pmrt::type_num_of(
            ::core::concat!(::core::module_path!(), "::", #name_str)
        ))
    };
    Ok(quote! {
        const _: () = {
            const fn assert_persistent<T: ::pmrt::Persistent>() {}
            #( assert_persistent::<#types>(); )*
            ::core::assert!(
                ::core::mem::size_of::<#name>() == 0 #( + ::core::mem::size_of::<#types>() )*,
                ::core::concat!("Persistent type ", #name_str, " has padding bytes: reorder its fields or add explicit padding fields")
            );
        };
        // SAFETY: checked above at compile time: repr(C)/transparent, every field
        // Persistent (so Copy, any bit pattern valid, no volatile pointers), no padding.
        unsafe impl ::pmrt::Persistent for #name {
            const TYPE_NUM: u32 = #tn;
        }
    })
}
