// Command mailgen writes a synthetic, deterministic Maildir++ tree for
// benchmarks.
//
// Usage:
//
//	mailgen -out DIR [-messages 20000] [-size 1G] [-seed 1] [-layout maildir]
//	mailgen -out DIR -one-message-size 200M [-seed 1]
//	mailgen -out DIR -import SRC [-exclude '*.md,MANIFEST*']
//
// The tree has INBOX at the root (cur, new, tmp) and a few Maildir++
// folders such as .Sent, .Archive and .Projects.Alpha. Messages look like
// real mail: RFC 5322 headers with Received chains and DKIM-like long folded
// lines, names and text in several languages drawn from a pseudo-word
// vocabulary with a Zipf distribution, text/plain and text/html alternatives,
// replies that quote the earlier messages of their thread, and base64
// attachments of pseudo-random bytes whose sizes follow a heavy-tailed
// distribution. About 30% of the attachment parts repeat an earlier
// attachment byte for byte (a forward), at a different offset in the message.
// Sizes are planned so that the tree adds up to about -size bytes
// (K, M and G are powers of 1024).
//
// The output depends only on the flags: the same -seed, -messages and -size
// give the same files, names and modification times. Messages are streamed
// to disk, so memory stays bounded whatever the sizes.
//
// With -one-message-size, mailgen writes a Maildir holding one message of
// about that size, most of it a single base64 attachment.
//
// With -import, mailgen generates nothing: it copies every file under SRC
// (one message per file, such as a directory of .eml files) into a
// Maildir++ tree, each directory becoming a folder, so that a corpus can be
// backed up as a Maildir.
//
// mailgen prints a one-line summary on stderr unless -q is given.
package main
