// Package pack reads and writes pack files, the repository's data files.
//
// A pack is a sequence of sealed frames followed by a sealed header and the
// header's length:
//
//	frame_1 | frame_2 | ... | frame_n | sealed header | uint32le len(sealed header)
//
// A frame holds one or more blobs: small blobs (most messages) are grouped
// and compressed together, which lets zstd see the headers that mail repeats
// endlessly; a large chunk gets a frame of its own. The header lists every
// frame and its blobs, so a pack can be indexed again from itself alone. See
// archive/FORMAT.md for the byte layout.
package pack
