// Package mailform knows the form a message takes on the wire of mail
// servers, which is not always the form it was stored in.
//
// RFC 5322 and RFC 3501 want CRLF line ends, no NUL bytes outside a BINARY
// literal, 7-bit headers outside UTF8=ACCEPT and lines of at most 998
// bytes; strict servers (Cyrus) refuse what breaks these rules, others
// (Proton Mail Bridge) refuse messages whose Date or From they cannot
// parse, and many rewrite what they accept (added headers, CRLF line ends,
// rebuilt MIME). This package:
//
//   - converts line ends (CRLF, CRLFWriter) and measures a message in one
//     streaming pass (Scanner);
//   - names what a strict server may refuse in a message (Check);
//   - builds a repaired copy a server accepts, marked with an
//     X-Planb-Repaired header and carrying the original, and gives the
//     original back from such a copy (Repair, Recover);
//   - computes fingerprints of a message that survive the rewrites
//     servers make (Fingerprint), so that "already delivered" and "equal"
//     do not rest on a server returning the bytes it was sent.
//
// It uses the standard library only and never holds more than a message's
// header (bounded) in memory, except where a function says otherwise.
package mailform
