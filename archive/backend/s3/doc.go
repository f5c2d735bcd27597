// Package s3 is a backend.Backend that keeps a repository in a bucket of an
// S3-compatible object store (AWS, OVHcloud, Scaleway, Garage, MinIO, Ceph
// RGW, versitygw), through github.com/minio/minio-go/v7.
//
// A location has the form
//
//	s3:https://HOST[:PORT]/BUCKET[/PREFIX]
//
// and s3:http:// is accepted only with Options.InsecurePlaintext. The
// objects of a repository are keyed like the files of the local backend,
// under PREFIX:
//
//	PREFIX/config
//	PREFIX/keys/<name>
//	PREFIX/data/<first two characters of name>/<name>
//	PREFIX/index/<name>
//	PREFIX/snapshots/<name>
//	PREFIX/locks/<name>
//
// Save streams its reader in one PUT request of known length (a multipart
// upload only above 64 MiB), so an object is either absent or complete.
// Load asks for exactly the requested range. S3 has no "remove if present",
// so Remove stats the object first to report a missing one as
// backend.ErrNotExist.
//
// The client makes a single attempt per request: retrying transient
// failures with backoff is the job of the retry package's wrapper, which
// leaves alone the errors this package marks as permanent (anything the
// server refuses with a 4xx status, such as wrong credentials or a missing
// bucket).
//
// For an append-only repository the server, not planb, must stop a stolen
// backup credential: SetupAppendOnly enables bucket versioning (so that an
// overwrite only adds a version), optionally object lock with a default
// retention, and sets the bucket policy of AppendOnlyPolicy, which lets the
// backup credential list, read and create objects but delete only lock
// files. Everything planb does with that credential stays within these
// rights: files are written once under new names (a retried PUT of the same
// content adds a version), and only lock files are removed.
package s3
