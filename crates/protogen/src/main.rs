//! Writes the table of Kubernetes protobuf messages that skiff-api decodes
//! request bodies with (`crates/api/src/protobuf/messages.txt`).
//!
//! Upstream's `.proto` files are not on crates.io, but k8s-pb's prost code
//! is generated from them and keeps every field's tag, wire type and
//! message type; this reads that code and writes what the decoder needs.
//!
//! `cargo run -p skiff-protogen -- ~/.cargo/registry/src/*/k8s-pb-0.9.0/src > crates/api/src/protobuf/messages.txt`
//!
//! Format, one message then its fields, one per line:
//! `message io.k8s.api.core.v1.Volume`, then
//! `TAG LABEL rust_name TYPE [MESSAGE]` with LABEL one of optional,
//! repeated, map (string keys; TYPE is then the value type).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use syn::{Fields, GenericArgument, Item, PathArguments, Type};

fn main() -> Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).context("usage: skiff-protogen K8S_PB_SRC_DIR")?);
    let mut files = Vec::new();
    collect(&root, &mut files)?;
    files.sort();
    let mut out = String::new();
    for file in files {
        let module: Vec<String> = file
            .parent()
            .unwrap()
            .strip_prefix(&root)?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let source = std::fs::read_to_string(&file)?;
        let parsed = syn::parse_file(&source).with_context(|| file.display().to_string())?;
        for item in parsed.items {
            if let Item::Struct(s) = item {
                message(&module, &s, &mut out).with_context(|| format!("{}: {}", file.display(), s.ident))?;
            }
        }
    }
    print!("{out}");
    Ok(())
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.file_name().is_some_and(|n| n == "mod.rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// `io.k8s.` + the module path as upstream names its packages.
fn package(module: &[String]) -> String {
    let parts: Vec<String> = module.iter().map(|m| m.replace('_', "-")).collect();
    format!("io.k8s.{}", parts.join("."))
}

fn message(module: &[String], s: &syn::ItemStruct, out: &mut String) -> Result<()> {
    if !s.attrs.iter().any(|a| quote::quote!(#a).to_string().contains("Message")) {
        return Ok(());
    }
    writeln!(out, "message {}.{}", package(module), s.ident)?;
    let Fields::Named(fields) = &s.fields else { return Ok(()) };
    for field in &fields.named {
        let Some(attr) = field.attrs.iter().find(|a| a.path().is_ident("prost")) else { continue };
        let spec = attr.meta.require_list()?.tokens.to_string();
        let name = field.ident.as_ref().unwrap().to_string();
        let name = name.trim_start_matches("r#");
        let tag = between(&spec, "tag = \"", "\"").context("no tag")?;
        let type_name = message_type(module, &field.ty);
        let (label, kind) = if let Some(map) = between(&spec, "btree_map = \"", "\"") {
            let (key, value) = map.split_once(", ").context("map types")?;
            if key != "string" {
                bail!("map key {key}");
            }
            ("map", value.to_string())
        } else {
            let kind = spec.split([',', ' ', '(']).next().unwrap().to_string();
            let label = if spec.contains("repeated") { "repeated" } else { "optional" };
            (label, kind)
        };
        let mut line = format!("{tag} {label} {name} {kind}");
        if kind == "message" {
            line.push(' ');
            line.push_str(&type_name.context("no message type")?);
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

/// The message a field holds: the innermost type argument that is not a
/// std or prost type, resolved against the module it is written in.
fn message_type(module: &[String], ty: &Type) -> Option<String> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if let PathArguments::AngleBracketed(args) = &last.arguments {
        if let Some(inner) = args.args.iter().rev().find_map(|a| match a {
            GenericArgument::Type(t) => message_type(module, t),
            _ => None,
        }) {
            return Some(inner);
        }
    }
    if p.path.leading_colon.is_some() {
        return None;
    }
    let mut path = module.to_vec();
    let segments: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
    let (name, dirs) = segments.split_last()?;
    for dir in dirs {
        if dir == "super" {
            path.pop();
        } else {
            path.push(dir.clone());
        }
    }
    Some(format!("{}.{name}", package(&path)))
}
