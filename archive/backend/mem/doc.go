// Package mem is an in-memory backend.Backend for tests.
//
// A Mem keeps every file as an immutable byte slice and has the same
// semantics as the local backend: atomic Save, ranged Load, handle
// validation and cancellation. Corrupt and Contents let tests damage and
// inspect what is stored. A Mem is safe for concurrent use.
package mem
