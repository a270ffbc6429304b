/*
 * The Gatehouse plugin SDK for C (contract gatehouse:plugin@0.1.5).
 *
 * A plugin implements gh_init and gh_on_request (gh_on_response is
 * optional) and uses the helpers below; the SDK exports the contract's
 * functions and handles the canonical ABI's ownership rules, so a plugin
 * never touches the generated bindings unless it wants to.
 *
 * Ownership: every `char *` a helper returns is the plugin's, NUL-terminated,
 * and freed with free(). NULL means "absent". Strings passed in are only
 * borrowed for the call.
 *
 * Instances are reused for many requests: memory not freed accumulates
 * until the instance reaches its memory cap (then it is replaced).
 */
#ifndef GATEHOUSE_H
#define GATEHOUSE_H

#include "bindings/plugin.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef gatehouse_plugin_types_borrow_context_t gh_context;
typedef gatehouse_plugin_types_borrow_request_t gh_request;
typedef gatehouse_plugin_types_borrow_response_t gh_response;

/* Hooks a plugin asks for in gh_init. */
enum {
    GH_ON_REQUEST = GATEHOUSE_PLUGIN_TYPES_HOOKS_ON_REQUEST,
    GH_ON_RESPONSE = GATEHOUSE_PLUGIN_TYPES_HOOKS_ON_RESPONSE,
    GH_REQUEST_BODY = GATEHOUSE_PLUGIN_TYPES_HOOKS_REQUEST_BODY,
    GH_RESPONSE_BODY = GATEHOUSE_PLUGIN_TYPES_HOOKS_RESPONSE_BODY,
};

/* Where the response seen by gh_on_response came from. */
typedef enum {
    GH_FROM_UPSTREAM = GATEHOUSE_PLUGIN_TYPES_OUTCOME_UPSTREAM,
    GH_FROM_PLUGIN = GATEHOUSE_PLUGIN_TYPES_OUTCOME_PLUGIN,
    GH_FROM_CONNECT_ERROR = GATEHOUSE_PLUGIN_TYPES_OUTCOME_CONNECT_ERROR,
    GH_FROM_TIMEOUT = GATEHOUSE_PLUGIN_TYPES_OUTCOME_TIMEOUT,
    GH_FROM_GATEWAY = GATEHOUSE_PLUGIN_TYPES_OUTCOME_GATEWAY,
} gh_outcome;

/* What gh_on_request decided. */
typedef enum {
    GH_CONTINUE = 0, /* on to the next plugin, then the upstream */
    GH_RESPOND = 1,  /* answer with the reply built with gh_reply_* */
    GH_FAIL = 2,     /* an error, set with gh_fail (the entry's on_error decides) */
} gh_decision;

/* A reply being built, or an error being reported. */
typedef struct gh_reply gh_reply;

/* ---- implemented by the plugin ----------------------------------------- */

/* Reads the entry's config (JSON) and sets *hooks (GH_ON_REQUEST | ...).
 * Return NULL on success, or a message saying what is wrong with the
 * config (the configuration is then refused); the SDK copies it. */
const char *gh_init(const char *config, size_t len, unsigned *hooks);

gh_decision gh_on_request(gh_context ctx, gh_request req, gh_reply *reply);

/* Optional (the SDK's default does nothing). Return NULL, or an error. */
const char *gh_on_response(gh_context ctx, gh_request req, gh_response resp,
                           gh_outcome outcome);

/* ---- replies and errors ----------------------------------------------- */

/* Sets the reply's status, adds a header, sets the body; return GH_RESPOND. */
void gh_reply_status(gh_reply *reply, uint16_t status);
void gh_reply_header(gh_reply *reply, const char *name, const char *value);
void gh_reply_body(gh_reply *reply, const void *body, size_t len);
/* A JSON error reply in the gateway's own shape:
 * {"error": message, "status": status, "request_id": ...}. */
gh_decision gh_reply_error(gh_reply *reply, gh_context ctx, uint16_t status,
                           const char *message);
/* Reports an error (printf-style); return GH_FAIL. */
gh_decision gh_fail(gh_reply *reply, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- the request, the response, the context --------------------------- */

char *gh_request_method(gh_request req);
char *gh_request_path(gh_request req);
char *gh_request_query(gh_request req); /* NULL when there is none */
char *gh_request_header(gh_request req, const char *name);
/* Header changes return NULL, or why the host refused (free it). */
char *gh_request_set_header(gh_request req, const char *name, const char *value);
char *gh_request_remove_header(gh_request req, const char *name);
/* The buffered body (needs GH_REQUEST_BODY); *len set; NULL when none. */
uint8_t *gh_request_body(gh_request req, size_t *len);

uint16_t gh_response_status(gh_response resp);
char *gh_response_header(gh_response resp, const char *name);
char *gh_response_set_header(gh_response resp, const char *name, const char *value);
char *gh_response_remove_header(gh_response resp, const char *name);

char *gh_context_route(gh_context ctx);
char *gh_context_request_id(gh_context ctx);
/* The client's IP address (the port, if any, removed). */
char *gh_context_client_ip(gh_context ctx);
char *gh_context_get(gh_context ctx, const char *key);
void gh_context_set(gh_context ctx, const char *key, const char *value);
/* Sets a header on the response the client gets, whoever answers; from
 * on_request it spares a plugin its own on_response. NULL, or why the host
 * refused (free it). Contract 0.1.3. */
char *gh_context_set_response_header(gh_context ctx, const char *name, const char *value);

/* Several headers in one call (contract 0.1.4), from `n` [name, value]
 * pairs, each replacing the values it had, in order: all or nothing, a bad
 * pair refuses the whole list. For three or more headers it costs less
 * than a call each. NULL, or why the host refused (free it).
 *
 *     const char *h[][2] = {{"x-user-id", id}, {"x-user-role", role}};
 *     char *why = gh_request_set_headers(req, h, 2);
 */
char *gh_request_set_headers(gh_request req, const char *(*pairs)[2], size_t n);
char *gh_response_set_headers(gh_response resp, const char *(*pairs)[2], size_t n);
char *gh_context_set_response_headers(gh_context ctx, const char *(*pairs)[2], size_t n);

/* ---- header edits the gateway makes itself (contract 0.1.5) ------------ */

typedef enum {
    GH_REQUEST_PHASE = GATEHOUSE_PLUGIN_EDITS_PHASE_REQUEST,
    GH_RESPONSE_PHASE = GATEHOUSE_PLUGIN_EDITS_PHASE_RESPONSE,
} gh_phase;

/* Called from gh_init only: a header set (replacing any values it had) or
 * removed on every request on its way upstream (GH_REQUEST_PHASE) or
 * response on its way to the client (GH_RESPONSE_PHASE), by the gateway
 * itself, at the plugin's place in the chain, without calling the plugin:
 * for edits the config fixes. In each phase they are made in the order
 * declared, just before the plugin's own hook for that phase, or in its
 * place: a plugin whose phase is only such edits leaves that hook out of
 * *hooks and is not called in it. NULL, or why the host refused (a bad
 * name or value; free it), which gh_init should report to refuse the
 * config. */
char *gh_edit_set_header(gh_phase phase, const char *name, const char *value);
char *gh_edit_remove_header(gh_phase phase, const char *name);

/* ---- logging ----------------------------------------------------------- */

typedef enum {
    GH_TRACE = GATEHOUSE_PLUGIN_HOST_LEVEL_TRACE,
    GH_DEBUG = GATEHOUSE_PLUGIN_HOST_LEVEL_DEBUG,
    GH_INFO = GATEHOUSE_PLUGIN_HOST_LEVEL_INFO,
    GH_WARN = GATEHOUSE_PLUGIN_HOST_LEVEL_WARN,
    GH_ERROR = GATEHOUSE_PLUGIN_HOST_LEVEL_ERROR,
} gh_level;

void gh_log(gh_level level, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- reading the config (JSON) ---------------------------------------- */

/* A JSON value: a slice of the document. */
typedef struct {
    const char *start;
    const char *end;
} gh_json;

/* The whole document, if it is one valid JSON value. */
bool gh_json_parse(const char *text, size_t len, gh_json *out);
bool gh_json_is_object(gh_json v);
/* The member `key` of an object. */
bool gh_json_field(gh_json object, const char *key, gh_json *out);
/* Iterates an array: `gh_json it = array; while (gh_json_next(&it, &item))`. */
bool gh_json_next(gh_json *iterator, gh_json *item);
/* Iterates an object's members in order: `gh_json it = object, key, value;
 * while (gh_json_next_member(&it, &key, &value))`; `key` is the member's
 * name as a JSON string (gh_json_string unescapes it). */
bool gh_json_next_member(gh_json *iterator, gh_json *key, gh_json *value);
/* A string's value, unescaped (free it); NULL if `v` is not a string. */
char *gh_json_string(gh_json v);
bool gh_json_number(gh_json v, double *out);
bool gh_json_bool(gh_json v, bool *out);

#ifdef __cplusplus
}
#endif
#endif
