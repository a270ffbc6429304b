module gatehouse

go 1.25

require go.bytecodealliance.org/pkg v0.2.3

// The runtime package wit-bindgen's Go bindings use, as the wit-bindgen-go
// 0.61.1 crate ships it (Apache-2.0, see its LICENSE): builds need no module proxy.
replace go.bytecodealliance.org/pkg => ./third_party/go.bytecodealliance.org/pkg
