/*
 * cidr-guard: lets a request through only from allowed networks.
 *
 *   [[routes.plugins]]
 *   plugin = "cidr-guard"
 *   [routes.plugins.config]
 *   allow = ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]   # empty or absent: everyone
 *   deny = ["10.66.0.0/16"]                             # checked first
 *
 * The client is the socket peer, or the client a trusted proxy names
 * (server.trusted_proxies). Refused clients get 403 with a JSON body.
 */
#include "gatehouse.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    unsigned prefix;  /* in bits of the 128 */
} block;

typedef struct {
    block *items;
    size_t len;
} blocks;

static blocks allow, deny;

/* An address in its 16-byte form; IPv4 mapped into IPv6. */
static bool parse_addr(const char *text, uint8_t out[16], bool *v4) {
    struct in_addr a4;
    if (inet_pton(AF_INET, text, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        *v4 = true;
        return true;
    }
    *v4 = false;
    return inet_pton(AF_INET6, text, out) == 1;
}

static bool parse_block(const char *text, block *out) {
    char addr[64];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    if (n == 0 || n >= sizeof addr) return false;
    memcpy(addr, text, n);
    addr[n] = '\0';
    bool v4;
    if (!parse_addr(addr, out->addr, &v4)) return false;
    unsigned max = v4 ? 32 : 128, prefix = max;
    if (slash) {
        char *end;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || p > max) return false;
        prefix = (unsigned)p;
    }
    out->prefix = v4 ? prefix + 96 : prefix;
    return true;
}

static bool contains(const block *b, const uint8_t addr[16]) {
    unsigned full = b->prefix / 8, rest = b->prefix % 8;
    if (memcmp(b->addr, addr, full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (b->addr[full] & mask) == (addr[full] & mask);
}

static bool any(const blocks *list, const uint8_t addr[16]) {
    for (size_t i = 0; i < list->len; i++)
        if (contains(&list->items[i], addr)) return true;
    return false;
}

static char problem[160];

/* Reads config[field], an array of CIDR strings, into *out. */
static const char *read_blocks(gh_json config, const char *field, blocks *out) {
    gh_json list, item;
    out->len = 0;
    if (!gh_json_field(config, field, &list)) return NULL;
    gh_json it = list;
    size_t count = 0;
    while (gh_json_next(&it, &item)) count++;
    if (list.start[0] != '[') {
        snprintf(problem, sizeof problem, "`%s` must be a list of CIDR blocks", field);
        return problem;
    }
    out->items = realloc(out->items, (count ? count : 1) * sizeof *out->items);
    it = list;
    for (size_t i = 0; gh_json_next(&it, &item); i++) {
        char *text = gh_json_string(item);
        bool ok = text && parse_block(text, &out->items[i]);
        if (!ok) {
            snprintf(problem, sizeof problem, "`%s[%zu]`: %s is not a CIDR block (like 10.0.0.0/8)",
                     field, i, text ? text : "a non-string");
            free(text);
            return problem;
        }
        free(text);
        out->len++;
    }
    return NULL;
}

const char *gh_init(const char *config, size_t len, unsigned *hooks) {
    gh_json doc;
    if (!gh_json_parse(config, len, &doc) || !gh_json_is_object(doc))
        return "the config must be a table";
    const char *error = read_blocks(doc, "allow", &allow);
    if (!error) error = read_blocks(doc, "deny", &deny);
    if (error) return error;
    *hooks = GH_ON_REQUEST;
    return NULL;
}

gh_decision gh_on_request(gh_context ctx, gh_request req, gh_reply *reply) {
    (void)req;
    char *ip = gh_context_client_ip(ctx);
    uint8_t addr[16];
    bool v4;
    if (!ip || !parse_addr(ip, addr, &v4)) {
        gh_log(GH_WARN, "cannot read the client address \"%s\"", ip ? ip : "");
        free(ip);
        return gh_reply_error(reply, ctx, 403, "client address not allowed");
    }
    bool refused = any(&deny, addr) || (allow.len > 0 && !any(&allow, addr));
    if (refused) gh_log(GH_DEBUG, "refused %s", ip);
    free(ip);
    return refused ? gh_reply_error(reply, ctx, 403, "client address not allowed") : GH_CONTINUE;
}
