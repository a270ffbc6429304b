//! The transform plugin.

use gatehouse_tests::*;

async fn with_transform(config: &str) -> (TestGateway, Echo) {
    gateway_to_echo(&format!(
        r#"
[[routes]]
name = "users"
path = "/api/v1/users/*"
upstream = "up"
[[routes.plugins]]
plugin = "transform"
{config}
"#
    ))
    .await
}

const REQUEST_RULES: &str = r#"[routes.plugins.config.request]
set_headers = { "x-internal-request" = "true" }
remove_headers = ["cookie"]
rename_headers = { "x-old" = "x-new" }
rewrite_path = { from = "^/api/v1/(.*)$", to = "/$1" }
add_query = { source = "gate way" }
remove_query = ["debug"]"#;

#[tokio::test]
async fn the_request_is_rewritten_before_the_upstream_sees_it() {
    let (gw, _up) = with_transform(REQUEST_RULES).await;
    let seen = TestClient::default()
        .get_with(
            &gw.url("/api/v1/users/7?debug=1&page=2"),
            &[
                ("cookie", "session=secret"),
                ("x-old", "legacy"),
                ("x-internal-request", "forged"),
            ],
        )
        .await;
    assert_eq!(seen.status, 200);
    let j = seen.json();
    assert_eq!(j["path"], "/users/7");
    assert_eq!(j["query"], "page=2&source=gate%20way");
    let h = &j["headers"];
    assert!(h.get("cookie").is_none());
    assert!(h.get("x-old").is_none());
    assert_eq!(h["x-new"], "legacy");
    assert_eq!(
        h["x-internal-request"], "true",
        "set replaces what the client sent"
    );
}

const RESPONSE_RULES: &str = r#"[routes.plugins.config.response]
set_headers = { "x-served-by" = "gatehouse" }
remove_headers = ["x-powered-by"]
remove_json_fields = ["headers", "body"]
rename_json_fields = { "service" = "served_by" }"#;

#[tokio::test]
async fn json_responses_are_edited_and_content_length_follows() {
    let (gw, _up) = with_transform(RESPONSE_RULES).await;
    let seen = TestClient::default().get(&gw.url("/api/v1/users/7")).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("x-served-by"), Some("gatehouse"));
    assert_eq!(seen.header("x-powered-by"), None);
    let j = seen.json();
    assert!(j.get("headers").is_none() && j.get("body").is_none(), "{j}");
    assert_eq!(j["served_by"], "up");
    assert!(j.get("service").is_none());
    assert_eq!(
        seen.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        seen.body.len()
    );
}

#[tokio::test]
async fn keep_json_fields_is_an_allow_list() {
    let (gw, _up) = with_transform(
        "[routes.plugins.config.response]\nkeep_json_fields = [\"method\", \"path\"]",
    )
    .await;
    let j = TestClient::default()
        .get(&gw.url("/api/v1/users/7"))
        .await
        .json();
    let mut keys: Vec<&String> = j.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, vec!["method", "path"]);
}

#[tokio::test]
async fn non_json_bodies_pass_untouched() {
    let (gw, _up) =
        with_transform("[routes.plugins.config.response]\nremove_json_fields = [\"service\"]")
            .await;
    // The echo upstream answers a HEAD-less GET with JSON; ask it to label
    // the answer as text, which the plugin must then leave alone.
    let seen = TestClient::default()
        .get_with(
            &gw.url("/api/v1/users/7"),
            &[("x-echo-header", "content-type: text/plain")],
        )
        .await;
    assert!(String::from_utf8_lossy(&seen.body).contains("\"service\""));
}

#[tokio::test]
async fn a_bad_rewrite_is_refused_at_load() {
    let err = refusal(
        "users",
        "transform",
        "[routes.plugins.config.request]\nrewrite_path = { from = \"^/(unclosed\", to = \"/x\" }",
    )
    .await;
    assert!(err.contains("route \"users\", plugin \"transform\": init failed: `request.rewrite_path.from`: regex parse error"), "{err}");
}

const HEADER_RULES: &str = r#"[routes.plugins.config.request]
set_headers = { "x-internal-request" = "true" }
remove_headers = ["cookie"]
[routes.plugins.config.response]
set_headers = { "x-served-by" = "gatehouse" }
remove_headers = ["x-powered-by"]"#;

#[tokio::test]
async fn header_rules_are_made_by_the_gateway_without_calling_the_plugin() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let routes = format!(
        "[[routes]]\nname = \"users\"\npath = \"/api/*\"\nupstream = \"up\"\n\
         [[routes.plugins]]\nplugin = \"transform\"\n{HEADER_RULES}\n"
    );
    let config = echo_config(&up, "admin_listen = \"127.0.0.1:0\"", &routes);
    let gw = TestGateway::start(&config).await;
    let c = TestClient::default();
    for _ in 0..3 {
        let seen = c
            .get_with(
                &gw.url("/api/v1/users/7"),
                &[
                    ("cookie", "session=secret"),
                    ("x-internal-request", "forged"),
                ],
            )
            .await;
        assert_eq!(seen.status, 200);
        let h = &seen.json()["headers"];
        assert!(h.get("cookie").is_none(), "{h}");
        assert_eq!(h["x-internal-request"], "true");
        assert_eq!(seen.header("x-served-by"), Some("gatehouse"));
        assert_eq!(seen.header("x-powered-by"), None, "the echo sends one");
    }
    let admin = format!("http://{}/admin/plugins", gw.admin.unwrap());
    let plugins = c.get(&admin).await.json();
    let transform = (plugins["plugins"].as_array().unwrap().iter())
        .find(|p| p["name"] == "transform")
        .unwrap();
    assert_eq!(
        transform["entries"][0]["stats"]["calls"], 0,
        "header rules alone need no call into the plugin: {transform}"
    );
}

#[tokio::test]
async fn a_bad_header_in_the_rules_is_refused_at_load() {
    let err = refusal(
        "users",
        "transform",
        "[routes.plugins.config.response]\nset_headers = { \"x bad\" = \"1\" }",
    )
    .await;
    assert!(
        err.contains("init failed: invalid header name \"x bad\""),
        "{err}"
    );
    let err = refusal(
        "users",
        "transform",
        "[routes.plugins.config.request]\nset_headers = { \"x-ok\" = \"line\\nbreak\" }",
    )
    .await;
    assert!(
        err.contains("init failed: invalid value for header \"x-ok\""),
        "{err}"
    );
}
