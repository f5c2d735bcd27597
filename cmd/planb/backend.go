package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/backend/retry"
	"codeberg.org/planb/planb/archive/backend/s3"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/repo"
)

// s3Settings holds the global flags of S3 repositories, and whether the
// command runs as the administrator of an append-only repository.
type s3Settings struct {
	Region            string
	PathStyle         bool
	InsecurePlaintext bool
	AdminProfile      string

	// Admin is set by the commands that delete (forget, prune, key
	// remove, ...) when given --admin: on S3 they then use the admin
	// credentials.
	Admin bool
}

// Environment variables of an append-only S3 repository's admin
// credentials.
const (
	envAdminAccessKey = "PLANB_ADMIN_AWS_ACCESS_KEY_ID"
	envAdminSecretKey = "PLANB_ADMIN_AWS_SECRET_ACCESS_KEY"
	envAdminToken     = "PLANB_ADMIN_AWS_SESSION_TOKEN"
)

// adminFlag returns the --admin flag of the commands that delete or
// rewrite, and of key add.
func adminFlag() cli.Flag {
	return &cli.BoolFlag{Name: "admin",
		Usage: "act as the administrator of an append-only repository (on S3 with the admin credentials of " +
			envAdminAccessKey + " and " + envAdminSecretKey + ", or --s3-admin-profile)"}
}

// kdfFlag is --kdf of the commands that write a key file.
func kdfFlag() cli.Flag {
	d := crypto.DefaultKDF()
	return &cli.StringFlag{Name: "kdf",
		Usage: "argon2id parameters `m=MEMORY_KIB,t=PASSES,p=LANES` of the new key file (default " + d.String() +
			"; key files written before December 2026 have m=65536,t=3,p=2)"}
}

// setKDF reads --kdf into g, for the key file the command writes.
func (g *globalOptions) setKDF(c *cli.Context) error {
	if !c.IsSet("kdf") {
		return nil
	}
	p, err := crypto.ParseKDF(c.String("kdf"))
	if err != nil {
		return usageErrorf("%s: --kdf: %v", c.Command.HelpName, err)
	}
	g.kdf = &p
	return nil
}

// refuseAppendOnly returns the error of a command op that deletes or
// rewrites files, or writes key files, when the repository is append-only and the command runs
// without --admin; nil otherwise. On a local disk the refusal is advisory:
// --admin lifts it. On S3 --admin has switched to the admin credentials
// already (s3Options), and the server, not this check, stops anyone else.
func (g *globalOptions) refuseAppendOnly(r *repo.Repository, op string) error {
	if !r.AppendOnly() || g.S3.Admin {
		return nil
	}
	if isS3(g.Repo) {
		return fmt.Errorf("repository is append-only: %s needs --admin and the admin credentials (%s and %s, or --s3-admin-profile)",
			op, envAdminAccessKey, envAdminSecretKey)
	}
	return fmt.Errorf("repository is append-only: %s needs --admin", op)
}

// s3Flags returns the global flags that configure S3 repositories.
func s3Flags(s *s3Settings) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "s3-region", EnvVars: []string{"PLANB_S3_REGION"},
			Usage: "the S3 bucket's `REGION` (default: ask the server)", Destination: &s.Region},
		&cli.BoolFlag{Name: "s3-path-style", EnvVars: []string{"PLANB_S3_PATH_STYLE"},
			Usage: "name the bucket in the URL's path, not in the host name (MinIO, Garage, versitygw)", Destination: &s.PathStyle},
		&cli.BoolFlag{Name: "s3-insecure-plaintext",
			Usage: "allow an s3:http:// repository: requests travel without TLS", Destination: &s.InsecurePlaintext},
		&cli.StringFlag{Name: "s3-admin-profile", EnvVars: []string{"PLANB_S3_ADMIN_PROFILE"},
			Usage: "with --admin, take the admin credentials from `PROFILE` of the shared credentials file", Destination: &s.AdminProfile},
	}
}

// isS3 reports whether a --repo value names an S3 repository.
func isS3(repo string) bool { return strings.HasPrefix(repo, "s3:") }

// s3Options builds the options of the S3 repository g.Repo. The
// credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with
// AWS_SESSION_TOKEN), else from the shared credentials file
// (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile AWS_PROFILE
// or "default"), else none: the requests are anonymous. With g.S3.Admin
// they are the admin credentials instead: PLANB_ADMIN_AWS_ACCESS_KEY_ID and
// PLANB_ADMIN_AWS_SECRET_ACCESS_KEY (with PLANB_ADMIN_AWS_SESSION_TOKEN),
// else the profile --s3-admin-profile of the shared credentials file; one
// of them must be given.
func (g *globalOptions) s3Options() (s3.Options, error) {
	loc, err := s3.ParseLocation(g.Repo)
	if err != nil {
		return s3.Options{}, usageErrorf("--repo: %v", strings.TrimPrefix(err.Error(), "parse s3 location "))
	}
	if loc.Scheme == "http" && !g.S3.InsecurePlaintext {
		return s3.Options{}, usageErrorf("--repo %s: plain http needs --s3-insecure-plaintext (data is encrypted, but requests travel without TLS)", g.Repo)
	}
	opts := s3.Options{
		Location:          g.Repo,
		Region:            g.S3.Region,
		InsecurePlaintext: g.S3.InsecurePlaintext,
		Logger:            g.logger,
	}
	if g.S3.PathStyle {
		opts.Addressing = s3.AddressingPath
	}
	if g.S3.Admin {
		if err := adminCredentials(&opts, g.S3.AdminProfile); err != nil {
			return s3.Options{}, err
		}
		return opts, nil
	}
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	switch {
	case id != "" && secret != "":
		opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken = id, secret, os.Getenv("AWS_SESSION_TOKEN")
	case id != "" || secret != "":
		return s3.Options{}, usageErrorf("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
	default:
		v, err := credentials.NewFileAWSCredentials("", "").Get()
		if err == nil && v.AccessKeyID != "" && v.SecretAccessKey != "" {
			opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken = v.AccessKeyID, v.SecretAccessKey, v.SessionToken
		} else if file := os.Getenv("AWS_SHARED_CREDENTIALS_FILE"); file != "" {
			// The user named a file: not finding credentials in it is
			// a mistake, not a wish for anonymous requests.
			if err == nil {
				err = errors.New("no access key in profile")
			}
			return s3.Options{}, fmt.Errorf("read S3 credentials from %s: %w", file, err)
		}
	}
	return opts, nil
}

// adminCredentials sets the admin credentials in opts, from the
// environment or else from profile.
func adminCredentials(opts *s3.Options, profile string) error {
	id, secret := os.Getenv(envAdminAccessKey), os.Getenv(envAdminSecretKey)
	switch {
	case id != "" && secret != "":
		opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken = id, secret, os.Getenv(envAdminToken)
		return nil
	case id != "" || secret != "":
		return usageErrorf("set both %s and %s, or neither", envAdminAccessKey, envAdminSecretKey)
	case profile == "":
		return usageErrorf("--admin on S3 needs the admin credentials: set %s and %s, or --s3-admin-profile", envAdminAccessKey, envAdminSecretKey)
	}
	v, err := credentials.NewFileAWSCredentials("", profile).Get()
	if err == nil && (v.AccessKeyID == "" || v.SecretAccessKey == "") {
		err = errors.New("no access key in profile")
	}
	if err != nil {
		return fmt.Errorf("read the admin credentials from profile %q of the shared credentials file: %w", profile, err)
	}
	opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken = v.AccessKeyID, v.SecretAccessKey, v.SessionToken
	return nil
}

// openBackend opens (or with create, creates) the storage of the
// repository named by --repo: a local folder, or an S3 location
// "s3:https://HOST/BUCKET/PREFIX". An S3 backend is wrapped so that
// transient failures are retried with backoff; opening it is tried once,
// so that a wrong endpoint fails at once.
func (g *globalOptions) openBackend(ctx context.Context, create bool) (backend.Backend, error) {
	if g.Repo == "" {
		return nil, usageErrorf("no repository: set --repo or PLANB_REPOSITORY")
	}
	if !isS3(g.Repo) {
		if create {
			return local.Create(ctx, g.Repo)
		}
		be, err := local.Open(ctx, g.Repo)
		if err != nil {
			if errors.Is(err, backend.ErrNotExist) || errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: %s", errNoRepository, g.Repo)
			}
			return nil, err
		}
		return be, nil
	}
	s, err := g.openS3(ctx, create)
	if err != nil {
		return nil, err
	}
	return g.retryS3(s), nil
}

// openS3 opens (or with create, creates) the S3 repository named by
// --repo, without the retry wrapper.
func (g *globalOptions) openS3(ctx context.Context, create bool) (*s3.S3, error) {
	opts, err := g.s3Options()
	if err != nil {
		return nil, err
	}
	var s *s3.S3
	if create {
		s, err = s3.Create(ctx, opts)
	} else {
		s, err = s3.Open(ctx, opts)
	}
	if err != nil {
		return nil, s3Error(g.Repo, err)
	}
	return s, nil
}

// retryS3 wraps s so that transient failures are retried with backoff.
func (g *globalOptions) retryS3(s *s3.S3) backend.Backend {
	return retry.New(s, retry.Options{Logger: g.logger})
}

// s3Error words the failure to open an S3 repository for the user.
func s3Error(repo string, err error) error {
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.Is(err, backend.ErrNotExist):
		return fmt.Errorf("%w: %s", errNoRepository, repo)
	case errors.As(err, &dns):
		return fmt.Errorf("cannot reach the S3 server of %s: %w", repo, dns)
	case errors.As(err, &op):
		return fmt.Errorf("cannot reach the S3 server of %s: %w", repo, op)
	}
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return err
	}
	what := ""
	switch resp.Code {
	case "InvalidAccessKeyId", "XAdminUserNotFound":
		what = "wrong S3 credentials: the server knows no such access key"
	case "SignatureDoesNotMatch":
		what = "wrong S3 credentials: the secret key does not match the access key"
	case "AccessDenied":
		what = "S3 access denied"
	case "NoSuchBucket":
		what = "no such S3 bucket"
	default:
		return err
	}
	return fmt.Errorf("%s (%s, HTTP %d): %s", what, resp.Code, resp.StatusCode, repo)
}
