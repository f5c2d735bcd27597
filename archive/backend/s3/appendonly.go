package s3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/minio/minio-go/v7"
)

// AppendOnlyOptions say how SetupAppendOnly protects a repository.
type AppendOnlyOptions struct {
	// BackupPrincipal names the backup credential in the bucket policy,
	// as the server spells principals: on AWS an ARN such as
	// "arn:aws:iam::123456789012:user/backup", on MinIO and versitygw
	// the user's access key. Required.
	BackupPrincipal string
	// RetentionDays, if positive, also turns on object lock with a
	// default retention of that many days in governance mode: every
	// version of every object is then kept at least that long, even from
	// credentials that may delete versions (bypassing governance mode
	// needs s3:BypassGovernanceRetention).
	RetentionDays int
}

// AppendOnlyPolicy returns the bucket policy that lets principal use the
// repository at loc as an append-only repository: it may list the bucket,
// read and create objects, and delete objects only under PREFIX/locks/;
// writing the config or under PREFIX/keys/ (a planted key file costs
// every opening a key derivation; so key add needs the admin credentials),
// deleting any other object or any object version, and changing the
// bucket's policy, versioning, lifecycle or object lock, are denied
// explicitly (an explicit deny also beats rights the principal has from
// elsewhere). Versioning must be enabled on the bucket as well: the policy
// cannot stop an overwrite of data, index or snapshot files, but with
// versioning an overwrite only adds a version and the original stays
// retrievable. The policy covers the whole
// bucket: setting it replaces any other policy of the bucket.
func AppendOnlyPolicy(loc Location, principal string) ([]byte, error) {
	if principal == "" {
		return nil, errors.New("append-only policy: no backup principal")
	}
	bucket := "arn:aws:s3:::" + loc.Bucket
	objects := bucket + "/"
	if loc.Prefix != "" {
		objects += loc.Prefix + "/"
	}
	type statement struct {
		Sid       string
		Effect    string
		Principal map[string]string
		Action    []string
		Resource  []string
	}
	who := map[string]string{"AWS": principal}
	policy := struct {
		Version   string
		Statement []statement
	}{
		Version: "2012-10-17",
		Statement: []statement{
			{"PlanbBackupList", "Allow", who,
				[]string{"s3:ListBucket", "s3:GetBucketLocation"}, []string{bucket}},
			{"PlanbBackupReadCreate", "Allow", who,
				[]string{"s3:GetObject", "s3:PutObject"}, []string{objects + "*"}},
			{"PlanbBackupLocks", "Allow", who,
				[]string{"s3:DeleteObject"}, []string{objects + "locks/*"}},
			{"PlanbBackupNoDelete", "Deny", who,
				[]string{"s3:DeleteObject"}, []string{
					objects + "config", objects + "keys/*", objects + "data/*",
					objects + "index/*", objects + "snapshots/*",
				}},
			{"PlanbBackupNoKeys", "Deny", who,
				[]string{"s3:PutObject"}, []string{objects + "config", objects + "keys/*"}},
			{"PlanbBackupNoVersionDelete", "Deny", who,
				[]string{"s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:PutObjectLegalHold", "s3:BypassGovernanceRetention"},
				[]string{bucket + "/*"}},
			{"PlanbBackupNoBucketChange", "Deny", who,
				[]string{"s3:DeleteBucket", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutBucketVersioning",
					"s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration", "s3:PutBucketAcl"},
				[]string{bucket}},
		},
	}
	return json.MarshalIndent(policy, "", "  ")
}

// SetupAppendOnly makes the server enforce append-only use of the
// repository by o.BackupPrincipal: it enables versioning on the bucket,
// with o.RetentionDays > 0 object lock with that default retention in
// governance mode, and sets AppendOnlyPolicy as the bucket's policy,
// replacing any other. It needs credentials that may change the bucket's
// settings (the bucket owner's or an administrator's). Servers without
// versioning or bucket policies (Garage, for one) fail here: they cannot
// enforce append-only use.
func (s *S3) SetupAppendOnly(ctx context.Context, o AppendOnlyOptions) error {
	policy, err := AppendOnlyPolicy(s.loc, o.BackupPrincipal)
	if err != nil {
		return fmt.Errorf("set up append-only %s: %w", s.loc, err)
	}
	if o.RetentionDays < 0 {
		return fmt.Errorf("set up append-only %s: negative retention %d days", s.loc, o.RetentionDays)
	}
	if err := s.client.EnableVersioning(ctx, s.loc.Bucket); err != nil {
		return fmt.Errorf("set up append-only %s: enable versioning: %w", s.loc, s.apiError(ctx, err))
	}
	if o.RetentionDays > 0 {
		mode := minio.Governance
		days := uint(o.RetentionDays)
		unit := minio.Days
		if err := s.client.SetObjectLockConfig(ctx, s.loc.Bucket, &mode, &days, &unit); err != nil {
			return fmt.Errorf("set up append-only %s: object lock: %w", s.loc, s.apiError(ctx, err))
		}
	}
	if err := s.client.SetBucketPolicy(ctx, s.loc.Bucket, string(policy)); err != nil {
		return fmt.Errorf("set up append-only %s: bucket policy: %w", s.loc, s.apiError(ctx, err))
	}
	s.log.Debug("append-only set up", "bucket", s.loc.Bucket, "principal", o.BackupPrincipal, "retention_days", o.RetentionDays)
	return nil
}

// Versioned reports whether the bucket keeps object versions, which an
// enforced append-only repository needs. It is a check for the
// administrator, not a proof that the backup credential's rights are
// restricted.
func (s *S3) Versioned(ctx context.Context) (bool, error) {
	cfg, err := s.client.GetBucketVersioning(ctx, s.loc.Bucket)
	if err != nil {
		return false, fmt.Errorf("bucket versioning of %s: %w", s.loc, s.apiError(ctx, err))
	}
	return strings.EqualFold(cfg.Status, "Enabled"), nil
}
