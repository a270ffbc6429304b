//! `gatehouse plugin new`: a plugin project that builds as it is, with the
//! SDK for its language inside it (the one this binary was built with, so
//! the project matches the contract this gateway serves).
//!
//! The template plugin requires a request header (400 without it) and
//! marks responses, so both phases and the config are there to edit.

use super::build::{C_SDK, GO_SDK, JS_SDK, Lang, PYTHON_SDK, WIT, write_files};
use anyhow::bail;
use std::path::{Path, PathBuf};

/// The Rust SDK's sources and the contract it is generated from.
const RUST_SDK: &[(&str, &str)] = &[
    ("src/__rt.rs", include_str!("../../../sdk/src/__rt.rs")),
    ("src/config.rs", include_str!("../../../sdk/src/config.rs")),
    ("src/edits.rs", include_str!("../../../sdk/src/edits.rs")),
    ("src/error.rs", include_str!("../../../sdk/src/error.rs")),
    ("src/http.rs", include_str!("../../../sdk/src/http.rs")),
    ("src/lib.rs", include_str!("../../../sdk/src/lib.rs")),
    ("src/log.rs", include_str!("../../../sdk/src/log.rs")),
    (
        "src/metrics.rs",
        include_str!("../../../sdk/src/metrics.rs"),
    ),
    (
        "src/outbound.rs",
        include_str!("../../../sdk/src/outbound.rs"),
    ),
    ("src/reply.rs", include_str!("../../../sdk/src/reply.rs")),
    ("src/state.rs", include_str!("../../../sdk/src/state.rs")),
    ("wit/plugin.wit", WIT),
];

/// The SDK's manifest outside this repository's workspace.
const RUST_SDK_MANIFEST: &str = r#"[package]
name = "gatehouse-sdk"
description = "Write Gatehouse API gateway plugins in Rust"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
serde_path_to_error = "0.1"
wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc", "bitflags", "std"] }
"#;

const RUST_MANIFEST: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
gatehouse-sdk = { path = "gatehouse-sdk" }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

# Speed over size: a plugin runs on every request of its routes. One
# codegen unit with LTO inlines the SDK and serde into the plugin.
[profile.release]
lto = true
codegen-units = 1
strip = true

# A project of its own, even when created inside another workspace.
[workspace]
"#;

const RUST_PLUGIN: &str = r#"//! {name}: refuses requests without a header, marks the responses.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "{name}"
//! config = { header = "x-api-version" }
//! ```

use gatehouse_sdk::{Action, Context, Outcome, Plugin, Reply, Request, Response, Result, export};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The header every request must carry.
    header: String,
}

struct {type}(Config);

impl Plugin for {type} {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok({type}(config))
    }

    fn on_request(&mut self, ctx: &Context, req: &mut Request) -> Result<Action> {
        if req.header(&self.0.header).is_none() {
            let message = format!("missing {} header", self.0.header);
            let body = serde_json::json!({ "error": message, "status": 400 });
            return Ok(Action::Respond(Reply::json(400, &body)));
        }
        // A response header decided here needs no on_response.
        ctx.set_response_header("x-checked-header", &self.0.header)?;
        Ok(Action::Continue)
    }

    fn on_response(
        &mut self,
        _ctx: &Context,
        _req: &Request,
        resp: &mut Response,
        _outcome: Outcome,
    ) -> Result<()> {
        resp.set_header("x-checked-by", "{name}")
    }
}

export!({type});
"#;

const C_PLUGIN: &str = r#"/*
 * {name}: refuses requests without a header, marks the responses.
 *
 *   [[routes.plugins]]
 *   plugin = "{name}"
 *   config = { header = "x-api-version" }
 */
#include "gatehouse.h"

#include <stdlib.h>
#include <string.h>

static char *required; /* the header every request must carry */

const char *gh_init(const char *config, size_t len, unsigned *hooks) {
    gh_json doc, field;
    if (!gh_json_parse(config, len, &doc) || !gh_json_field(doc, "header", &field))
        return "`header` is required";
    free(required);
    required = gh_json_string(field);
    if (!required || !*required) return "`header` must be a header name";
    *hooks = GH_ON_REQUEST | GH_ON_RESPONSE;
    return NULL;
}

gh_decision gh_on_request(gh_context ctx, gh_request req, gh_reply *reply) {
    char *value = gh_request_header(req, required);
    if (!value) return gh_reply_error(reply, ctx, 400, "missing required header");
    free(value);
    /* A response header decided here needs no on_response. */
    free(gh_context_set_response_header(ctx, "x-checked-header", required));
    return GH_CONTINUE;
}

const char *gh_on_response(gh_context ctx, gh_request req, gh_response resp, gh_outcome outcome) {
    (void)ctx, (void)req, (void)outcome;
    free(gh_response_set_header(resp, "x-checked-by", "{name}"));
    return NULL;
}
"#;

const PYTHON_PLUGIN: &str = r#""""{name}: refuses requests without a header, marks the responses.

    [[routes.plugins]]
    plugin = "{name}"
    config = { header = "x-api-version" }
"""

import gatehouse


class {type}(gatehouse.Plugin):
    def __init__(self, config):
        header = config.get("header")
        if not isinstance(header, str) or not header:
            raise gatehouse.PluginError("`header` is required")
        self.header = header

    def on_request(self, ctx, req):
        if req.header(self.header) is None:
            return gatehouse.Reply.error(ctx, 400, "missing required header")
        # A response header decided here needs no on_response.
        ctx.set_response_header("x-checked-header", self.header)
        return None

    def on_response(self, ctx, req, resp, outcome):
        resp.set_header("x-checked-by", "{name}")


WitWorld = gatehouse.export({type})
"#;

const JS_PLUGIN: &str = r#"// {name}: refuses requests without a header, marks the responses.
//
//   [[routes.plugins]]
//   plugin = "{name}"
//   config = { header = "x-api-version" }

import { Plugin, PluginError, Reply, exportPlugin } from "./gatehouse.js";

class {type} extends Plugin {
  constructor(config) {
    super(config);
    if (typeof config.header !== "string" || config.header === "")
      throw new PluginError("`header` is required");
    this.header = config.header;
  }

  onRequest(ctx, req) {
    if (req.header(this.header) === undefined)
      return Reply.error(ctx, 400, "missing required header");
    // A response header decided here needs no onResponse.
    ctx.setResponseHeader("x-checked-header", this.header);
    return null;
  }

  onResponse(_ctx, _req, resp) {
    resp.setHeader("x-checked-by", "{name}");
  }
}

export const { init, onRequest, onResponse } = exportPlugin({type});
"#;

const GO_PLUGIN: &str = r#"// {name}: refuses requests without a header, marks the responses.
//
//	[[routes.plugins]]
//	plugin = "{name}"
//	config = { header = "x-api-version" }
package main

import (
	"gatehouse"
	_ "gatehouse/bindings/wit_exports"
)

type plugin struct{ header string }

func (p *plugin) OnRequest(ctx *gatehouse.Context, req *gatehouse.Request) (*gatehouse.Reply, error) {
	if _, ok := req.Header(p.header); !ok {
		return gatehouse.ErrorReply(ctx, 400, "missing required header"), nil
	}
	// A response header decided here needs no OnResponse.
	return nil, ctx.SetResponseHeader("x-checked-header", p.header)
}

func (p *plugin) OnResponse(ctx *gatehouse.Context, req *gatehouse.Request, resp *gatehouse.Response, outcome gatehouse.Outcome) error {
	return resp.SetHeader("x-checked-by", "{name}")
}

func init() {
	gatehouse.Register(func(config gatehouse.Config) (gatehouse.Plugin, error) {
		header, err := config.String("header")
		return &plugin{header}, err
	})
}

func main() {}
"#;

/// For editors: the project as a module using the SDK copy beside it (the
/// build uses the SDK this binary carries).
const GO_MOD: &str = "module {name}\n\ngo 1.25\n\nrequire gatehouse v0.0.0\n\nreplace gatehouse => ./gatehouse-sdk\n";

const GITIGNORE: &str = "/build/\n/target/\n/node_modules/\n__pycache__/\n*.wasm\n";

/// Creates `parent/NAME`; returns the folder.
pub fn scaffold(lang: Lang, name: &str, parent: &Path) -> anyhow::Result<PathBuf> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "\"{name}\" is not a plugin name: lower-case letters, digits and '-', starting with a letter (it becomes NAME.wasm and the config's `plugin = \"NAME\"`)"
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists: nothing was written", dir.display());
    }
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{type}", &type_name(name))
    };
    let mut files: Vec<(String, Vec<u8>)> = vec![(".gitignore".into(), GITIGNORE.into())];
    match lang {
        Lang::C => {
            files.push(("plugin.c".into(), fill(C_PLUGIN).into_bytes()));
            for (path, bytes) in C_SDK {
                files.push((format!("gatehouse-sdk/{path}"), bytes.to_vec()));
            }
        }
        Lang::Go => {
            files.push(("main.go".into(), fill(GO_PLUGIN).into_bytes()));
            files.push(("go.mod".into(), fill(GO_MOD).into_bytes()));
            for (path, bytes) in GO_SDK {
                files.push((format!("gatehouse-sdk/{path}"), bytes.to_vec()));
            }
        }
        Lang::Js => {
            files.push(("app.js".into(), fill(JS_PLUGIN).into_bytes()));
            // The build puts the SDK this binary carries in its place.
            files.push(("gatehouse.js".into(), JS_SDK.into()));
        }
        Lang::Python => {
            files.push(("app.py".into(), fill(PYTHON_PLUGIN).into_bytes()));
            // For editors and type checkers; the build writes its own copy.
            files.push((
                "gatehouse-sdk/python/gatehouse.py".into(),
                PYTHON_SDK.into(),
            ));
            files.push(("gatehouse-sdk/wit/plugin.wit".into(), WIT.into()));
        }
        Lang::Rust => {
            files.push(("Cargo.toml".into(), fill(RUST_MANIFEST).into_bytes()));
            files.push(("src/lib.rs".into(), fill(RUST_PLUGIN).into_bytes()));
            files.push(("gatehouse-sdk/Cargo.toml".into(), RUST_SDK_MANIFEST.into()));
            for (path, text) in RUST_SDK {
                // In the repository the SDK reads the contract from ../wit.
                let text = text.replace("path: \"../wit\"", "path: \"wit\"");
                files.push((format!("gatehouse-sdk/{path}"), text.into_bytes()));
            }
        }
    }
    write_files(
        &dir,
        files
            .iter()
            .map(|(path, bytes)| (path.as_str(), bytes.as_slice())),
    )?;
    Ok(dir)
}

/// `my-plugin` → `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}
