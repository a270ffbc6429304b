// Package gatehouse is the Gatehouse plugin SDK for Go (contract
// gatehouse:plugin@0.1.5), for components built with Go's wasip1 target.
//
//	package main
//
//	import (
//		"gatehouse"
//		_ "gatehouse/bindings/wit_exports" // the contract's exports
//	)
//
//	type guard struct{ header string }
//
//	func (g *guard) OnRequest(ctx *gatehouse.Context, req *gatehouse.Request) (*gatehouse.Reply, error) {
//		if _, ok := req.Header(g.header); !ok {
//			return gatehouse.ErrorReply(ctx, 400, "missing "+g.header), nil
//		}
//		return nil, nil // let it through
//	}
//
//	func init() {
//		gatehouse.Register(func(config gatehouse.Config) (gatehouse.Plugin, error) {
//			header, err := config.String("header")
//			return &guard{header}, err
//		})
//	}
//
//	func main() {}
//
// `gatehouse plugin build DIR` builds the project's Go files (package main)
// against this SDK. An instance serves many requests, one at a time: state in
// the plugin value lives across that instance's requests.
//
// The Go garbage collector cannot run inside the canonical ABI's allocator
// (the host would trap the call), so the SDK turns automatic collection off.
// The gateway retires an instance whose linear memory passes 3/4 of its cap
// and starts a fresh one between requests, which costs far less than
// collecting: a forced collection takes milliseconds. A plugin that keeps
// large state across requests can set GCEvery to collect between calls.
package gatehouse

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"gatehouse/bindings/gatehouse_plugin_edits"
	"gatehouse/bindings/gatehouse_plugin_host"
	"gatehouse/bindings/gatehouse_plugin_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

// Plugin is what a Factory makes: a value with an OnRequest method
// (RequestPlugin), an OnResponse method (ResponsePlugin), declared edits
// (EditsPlugin), or several of them. The gateway enters the plugin only
// for the hooks it has, so a plugin whose request phase is only declared
// edits is not entered for requests at all.
type Plugin any

// RequestPlugin sees each request on its way upstream. Return a nil Reply
// to let it through.
type RequestPlugin interface {
	OnRequest(ctx *Context, req *Request) (*Reply, error)
}

// ResponsePlugin sees each response on its way to the client.
type ResponsePlugin interface {
	OnResponse(ctx *Context, req *Request, resp *Response, outcome Outcome) error
}

// BodyPlugin asks for buffered bodies (Request.Body, Response.Body).
type BodyPlugin interface {
	WantsBodies() (request, response bool)
}

// EditsPlugin declares header edits the gateway makes itself (0.1.5): see
// Edits. Edits is called once, when the instance is created.
type EditsPlugin interface {
	Edits() *Edits
}

// Edits are header edits the gateway makes itself on every request or
// response, at the plugin's place in the chain, without calling the
// plugin: for edits the config fixes, such as a constant header set or a
// header removed. In each phase they are made in the order given, just
// before the plugin's own hook for that phase; a bad name or value refuses
// the config when the instance is created.
//
//	func (g *guard) Edits() *gatehouse.Edits {
//		return new(gatehouse.Edits).RemoveRequestHeader("cookie").SetResponseHeader("x-served-by", "gatehouse")
//	}
type Edits struct{ list []edit }

// edit is one declared edit: a set, or a removal when remove is true.
type edit struct {
	phase       gatehouse_plugin_edits.Phase
	name, value string
	remove      bool
}

func (e *Edits) add(x edit) *Edits {
	e.list = append(e.list, x)
	return e
}

// SetRequestHeader sets a header of the request on its way upstream,
// replacing any values it had.
func (e *Edits) SetRequestHeader(name, value string) *Edits {
	return e.add(edit{phase: gatehouse_plugin_edits.PhaseRequest, name: name, value: value})
}

// RemoveRequestHeader removes every value of a request header.
func (e *Edits) RemoveRequestHeader(name string) *Edits {
	return e.add(edit{phase: gatehouse_plugin_edits.PhaseRequest, name: name, remove: true})
}

// SetResponseHeader sets a header of the response on its way to the
// client, replacing any values it had.
func (e *Edits) SetResponseHeader(name, value string) *Edits {
	return e.add(edit{phase: gatehouse_plugin_edits.PhaseResponse, name: name, value: value})
}

// RemoveResponseHeader removes every value of a response header.
func (e *Edits) RemoveResponseHeader(name string) *Edits {
	return e.add(edit{phase: gatehouse_plugin_edits.PhaseResponse, name: name, remove: true})
}

// declare hands the edits to the host, in order; the first it refuses
// stops them.
func (e *Edits) declare() error {
	for _, x := range e.list {
		var err error
		if x.remove {
			err = checked(gatehouse_plugin_edits.RemoveHeader(x.phase, x.name))
		} else {
			err = checked(gatehouse_plugin_edits.SetHeader(x.phase, x.name, x.value))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Factory makes the plugin from the entry's config; an error refuses the
// config with its message.
type Factory func(config Config) (Plugin, error)

var factory Factory

// Register names the plugin's factory; call it from an init function.
func Register(f Factory) { factory = f }

// Config is the entry's config table.
type Config map[string]any

// String reads a required string field.
func (c Config) String(key string) (string, error) {
	v, ok := c[key].(string)
	if !ok || v == "" {
		return "", fmt.Errorf("`%s` must be a non-empty string", key)
	}
	return v, nil
}

// Int reads an optional whole-number field, with its default.
func (c Config) Int(key string, otherwise int64) (int64, error) {
	v, present := c[key]
	if !present {
		return otherwise, nil
	}
	n, ok := v.(float64)
	if !ok || n != float64(int64(n)) {
		return 0, fmt.Errorf("`%s` must be a whole number", key)
	}
	return int64(n), nil
}

// Strings reads an optional list of strings.
func (c Config) Strings(key string) ([]string, error) {
	v, present := c[key]
	if !present {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("`%s` must be a list of strings", key)
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("`%s[%d]` must be a string", key, i)
		}
		out = append(out, s)
	}
	return out, nil
}

// Outcome says where the response seen by OnResponse came from.
type Outcome = gatehouse_plugin_types.Outcome

// Reply is a response a plugin answers with instead of the upstream's.
type Reply struct {
	Status  uint16
	Headers [][2]string
	Body    []byte
}

// JSONReply answers with a JSON body.
func JSONReply(status uint16, value any) *Reply {
	body, err := json.Marshal(value)
	if err != nil {
		body = []byte(`{}`)
	}
	return &Reply{Status: status, Headers: [][2]string{{"content-type", "application/json"}}, Body: body}
}

// ErrorReply answers in the gateway's own error shape:
// {"error": message, "request_id": ..., "status": status}.
func ErrorReply(ctx *Context, status uint16, message string) *Reply {
	return JSONReply(status, map[string]any{"error": message, "request_id": ctx.RequestID(), "status": status})
}

// Context holds facts about the request beyond the HTTP message, and the
// values plugins hand down the chain (consumer, param.NAME, ...).
type Context struct{ h *gatehouse_plugin_types.Context }

func (c *Context) Route() string     { return c.h.Route() }
func (c *Context) Upstream() string  { return c.h.Upstream() }
func (c *Context) RequestID() string { return c.h.RequestId() }

// ClientIP is the client's address without the port (a trusted proxy's
// client when there is one).
func (c *Context) ClientIP() string {
	addr := c.h.ClientAddr()
	if strings.HasPrefix(addr, "[") {
		if end := strings.IndexByte(addr, ']'); end > 0 {
			return addr[1:end]
		}
	}
	if strings.Count(addr, ":") == 1 {
		return addr[:strings.IndexByte(addr, ':')]
	}
	return addr
}

func (c *Context) Get(key string) (string, bool) { return option(c.h.Get(key)) }
func (c *Context) Set(key, value string)         { c.h.Set(key, value) }

// SetResponseHeader sets a header on the response the client gets, whoever
// answers; from OnRequest it spares a plugin its own OnResponse (0.1.3).
func (c *Context) SetResponseHeader(name, value string) error {
	return checked(c.h.SetResponseHeader(name, value))
}

// SetResponseHeaders is SetResponseHeader for several headers in one call
// (0.1.4): all or nothing, a bad pair refuses the whole list.
func (c *Context) SetResponseHeaders(headers [][2]string) error {
	return checked(c.h.SetResponseHeaders(fields(headers)))
}

// fields is the contract's list of (name, value) pairs.
func fields(pairs [][2]string) []witTypes.Tuple2[string, string] {
	out := make([]witTypes.Tuple2[string, string], len(pairs))
	for i, p := range pairs {
		out[i] = witTypes.Tuple2[string, string]{F0: p[0], F1: p[1]}
	}
	return out
}

func option[T any](o witTypes.Option[T]) (T, bool) {
	if o.IsSome() {
		return o.Some(), true
	}
	var zero T
	return zero, false
}

func checked(r witTypes.Result[witTypes.Unit, string]) error {
	if r.IsErr() {
		return errors.New(r.Err())
	}
	return nil
}

// Request is the request on its way upstream.
type Request struct{ h *gatehouse_plugin_types.Request }

func (r *Request) Method() string                  { return r.h.Method() }
func (r *Request) Path() string                    { return r.h.Path() }
func (r *Request) Query() (string, bool)           { return option(r.h.Query()) }
func (r *Request) Header(name string) (string, bool) { return option(r.h.Header(name)) }
func (r *Request) HeaderAll(name string) []string  { return r.h.HeaderAll(name) }
func (r *Request) SetHeader(name, value string) error {
	return checked(r.h.SetHeader(name, value))
}
func (r *Request) RemoveHeader(name string) error { return checked(r.h.RemoveHeader(name)) }
func (r *Request) SetPath(path string) error      { return checked(r.h.SetPath(path)) }

// SetHeaders sets several headers in one call (0.1.4), each replacing the
// values it had, in order: all or nothing, a bad pair refuses the whole
// list. For three or more headers it costs less than a call each.
func (r *Request) SetHeaders(headers [][2]string) error {
	return checked(r.h.SetHeaders(fields(headers)))
}

// Body is the buffered body (BodyPlugin), if any.
func (r *Request) Body() ([]byte, bool) { return option(r.h.Body()) }

// Response is the response on its way to the client.
type Response struct{ h *gatehouse_plugin_types.Response }

func (r *Response) Status() uint16                    { return r.h.Status() }
func (r *Response) Header(name string) (string, bool) { return option(r.h.Header(name)) }
func (r *Response) SetHeader(name, value string) error {
	return checked(r.h.SetHeader(name, value))
}
func (r *Response) RemoveHeader(name string) error { return checked(r.h.RemoveHeader(name)) }
func (r *Response) Body() ([]byte, bool)           { return option(r.h.Body()) }

// SetHeaders sets several headers in one call (0.1.4): see Request.SetHeaders.
func (r *Response) SetHeaders(headers [][2]string) error {
	return checked(r.h.SetHeaders(fields(headers)))
}

// Log writes to the gateway's log, tagged with route, plugin and request id.
func Log(level string, message string) {
	l := gatehouse_plugin_host.LevelInfo
	switch level {
	case "trace":
		l = gatehouse_plugin_host.LevelTrace
	case "debug":
		l = gatehouse_plugin_host.LevelDebug
	case "warn":
		l = gatehouse_plugin_host.LevelWarn
	case "error":
		l = gatehouse_plugin_host.LevelError
	}
	gatehouse_plugin_host.Log(l, message)
}

// NowMs is the host's wall clock in milliseconds.
func NowMs() uint64 { return gatehouse_plugin_host.NowMs() }

// ---- used by the exports (gatehouse/bindings/export_wit_world) ----

// GCEvery, when above 0, collects garbage between calls every GCEvery
// calls. Off by default: see the package documentation.
var GCEvery = 0

var instance Plugin

// Start makes the plugin from its config JSON and says which hooks it has.
func Start(configJSON string) (hooks uint8, err error) {
	if factory == nil {
		return 0, errors.New("no plugin registered: call gatehouse.Register in an init function")
	}
	var config Config
	if err := json.Unmarshal([]byte(configJSON), &config); err != nil {
		return 0, fmt.Errorf("the config is not a table: %v", err)
	}
	p, err := factory(config)
	if err != nil {
		return 0, err
	}
	e, edits := p.(EditsPlugin)
	_, onRequest := p.(RequestPlugin)
	_, onResponse := p.(ResponsePlugin)
	if !edits && !onRequest && !onResponse {
		// Most likely a hook whose signature differs from the SDK's, which
		// Go would otherwise ignore without a word.
		return 0, fmt.Errorf("the plugin (%T) has no OnRequest, OnResponse or Edits method with the SDK's signature", p)
	}
	if edits {
		if list := e.Edits(); list != nil {
			if err := list.declare(); err != nil {
				return 0, err
			}
		}
	}
	instance = p
	if onRequest {
		hooks |= gatehouse_plugin_types.HooksOnRequest
	}
	if onResponse {
		hooks |= gatehouse_plugin_types.HooksOnResponse
	}
	if b, ok := p.(BodyPlugin); ok {
		req, resp := b.WantsBodies()
		if req {
			hooks |= gatehouse_plugin_types.HooksRequestBody
		}
		if resp {
			hooks |= gatehouse_plugin_types.HooksResponseBody
		}
	}
	return hooks, nil
}

// HandleRequest runs the plugin's OnRequest, if it has one.
func HandleRequest(ctx *gatehouse_plugin_types.Context, req *gatehouse_plugin_types.Request) (*Reply, error) {
	if p, ok := instance.(RequestPlugin); ok {
		return p.OnRequest(&Context{ctx}, &Request{req})
	}
	return nil, nil
}

// HandleResponse runs the plugin's OnResponse, if it has one.
func HandleResponse(ctx *gatehouse_plugin_types.Context, req *gatehouse_plugin_types.Request,
	resp *gatehouse_plugin_types.Response, outcome Outcome) error {
	if p, ok := instance.(ResponsePlugin); ok {
		return p.OnResponse(&Context{ctx}, &Request{req}, &Response{resp}, outcome)
	}
	return nil
}
