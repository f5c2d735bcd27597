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
)

// s3Settings holds the global flags of S3 repositories.
type s3Settings struct {
	Region            string
	PathStyle         bool
	InsecurePlaintext bool
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
	}
}

// isS3 reports whether a --repo value names an S3 repository.
func isS3(repo string) bool { return strings.HasPrefix(repo, "s3:") }

// s3Options builds the options of the S3 repository g.Repo. The
// credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with
// AWS_SESSION_TOKEN), else from the shared credentials file
// (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile AWS_PROFILE
// or "default"), else none: the requests are anonymous.
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
	return retry.New(s, retry.Options{Logger: g.logger}), nil
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
