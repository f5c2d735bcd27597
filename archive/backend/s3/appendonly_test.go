package s3_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/retry"
	"codeberg.org/planb/planb/archive/backend/s3"
	"codeberg.org/planb/planb/archive/backend/s3/s3test"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

func TestAppendOnlyPolicy(t *testing.T) {
	tests := []struct {
		loc                            string
		objects, locks, noDelete, keys string
	}{
		{"s3:https://h/b/some/prefix", "arn:aws:s3:::b/some/prefix/*", "arn:aws:s3:::b/some/prefix/locks/*", "arn:aws:s3:::b/some/prefix/config", "arn:aws:s3:::b/some/prefix/keys/*"},
		{"s3:https://h/b", "arn:aws:s3:::b/*", "arn:aws:s3:::b/locks/*", "arn:aws:s3:::b/config", "arn:aws:s3:::b/keys/*"},
	}
	for _, tt := range tests {
		loc, err := s3.ParseLocation(tt.loc)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s3.AppendOnlyPolicy(loc, "backup")
		if err != nil {
			t.Fatalf("AppendOnlyPolicy(%s) = %v", tt.loc, err)
		}
		var p struct {
			Statement []struct {
				Sid       string
				Effect    string
				Principal map[string]string
				Action    []string
				Resource  []string
			}
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("AppendOnlyPolicy(%s) is not JSON: %v", tt.loc, err)
		}
		got := map[string]string{}
		for _, st := range p.Statement {
			if st.Principal["AWS"] != "backup" {
				t.Errorf("%s: statement %s names principal %v, want backup", tt.loc, st.Sid, st.Principal)
			}
			for _, a := range st.Action {
				for _, r := range st.Resource {
					got[st.Effect+" "+a+" "+r] = st.Sid
				}
			}
		}
		for _, want := range []string{
			"Allow s3:PutObject " + tt.objects,
			"Allow s3:GetObject " + tt.objects,
			"Allow s3:DeleteObject " + tt.locks,
			"Deny s3:DeleteObject " + tt.noDelete,
			"Deny s3:PutObject " + tt.noDelete,
			"Deny s3:PutObject " + tt.keys,
			"Deny s3:DeleteObjectVersion arn:aws:s3:::b/*",
			"Deny s3:PutBucketPolicy arn:aws:s3:::b",
			"Deny s3:PutBucketVersioning arn:aws:s3:::b",
		} {
			if _, ok := got[want]; !ok {
				t.Errorf("AppendOnlyPolicy(%s) lacks %q", tt.loc, want)
			}
		}
		for k := range got {
			if strings.HasPrefix(k, "Allow s3:Delete") && !strings.HasSuffix(k, "/locks/*") {
				t.Errorf("AppendOnlyPolicy(%s) allows %q", tt.loc, k)
			}
		}
	}
	if _, err := s3.AppendOnlyPolicy(s3.Location{Bucket: "b"}, ""); err == nil {
		t.Error("AppendOnlyPolicy without a principal succeeded")
	}
}

// object is one object of the repository as the administrator saw it
// before the attack.
type object struct {
	key, version string
	data         []byte
}

// TestAppendOnly sets up an append-only repository in versitygw (bucket
// versioning, object lock with a default retention, the bucket policy of
// AppendOnlyPolicy for a restricted backup user), backs up with the backup
// user's credentials, then uses them as a thief would, with a raw S3
// client: every delete of the repository's files is refused, every write
// to the config or under keys/ (put, copy, multipart upload) is refused,
// and every other overwrite leaves the original retrievable as a locked
// version. The
// administrator restores the originals, and forgets and prunes with the
// admin credentials (the backup credentials are refused); the repository
// then checks clean.
func TestAppendOnly(t *testing.T) {
	ctx := t.Context()
	srv := s3test.StartWith(t, s3test.Config{IAM: true, Versioning: true})
	const backupKey, backupSecret = "planbbackup", "planbbackupsecret"
	srv.CreateUser(t, backupKey, backupSecret, "user")

	const prefix = "ao"
	adminOpts := srv.Options(prefix)
	backupOpts := adminOpts
	backupOpts.AccessKeyID, backupOpts.SecretAccessKey = backupKey, backupSecret
	ropts := retry.Options{MaxAttempts: 3, InitialDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}

	// The administrator creates the repository and sets up the server.
	as, err := s3.Create(ctx, adminOpts)
	if err != nil {
		t.Fatalf("Create(%q) = %v", adminOpts.Location, err)
	}
	if err := as.SetupAppendOnly(ctx, s3.AppendOnlyOptions{BackupPrincipal: backupKey, RetentionDays: 1}); err != nil {
		t.Fatalf("SetupAppendOnly: %v", err)
	}
	if v, err := as.Versioned(ctx); err != nil || !v {
		t.Fatalf("Versioned after SetupAppendOnly = %v, %v; want true", v, err)
	}
	ar, err := repo.Init(ctx, retry.New(as, ropts), password, &repo.Options{AppendOnly: true})
	if err != nil {
		t.Fatalf("repo.Init: %v", err)
	}
	if !ar.AppendOnly() {
		t.Fatal("AppendOnly() = false after Init with Options.AppendOnly")
	}

	// The nightly backups, with the backup credentials.
	bs, err := s3.Open(ctx, backupOpts)
	if err != nil {
		t.Fatalf("Open with the backup credentials: %v", err)
	}
	br, err := repo.Open(ctx, retry.New(bs, ropts), password, nil)
	if err != nil {
		t.Fatalf("repo.Open with the backup credentials: %v", err)
	}
	if !br.AppendOnly() {
		t.Fatal("AppendOnly() = false after reopening")
	}
	src := archivetest.NewMailbox()
	src.AddFolder(archive.Folder{Path: "INBOX"})
	for i := range 10 {
		src.Add("INBOX", archivetest.Msg{InternalDate: time.Unix(1.7e9+int64(i)*3600, 0).UTC(), Body: body(i, 3000+i*700)})
	}
	var snaps []*repo.Snapshot
	for day := range 2 {
		src.Add("INBOX", archivetest.Msg{InternalDate: time.Unix(1.8e9+int64(day)*86400, 0).UTC(), Body: body(300+day, 200<<10)})
		snap, err := backup.Run(ctx, br, src, nil)
		if err != nil {
			t.Fatalf("day %d: backup with the backup credentials: %v", day, err)
		}
		snaps = append(snaps, snap)
		archivetest.Equal(t, src, restoreAll(t, br, snap))
	}
	if c, err := br.Check(ctx, &repo.CheckOptions{ReadData: true}); err != nil || !c.OK() {
		t.Fatalf("check --read-data with the backup credentials = %+v, %v; want clean", c, err)
	}
	// Key files and the config are the administrator's: the server
	// refuses the backup credentials' writes, planb's too.
	if _, err := br.AddKey(ctx, "second password"); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("AddKey with the backup credentials = %v, want AccessDenied", err)
	}
	// No lock is left behind: the backup user may delete its locks.
	if locks, err := br.Locks(ctx); err != nil || len(locks) != 0 {
		t.Fatalf("Locks after the backups = %v, %v; want none", locks, err)
	}

	// The thief uses the backup credentials with their own client.
	admin := rawClient(t, srv, adminOpts)
	thief := rawClient(t, srv, backupOpts)
	var objects []object
	kinds := map[string]int{}
	for info := range admin.ListObjects(ctx, srv.Bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
		if info.Err != nil {
			t.Fatalf("list: %v", info.Err)
		}
		o := object{key: info.Key, data: getObject(t, admin, srv.Bucket, info.Key, "")}
		st, err := admin.StatObject(ctx, srv.Bucket, info.Key, minio.StatObjectOptions{})
		if err != nil || st.VersionID == "" {
			t.Fatalf("StatObject(%s) = version %q, %v; want a version", info.Key, st.VersionID, err)
		}
		o.version = st.VersionID
		objects = append(objects, o)
		kind, _, _ := strings.Cut(strings.TrimPrefix(info.Key, prefix+"/"), "/")
		kinds[kind]++
	}
	for _, kind := range []string{"config", "keys", "data", "index", "snapshots"} {
		if kinds[kind] == 0 {
			t.Fatalf("no %s object in the repository (found %v)", kind, kinds)
		}
	}
	if kinds["locks"] != 0 {
		t.Fatalf("%d lock objects left", kinds["locks"])
	}
	// Nor may the thief plant key files or replace the config: 32 junk
	// key files could otherwise lock the password out, a junk config the
	// repository.
	// Nor by copying an object there, nor by a multipart upload.
	var dataKey string
	for _, o := range objects {
		if strings.HasPrefix(o.key, prefix+"/data/") {
			dataKey = o.key
		}
	}
	core := &minio.Core{Client: thief}
	for _, key := range []string{prefix + "/keys/00planted", prefix + "/config"} {
		junk := []byte("{}")
		_, err := thief.PutObject(ctx, srv.Bucket, key, bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{})
		if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
			t.Errorf("thief's PutObject(%s) = %v, want AccessDenied", key, err)
		}
		_, err = thief.CopyObject(ctx, minio.CopyDestOptions{Bucket: srv.Bucket, Object: key}, minio.CopySrcOptions{Bucket: srv.Bucket, Object: dataKey})
		if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
			t.Errorf("thief's CopyObject(%s to %s) = %v, want AccessDenied", dataKey, key, err)
		}
		if id, err := core.NewMultipartUpload(ctx, srv.Bucket, key, minio.PutObjectOptions{}); minio.ToErrorResponse(err).Code != "AccessDenied" {
			t.Errorf("thief's CreateMultipartUpload(%s) = %q, %v; want AccessDenied", key, id, err)
			if err == nil {
				part, err := core.PutObjectPart(ctx, srv.Bucket, key, id, 1, bytes.NewReader(junk), int64(len(junk)), minio.PutObjectPartOptions{})
				if err == nil {
					_, err = core.CompleteMultipartUpload(ctx, srv.Bucket, key, id, []minio.CompletePart{{PartNumber: 1, ETag: part.ETag}}, minio.PutObjectOptions{})
				}
				if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
					t.Errorf("thief's multipart upload to %s = %v, want AccessDenied", key, err)
				}
			}
		}
	}
	for _, o := range objects {
		err := thief.RemoveObject(ctx, srv.Bucket, o.key, minio.RemoveObjectOptions{})
		if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
			t.Errorf("thief's DeleteObject(%s) = %v, want AccessDenied", o.key, err)
		}
		err = thief.RemoveObject(ctx, srv.Bucket, o.key, minio.RemoveObjectOptions{VersionID: o.version, GovernanceBypass: true})
		if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
			t.Errorf("thief's DeleteObject(%s, version %s) = %v, want AccessDenied", o.key, o.version, err)
		}
		garbage := []byte("encrypted by ransomware")
		_, err = thief.PutObject(ctx, srv.Bucket, o.key, bytes.NewReader(garbage), int64(len(garbage)), minio.PutObjectOptions{})
		switch kind, _, _ := strings.Cut(strings.TrimPrefix(o.key, prefix+"/"), "/"); {
		case kind == "config" || kind == "keys":
			if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
				t.Errorf("thief's PutObject(%s) over the original = %v, want AccessDenied", o.key, err)
			}
		case err != nil:
			t.Logf("thief's PutObject(%s) = %v", o.key, err)
		default:
			if got := getObject(t, admin, srv.Bucket, o.key, ""); !bytes.Equal(got, garbage) {
				t.Errorf("after the thief's PutObject(%s) the object holds %q, want the garbage", o.key, got)
			}
		}
	}
	// A batch delete is refused object by object.
	ch := make(chan minio.ObjectInfo, len(objects))
	for _, o := range objects {
		ch <- minio.ObjectInfo{Key: o.key, VersionID: o.version}
	}
	close(ch)
	refused := 0
	for res := range thief.RemoveObjects(ctx, srv.Bucket, ch, minio.RemoveObjectsOptions{GovernanceBypass: true}) {
		if res.Err != nil {
			refused++
		}
	}
	if refused != len(objects) {
		t.Errorf("thief's DeleteObjects refused %d of %d objects, want all", refused, len(objects))
	}
	// Nor may the thief change the bucket's rules.
	if err := thief.SuspendVersioning(ctx, srv.Bucket); minio.ToErrorResponse(err).Code != "AccessDenied" {
		t.Errorf("thief's SuspendVersioning = %v, want AccessDenied", err)
	}
	if err := thief.SetBucketPolicy(ctx, srv.Bucket, ""); minio.ToErrorResponse(err).Code != "AccessDenied" {
		t.Errorf("thief's DeleteBucketPolicy = %v, want AccessDenied", err)
	}
	if err := thief.RemoveBucket(ctx, srv.Bucket); minio.ToErrorResponse(err).Code != "AccessDenied" {
		t.Errorf("thief's RemoveBucket = %v, want AccessDenied", err)
	}
	// Every original is still there, byte for byte, as a version under
	// retention: the administrator restores it as the current version
	// where the thief wrote another (not the config and key files).
	for _, o := range objects {
		if got := getObject(t, admin, srv.Bucket, o.key, o.version); !bytes.Equal(got, o.data) {
			t.Errorf("version %s of %s holds %d bytes, differing from the %d it was created with", o.version, o.key, len(got), len(o.data))
		}
		// The retention protects it even from the administrator
		// (unless they bypass governance mode explicitly).
		err := admin.RemoveObject(ctx, srv.Bucket, o.key, minio.RemoveObjectOptions{VersionID: o.version})
		if resp := minio.ToErrorResponse(err); resp.Code != "AccessDenied" || !strings.Contains(resp.Message, "object lock") {
			t.Errorf("admin's DeleteObject(%s, version %s) without bypass = %v, want refused by object lock", o.key, o.version, err)
		}
		if st, err := admin.StatObject(ctx, srv.Bucket, o.key, minio.StatObjectOptions{}); err == nil && st.VersionID == o.version {
			continue // untouched
		}
		_, err = admin.CopyObject(ctx, minio.CopyDestOptions{Bucket: srv.Bucket, Object: o.key},
			minio.CopySrcOptions{Bucket: srv.Bucket, Object: o.key, VersionID: o.version})
		if err != nil {
			t.Fatalf("restore version %s of %s: %v", o.version, o.key, err)
		}
		if got := getObject(t, admin, srv.Bucket, o.key, ""); !bytes.Equal(got, o.data) {
			t.Errorf("%s after restoring its version differs", o.key)
		}
	}

	// Even a planb that ignored the mark could not forget with the
	// backup credentials: the server refuses.
	br, err = repo.Open(ctx, retry.New(bs, ropts), password, nil)
	if err != nil {
		t.Fatalf("repo.Open with the backup credentials after the restore: %v", err)
	}
	err = br.Forget(ctx, []dedup.ID{snaps[0].ID})
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("Forget with the backup credentials = %v, want AccessDenied", err)
	}
	if _, err := bs.Stat(ctx, backend.Handle{Type: backend.SnapshotFile, Name: snaps[0].ID.String()}); err != nil {
		t.Errorf("snapshot %s after the refused forget: %v", snaps[0].ID.Short(), err)
	}

	// The administrator forgets and prunes.
	ar, err = repo.Open(ctx, retry.New(as, ropts), password, nil)
	if err != nil {
		t.Fatalf("repo.Open with the admin credentials: %v", err)
	}
	if err := ar.Forget(ctx, []dedup.ID{snaps[0].ID}); err != nil {
		t.Fatalf("Forget with the admin credentials: %v", err)
	}
	rep, err := ar.Prune(ctx, nil)
	if err != nil {
		t.Fatalf("Prune with the admin credentials: %v", err)
	}
	t.Logf("prune: %+v", rep)
	if rep.RemovedPacks+rep.RepackedPacks == 0 {
		t.Errorf("Prune = %+v, want the forgotten day's pack removed or repacked", rep)
	}
	ar, err = repo.Open(ctx, retry.New(as, ropts), password, nil)
	if err != nil {
		t.Fatalf("repo.Open after prune: %v", err)
	}
	c, err := ar.Check(ctx, &repo.CheckOptions{ReadData: true})
	if err != nil || !c.OK() || len(c.Unreferenced) != 0 {
		t.Errorf("check --read-data after prune = %+v, %v; want clean", c, err)
	}
	left, err := ar.Snapshots(ctx)
	if err != nil || len(left) != 1 || left[0].ID != snaps[1].ID {
		t.Fatalf("Snapshots after prune = %v, %v; want only %v", left, err, snaps[1].ID)
	}
	archivetest.Equal(t, src, restoreAll(t, ar, left[0]))
}

// rawClient returns a minio-go client with the credentials of opts, as any
// S3 tool would make one.
func rawClient(t *testing.T, srv *s3test.Server, opts s3.Options) *minio.Client {
	t.Helper()
	c, err := minio.New(srv.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(opts.AccessKeyID, opts.SecretAccessKey, ""),
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// getObject returns the content of a version of an object ("" for the
// current one).
func getObject(t *testing.T, c *minio.Client, bucket, key, version string) []byte {
	t.Helper()
	obj, err := c.GetObject(t.Context(), bucket, key, minio.GetObjectOptions{VersionID: version})
	if err != nil {
		t.Fatalf("GetObject(%s, %q) = %v", key, version, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("GetObject(%s, %q): read: %v", key, version, err)
	}
	return b
}
