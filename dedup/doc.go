// Package dedup cuts message bytes into content-defined chunks and names them.
//
// Chunk boundaries come from restic's Rabin-fingerprint chunker with a random
// irreducible polynomial chosen per repository (so boundaries leak nothing
// across repositories) and mail-sized limits recorded in the repository's
// config. A chunk's ID is the SHA-256 of its plaintext. Index maps IDs to
// where the repository keeps them.
package dedup
