// Package crypto seals everything planb writes to a repository.
//
// A repository has one random 256-bit master key. Every blob frame, index,
// snapshot, lock and the config are sealed with XChaCha20-Poly1305 under that
// key with a fresh random 192-bit nonce: random nonces of that length stay
// safe far beyond 10^9 sealed objects (the collision bound is about 2^80).
//
// The master key itself is stored in key files, one per password, each
// sealed under a key derived from the password with argon2id. Only the KDF
// parameters and salt of a key file are in clear.
package crypto
