/*
 * The Gatehouse plugin SDK for C: the contract's exports, calling the
 * plugin's gh_* functions, and the helpers declared in gatehouse.h.
 */
#include "gatehouse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gh_reply {
    gatehouse_plugin_types_action_t *action;
    plugin_string_t *error;
    size_t header_capacity;
};

/* ---- strings across the boundary ---------------------------------------- */

/* A borrowed view of a C string, for arguments. */
static plugin_string_t view(const char *s) {
    plugin_string_t v = {(uint8_t *)s, s ? strlen(s) : 0};
    return v;
}

/* Copies `len` bytes into a new NUL-terminated string. */
static char *copy_n(const void *bytes, size_t len) {
    char *s = malloc(len + 1);
    if (!s) return NULL;
    memcpy(s, bytes, len);
    s[len] = '\0';
    return s;
}

/* Takes a string the host returned (allocated in this instance) as a C string. */
static char *take(plugin_string_t *s) {
    char *out = copy_n(s->ptr, s->len);
    plugin_string_free(s);
    return out;
}

/* NULL when the host accepted a change, else its reason. */
static char *outcome(bool ok, plugin_string_t *err) {
    return ok ? NULL : take(err);
}

/* ---- exports ------------------------------------------------------------- */

__attribute__((weak)) const char *gh_on_response(gh_context ctx, gh_request req,
                                                 gh_response resp, gh_outcome outcome) {
    (void)ctx, (void)req, (void)resp, (void)outcome;
    return NULL;
}

bool exports_plugin_init(plugin_string_t *config, plugin_hooks_t *ret, plugin_string_t *err) {
    unsigned hooks = 0;
    const char *problem = gh_init((const char *)config->ptr, config->len, &hooks);
    plugin_string_free(config);
    if (problem) {
        plugin_string_dup(err, problem);
        return false;
    }
    *ret = (plugin_hooks_t)hooks;
    return true;
}

bool exports_plugin_on_request(plugin_borrow_context_t ctx, plugin_borrow_request_t req,
                               plugin_action_t *ret, plugin_string_t *err) {
    memset(ret, 0, sizeof *ret);
    memset(err, 0, sizeof *err);
    gh_reply reply = {ret, err, 0};
    gh_decision decision = gh_on_request(ctx, req, &reply);
    /* The handles were lent for this call: the canonical ABI wants them back. */
    gatehouse_plugin_types_context_drop_borrow(ctx);
    gatehouse_plugin_types_request_drop_borrow(req);
    if (decision == GH_RESPOND) {
        ret->tag = GATEHOUSE_PLUGIN_TYPES_ACTION_RESPOND;
        if (ret->val.respond.status == 0) ret->val.respond.status = 200;
        return true;
    }
    /* A reply started but not sent is let go. */
    gatehouse_plugin_types_reply_free(&ret->val.respond);
    memset(ret, 0, sizeof *ret);
    ret->tag = GATEHOUSE_PLUGIN_TYPES_ACTION_CONTINUE;
    if (decision == GH_CONTINUE) {
        plugin_string_free(err);
        return true;
    }
    if (err->ptr == NULL) plugin_string_dup(err, "on-request failed");
    return false;
}

bool exports_plugin_on_response(plugin_borrow_context_t ctx, plugin_borrow_request_t req,
                                plugin_borrow_response_t resp, plugin_outcome_t outcome,
                                plugin_string_t *err) {
    const char *problem = gh_on_response(ctx, req, resp, (gh_outcome)outcome);
    gatehouse_plugin_types_context_drop_borrow(ctx);
    gatehouse_plugin_types_request_drop_borrow(req);
    gatehouse_plugin_types_response_drop_borrow(resp);
    if (problem) {
        plugin_string_dup(err, problem);
        return false;
    }
    return true;
}

/* ---- replies ------------------------------------------------------------- */

void gh_reply_status(gh_reply *reply, uint16_t status) {
    reply->action->val.respond.status = status;
}

void gh_reply_header(gh_reply *reply, const char *name, const char *value) {
    gatehouse_plugin_types_fields_t *h = &reply->action->val.respond.headers;
    if (h->len == reply->header_capacity) {
        size_t cap = reply->header_capacity ? reply->header_capacity * 2 : 4;
        void *grown = realloc(h->ptr, cap * sizeof *h->ptr);
        if (!grown) return;
        h->ptr = grown;
        reply->header_capacity = cap;
    }
    plugin_string_dup(&h->ptr[h->len].f0, name);
    plugin_string_dup(&h->ptr[h->len].f1, value);
    h->len++;
}

void gh_reply_body(gh_reply *reply, const void *body, size_t len) {
    plugin_list_u8_t *b = &reply->action->val.respond.body;
    free(b->ptr);
    b->ptr = len ? malloc(len) : NULL;
    b->len = b->ptr ? len : 0;
    if (b->ptr) memcpy(b->ptr, body, len);
}

/* Appends `s` to `out` as a JSON string literal; returns the length written
 * (at most `cap`, which must be large enough: 6 bytes per input byte + 2). */
static size_t json_quote(char *out, const char *s) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    out[n++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[c >> 4];
            out[n + 5] = hex[c & 15];
            n += 6;
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    return n;
}

gh_decision gh_reply_error(gh_reply *reply, gh_context ctx, uint16_t status,
                           const char *message) {
    char *id = gh_context_request_id(ctx);
    const char *rid = id ? id : "";
    size_t cap = 64 + 6 * (strlen(message) + strlen(rid));
    char *body = malloc(cap);
    if (body) {
        size_t n = 0;
        n += (size_t)snprintf(body + n, cap - n, "{\"error\":");
        n += json_quote(body + n, message);
        n += (size_t)snprintf(body + n, cap - n, ",\"request_id\":");
        n += json_quote(body + n, rid);
        n += (size_t)snprintf(body + n, cap - n, ",\"status\":%u}", (unsigned)status);
        gh_reply_body(reply, body, n);
        free(body);
    }
    free(id);
    gh_reply_status(reply, status);
    gh_reply_header(reply, "content-type", "application/json");
    return GH_RESPOND;
}

static char *vformat(const char *format, va_list args) {
    va_list again;
    va_copy(again, args);
    int n = vsnprintf(NULL, 0, format, args);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, format, again);
    va_end(again);
    return s;
}

gh_decision gh_fail(gh_reply *reply, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *message = vformat(format, args);
    va_end(args);
    plugin_string_free(reply->error);
    plugin_string_dup(reply->error, message ? message : "on-request failed");
    free(message);
    return GH_FAIL;
}

/* ---- the request, the response, the context ------------------------------ */

char *gh_request_method(gh_request req) {
    plugin_string_t s;
    gatehouse_plugin_types_method_request_method(req, &s);
    return take(&s);
}

char *gh_request_path(gh_request req) {
    plugin_string_t s;
    gatehouse_plugin_types_method_request_path(req, &s);
    return take(&s);
}

char *gh_request_query(gh_request req) {
    plugin_string_t s;
    return gatehouse_plugin_types_method_request_query(req, &s) ? take(&s) : NULL;
}

char *gh_request_header(gh_request req, const char *name) {
    plugin_string_t n = view(name), s;
    return gatehouse_plugin_types_method_request_header(req, &n, &s) ? take(&s) : NULL;
}

char *gh_request_set_header(gh_request req, const char *name, const char *value) {
    plugin_string_t n = view(name), v = view(value), err;
    return outcome(gatehouse_plugin_types_method_request_set_header(req, &n, &v, &err), &err);
}

char *gh_request_remove_header(gh_request req, const char *name) {
    plugin_string_t n = view(name), err;
    return outcome(gatehouse_plugin_types_method_request_remove_header(req, &n, &err), &err);
}

uint8_t *gh_request_body(gh_request req, size_t *len) {
    plugin_list_u8_t body;
    if (!gatehouse_plugin_types_method_request_body(req, &body)) {
        *len = 0;
        return NULL;
    }
    *len = body.len;
    return body.ptr;
}

uint16_t gh_response_status(gh_response resp) {
    return gatehouse_plugin_types_method_response_status(resp);
}

char *gh_response_header(gh_response resp, const char *name) {
    plugin_string_t n = view(name), s;
    return gatehouse_plugin_types_method_response_header(resp, &n, &s) ? take(&s) : NULL;
}

char *gh_response_set_header(gh_response resp, const char *name, const char *value) {
    plugin_string_t n = view(name), v = view(value), err;
    return outcome(gatehouse_plugin_types_method_response_set_header(resp, &n, &v, &err), &err);
}

char *gh_response_remove_header(gh_response resp, const char *name) {
    plugin_string_t n = view(name), err;
    return outcome(gatehouse_plugin_types_method_response_remove_header(resp, &n, &err), &err);
}

char *gh_context_route(gh_context ctx) {
    plugin_string_t s;
    gatehouse_plugin_types_method_context_route(ctx, &s);
    return take(&s);
}

char *gh_context_request_id(gh_context ctx) {
    plugin_string_t s;
    gatehouse_plugin_types_method_context_request_id(ctx, &s);
    return take(&s);
}

char *gh_context_client_ip(gh_context ctx) {
    plugin_string_t s;
    gatehouse_plugin_types_method_context_client_addr(ctx, &s);
    char *addr = take(&s);
    if (!addr) return NULL;
    /* "[v6]:port" → "v6"; "v4:port" → "v4"; a bare address stays as it is. */
    if (addr[0] == '[') {
        char *close = strchr(addr, ']');
        if (close) {
            *close = '\0';
            memmove(addr, addr + 1, (size_t)(close - addr));
        }
    } else {
        char *colon = strchr(addr, ':');
        if (colon && !strchr(colon + 1, ':')) *colon = '\0';
    }
    return addr;
}

char *gh_context_get(gh_context ctx, const char *key) {
    plugin_string_t k = view(key), s;
    return gatehouse_plugin_types_method_context_get(ctx, &k, &s) ? take(&s) : NULL;
}

void gh_context_set(gh_context ctx, const char *key, const char *value) {
    plugin_string_t k = view(key), v = view(value);
    gatehouse_plugin_types_method_context_set(ctx, &k, &v);
}

char *gh_context_set_response_header(gh_context ctx, const char *name, const char *value) {
    plugin_string_t n = view(name), v = view(value), err;
    return outcome(
        gatehouse_plugin_types_method_context_set_response_header(ctx, &n, &v, &err), &err);
}

/* The contract's list of pairs, viewing the caller's strings (free its
 * ptr); ptr is NULL when out of memory. */
static gatehouse_plugin_types_fields_t fields(const char *(*pairs)[2], size_t n) {
    gatehouse_plugin_types_fields_t list = {malloc((n ? n : 1) * sizeof *list.ptr), n};
    for (size_t i = 0; list.ptr && i < n; i++) {
        list.ptr[i].f0 = view(pairs[i][0]);
        list.ptr[i].f1 = view(pairs[i][1]);
    }
    return list;
}

/* A list call's answer, the list freed. */
static char *list_outcome(bool ok, plugin_string_t *err, gatehouse_plugin_types_fields_t *list) {
    free(list->ptr);
    return outcome(ok, err);
}

char *gh_request_set_headers(gh_request req, const char *(*pairs)[2], size_t n) {
    gatehouse_plugin_types_fields_t list = fields(pairs, n);
    plugin_string_t err;
    if (!list.ptr) return strdup("out of memory");
    bool ok = gatehouse_plugin_types_method_request_set_headers(req, &list, &err);
    return list_outcome(ok, &err, &list);
}

char *gh_response_set_headers(gh_response resp, const char *(*pairs)[2], size_t n) {
    gatehouse_plugin_types_fields_t list = fields(pairs, n);
    plugin_string_t err;
    if (!list.ptr) return strdup("out of memory");
    bool ok = gatehouse_plugin_types_method_response_set_headers(resp, &list, &err);
    return list_outcome(ok, &err, &list);
}

char *gh_context_set_response_headers(gh_context ctx, const char *(*pairs)[2], size_t n) {
    gatehouse_plugin_types_fields_t list = fields(pairs, n);
    plugin_string_t err;
    if (!list.ptr) return strdup("out of memory");
    bool ok = gatehouse_plugin_types_method_context_set_response_headers(ctx, &list, &err);
    return list_outcome(ok, &err, &list);
}

char *gh_edit_set_header(gh_phase phase, const char *name, const char *value) {
    plugin_string_t n = view(name), v = view(value), err;
    return outcome(
        gatehouse_plugin_edits_set_header((gatehouse_plugin_edits_phase_t)phase, &n, &v, &err),
        &err);
}

char *gh_edit_remove_header(gh_phase phase, const char *name) {
    plugin_string_t n = view(name), err;
    return outcome(
        gatehouse_plugin_edits_remove_header((gatehouse_plugin_edits_phase_t)phase, &n, &err),
        &err);
}

void gh_log(gh_level level, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *message = vformat(format, args);
    va_end(args);
    if (!message) return;
    plugin_string_t m = view(message);
    gatehouse_plugin_host_log((gatehouse_plugin_host_level_t)level, &m);
    free(message);
}

/* ---- JSON ---------------------------------------------------------------- */

/* Nesting deeper than this is refused rather than recursed into. */
#define GH_JSON_MAX_DEPTH 64

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static const char *skip_value(const char *p, const char *end, int depth);

static const char *skip_string(const char *p, const char *end) {
    if (p >= end || *p != '"') return NULL;
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c < 0x20) return NULL;
        if (c == '\\') {
            if (++p >= end) return NULL;
            if (*p == 'u') {
                for (int i = 0; i < 4; i++)
                    if (++p >= end || !strchr("0123456789abcdefABCDEF", *p) || !*p) return NULL;
            } else if (!strchr("\"\\/bfnrt", *p) || !*p) {
                return NULL;
            }
        }
    }
    return NULL;
}

static const char *skip_number(const char *p, const char *end) {
    const char *start = p;
    if (p < end && *p == '-') p++;
    if (p < end && *p == '0') {
        p++;
    } else {
        if (p >= end || *p < '1' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && *p == '.') {
        if (++p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    return p > start ? p : NULL;
}

static const char *skip_literal(const char *p, const char *end, const char *word) {
    size_t n = strlen(word);
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

/* Skips a container's members or items; `close` is '}' or ']'. */
static const char *skip_container(const char *p, const char *end, char close, int depth) {
    if (depth > GH_JSON_MAX_DEPTH) return NULL;
    p = skip_ws(p + 1, end);
    if (p < end && *p == close) return p + 1;
    for (;;) {
        if (close == '}') {
            p = skip_string(p, end);
            if (!p) return NULL;
            p = skip_ws(p, end);
            if (p >= end || *p != ':') return NULL;
            p = skip_ws(p + 1, end);
        }
        p = skip_value(p, end, depth + 1);
        if (!p) return NULL;
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        return p < end && *p == close ? p + 1 : NULL;
    }
}

static const char *skip_value(const char *p, const char *end, int depth) {
    if (p >= end) return NULL;
    switch (*p) {
    case '"': return skip_string(p, end);
    case '{': return skip_container(p, end, '}', depth);
    case '[': return skip_container(p, end, ']', depth);
    case 't': return skip_literal(p, end, "true");
    case 'f': return skip_literal(p, end, "false");
    case 'n': return skip_literal(p, end, "null");
    default: return skip_number(p, end);
    }
}

bool gh_json_parse(const char *text, size_t len, gh_json *out) {
    const char *end = text + len;
    const char *start = skip_ws(text, end);
    const char *stop = skip_value(start, end, 0);
    if (!stop || skip_ws(stop, end) != end) return false;
    out->start = start;
    out->end = stop;
    return true;
}

bool gh_json_is_object(gh_json v) {
    return v.end > v.start && *v.start == '{';
}

/* Whether the string literal at `p` (already checked) equals `key`. */
static bool string_equals(const char *p, const char *end, const char *key) {
    gh_json literal = {p, end};
    char *s = gh_json_string(literal);
    bool same = s && strcmp(s, key) == 0;
    free(s);
    return same;
}

bool gh_json_field(gh_json object, const char *key, gh_json *out) {
    if (!gh_json_is_object(object)) return false;
    gh_json it = object, name, value;
    while (gh_json_next_member(&it, &name, &value)) {
        if (string_equals(name.start, name.end, key)) {
            *out = value;
            return true;
        }
    }
    return false;
}

bool gh_json_next_member(gh_json *it, gh_json *key, gh_json *value) {
    const char *p = it->start;
    if (p < it->end && *p == '{') p++; /* the first call starts at the brace */
    p = skip_ws(p, it->end);
    if (p < it->end && *p == ',') p = skip_ws(p + 1, it->end);
    if (p >= it->end || *p != '"') return false;
    const char *key_end = skip_string(p, it->end);
    if (!key_end) return false;
    const char *v = skip_ws(key_end, it->end);
    if (v >= it->end || *v != ':') return false;
    v = skip_ws(v + 1, it->end);
    const char *stop = skip_value(v, it->end, 1);
    if (!stop) return false;
    key->start = p;
    key->end = key_end;
    value->start = v;
    value->end = stop;
    it->start = stop;
    return true;
}

bool gh_json_next(gh_json *it, gh_json *item) {
    const char *p = it->start;
    if (p < it->end && *p == '[') p++; /* the first call starts at the bracket */
    p = skip_ws(p, it->end);
    if (p < it->end && *p == ',') p = skip_ws(p + 1, it->end);
    if (p >= it->end || *p == ']') return false;
    const char *stop = skip_value(p, it->end, 1);
    if (!stop) return false;
    item->start = p;
    item->end = stop;
    it->start = stop;
    return true;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return c - 'A' + 10;
}

static size_t put_utf8(char *out, unsigned cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

char *gh_json_string(gh_json v) {
    const char *stop = skip_string(v.start, v.end);
    if (!stop) return NULL;
    /* Unescaping never makes a string longer. */
    char *out = malloc((size_t)(stop - v.start));
    if (!out) return NULL;
    size_t n = 0;
    for (const char *p = v.start + 1; p < stop - 1; p++) {
        if (*p != '\\') {
            out[n++] = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 1; i <= 4; i++) cp = cp * 16 + (unsigned)hex_value(p[i]);
            p += 4;
            /* A surrogate pair: a high one followed by \uDC00-\uDFFF. */
            if (cp >= 0xD800 && cp < 0xDC00 && p + 6 < stop && p[1] == '\\' && p[2] == 'u') {
                unsigned low = 0;
                for (int i = 3; i <= 6; i++) low = low * 16 + (unsigned)hex_value(p[i]);
                if (low >= 0xDC00 && low < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    p += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; /* a lone surrogate */
            n += put_utf8(out + n, cp);
            break;
        }
        default: out[n++] = *p; /* " \ / */
        }
    }
    out[n] = '\0';
    return out;
}

bool gh_json_number(gh_json v, double *out) {
    const char *stop = skip_number(v.start, v.end);
    if (!stop || stop != v.end) return false;
    char *text = copy_n(v.start, (size_t)(v.end - v.start));
    if (!text) return false;
    *out = strtod(text, NULL);
    free(text);
    return true;
}

bool gh_json_bool(gh_json v, bool *out) {
    size_t n = (size_t)(v.end - v.start);
    if (n == 4 && memcmp(v.start, "true", 4) == 0) {
        *out = true;
        return true;
    }
    if (n == 5 && memcmp(v.start, "false", 5) == 0) {
        *out = false;
        return true;
    }
    return false;
}
