// Package crypto seals everything planb writes to a repository.
//
// A repository has one random 256-bit master key. Every blob frame, index,
// snapshot, lock and the config are sealed under that key with a fresh
// random 192-bit nonce, by the key's cipher: XAES-256-GCM where the
// processor has AES instructions, else XChaCha20-Poly1305 (older
// repositories keep theirs). Random nonces of that length stay safe far
// beyond 10^9 sealed objects (the collision bound is about 2^80).
//
// The master key itself is stored in key files, one per password, each
// sealed with XChaCha20-Poly1305 under a key derived from the password with
// argon2id, followed by a byte naming its cipher unless that is
// XChaCha20-Poly1305. Only the KDF parameters and salt of a key file are in
// clear.
package crypto
