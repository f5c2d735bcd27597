package graph

// DefaultTransport exposes the client's default transport to the external
// tests and benchmarks.
var DefaultTransport = defaultTransport
