// Package core holds Tandem's framework-agnostic sessions: the request handle
// ([Session]), the [Manager] that loads and commits it, the signed and
// encrypted cookie, the sharded in-memory store with idle and absolute
// expiry, and the [Replicator] interface through which a cluster (package
// buddy) receives every committed change.
//
// A session is an ID plus attributes. Values are encoded once, when they are
// set, by a [Codec] (JSON by default), and decoded into a fresh value on every
// read, so two requests never share a mutable value and no type needs
// registering.
//
// Each request records what it changed. The change is committed once, no
// later than the first write of the response header (the Set-Cookie header
// goes out with it), and merged attribute by attribute into the stored
// session under a per-session lock: two concurrent requests that set
// different keys both keep their writes; on the same key the later commit
// wins. Every commit bumps the session's version and hands a [Change] to the
// configured [Replicator].
//
// Use [Manager.Middleware] with net/http, or the ginsession and echosession
// adapters.
package core
