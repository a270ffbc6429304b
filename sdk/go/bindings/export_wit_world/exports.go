// Package export_wit_world implements the contract's exports for the
// generated bindings (gatehouse/bindings/wit_exports) by calling the
// plugin registered with the gatehouse package. Part of the SDK, not
// generated.
package export_wit_world

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"gatehouse"
	"gatehouse/bindings/gatehouse_plugin_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

var calls int

func init() {
	// A collection that starts inside cabi_realloc (while the host lowers a
	// value into this instance) traps the call: collect between calls only.
	debug.SetGCPercent(-1)
}

// collect runs the garbage collector every gatehouse.GCEvery calls (when
// set), at the end of a call, where it is safe.
func collect() {
	calls++
	if gatehouse.GCEvery > 0 && calls%gatehouse.GCEvery == 0 {
		runtime.GC()
	}
}

// guard turns a panic in plugin code into an error for the host.
func guard(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("panic: %v", p)
	}
}

func Init(config string) (result witTypes.Result[gatehouse_plugin_types.Hooks, string]) {
	var err error
	hooks, err := func() (h uint8, err error) {
		defer guard(&err)
		return gatehouse.Start(config)
	}()
	if err != nil {
		return witTypes.Err[gatehouse_plugin_types.Hooks, string](err.Error())
	}
	return witTypes.Ok[gatehouse_plugin_types.Hooks, string](hooks)
}

func OnRequest(ctx *gatehouse_plugin_types.Context, req *gatehouse_plugin_types.Request) witTypes.Result[gatehouse_plugin_types.Action, string] {
	defer collect()
	// The handles are lent for this call: the canonical ABI wants them back.
	defer ctx.Drop()
	defer req.Drop()
	reply, err := func() (r *gatehouse.Reply, err error) {
		defer guard(&err)
		return gatehouse.HandleRequest(ctx, req)
	}()
	if err != nil {
		return witTypes.Err[gatehouse_plugin_types.Action, string](err.Error())
	}
	if reply == nil {
		return witTypes.Ok[gatehouse_plugin_types.Action, string](gatehouse_plugin_types.MakeActionContinue())
	}
	headers := make([]witTypes.Tuple2[string, string], len(reply.Headers))
	for i, h := range reply.Headers {
		headers[i] = witTypes.Tuple2[string, string]{F0: h[0], F1: h[1]}
	}
	status := reply.Status
	if status == 0 {
		status = 200
	}
	action := gatehouse_plugin_types.MakeActionRespond(gatehouse_plugin_types.Reply{Status: status, Headers: headers, Body: reply.Body})
	return witTypes.Ok[gatehouse_plugin_types.Action, string](action)
}

func OnResponse(ctx *gatehouse_plugin_types.Context, req *gatehouse_plugin_types.Request, resp *gatehouse_plugin_types.Response, outcome gatehouse_plugin_types.Outcome) witTypes.Result[witTypes.Unit, string] {
	defer collect()
	defer ctx.Drop()
	defer req.Drop()
	defer resp.Drop()
	err := func() (err error) {
		defer guard(&err)
		return gatehouse.HandleResponse(ctx, req, resp, outcome)
	}()
	if err != nil {
		return witTypes.Err[witTypes.Unit, string](err.Error())
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}
