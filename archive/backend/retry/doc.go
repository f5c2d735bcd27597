// Package retry is a backend.Backend wrapper that retries transient
// failures with capped exponential backoff and jitter.
//
// Every error is taken as transient except those that retrying cannot
// cure: backend.ErrNotExist, backend.ErrInvalidHandle, the context's
// cancellation or deadline, an error of the caller's reader in Save or of
// the caller's function in List, and any error in whose chain a value has
// a method Permanent() bool that returns true (the s3 backend marks the
// server's refusals, such as wrong credentials, that way).
//
// Save rewinds its reader for each attempt. A Load reader that fails
// midway reopens the file where it stopped, so that a long pack read
// survives a dropped connection. A List that fails midway is started
// again and skips the files it already reported (it remembers their
// names for the duration of the call). A Remove whose earlier attempt
// failed treats ErrNotExist as success, because that attempt may have
// removed the file before its answer was lost.
package retry
