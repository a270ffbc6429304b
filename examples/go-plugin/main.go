// body-guard: checks request bodies before they reach the upstream.
//
//	[[routes.plugins]]
//	plugin = "body-guard"
//	config = { max_body = 65536, content_types = ["application/json"] }
//
// For methods that carry a body (POST, PUT, PATCH by default; `methods`), the
// content type must be one of `content_types` (415 otherwise), the body at
// most `max_body` bytes (413), and a JSON body must be well-formed JSON (400).
package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"gatehouse"
	_ "gatehouse/bindings/wit_exports"
)

type bodyGuard struct {
	maxBody      int64
	contentTypes []string
	methods      map[string]bool
}

func (g *bodyGuard) WantsBodies() (request, response bool) { return true, false }

func (g *bodyGuard) OnRequest(ctx *gatehouse.Context, req *gatehouse.Request) (*gatehouse.Reply, error) {
	if !g.methods[req.Method()] {
		return nil, nil
	}
	header, _ := req.Header("content-type")
	mediaType := strings.ToLower(strings.TrimSpace(strings.SplitN(header, ";", 2)[0]))
	allowed := false
	for _, t := range g.contentTypes {
		allowed = allowed || t == mediaType
	}
	if !allowed {
		msg := fmt.Sprintf("content type %q is not accepted here", mediaType)
		return gatehouse.ErrorReply(ctx, 415, msg), nil
	}
	body, _ := req.Body()
	if int64(len(body)) > g.maxBody {
		msg := fmt.Sprintf("body of %d bytes is over the limit of %d", len(body), g.maxBody)
		return gatehouse.ErrorReply(ctx, 413, msg), nil
	}
	if (mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")) && !json.Valid(body) {
		return gatehouse.ErrorReply(ctx, 400, "the body is not valid JSON"), nil
	}
	return nil, nil
}

func newBodyGuard(config gatehouse.Config) (gatehouse.Plugin, error) {
	maxBody, err := config.Int("max_body", 1<<20)
	if err != nil {
		return nil, err
	}
	if maxBody <= 0 {
		return nil, fmt.Errorf("`max_body` must be at least 1")
	}
	types, err := config.Strings("content_types")
	if err != nil {
		return nil, err
	}
	if len(types) == 0 {
		types = []string{"application/json"}
	}
	for i, t := range types {
		types[i] = strings.ToLower(t)
	}
	methods, err := config.Strings("methods")
	if err != nil {
		return nil, err
	}
	if len(methods) == 0 {
		methods = []string{"POST", "PUT", "PATCH"}
	}
	set := map[string]bool{}
	for _, m := range methods {
		set[strings.ToUpper(m)] = true
	}
	return &bodyGuard{maxBody: maxBody, contentTypes: types, methods: set}, nil
}

func init() { gatehouse.Register(newBodyGuard) }

func main() {}
