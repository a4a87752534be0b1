package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// installSender streams an install's output back to the engine, which prints it (`pulumi install`,
// `pulumi new`). Sends are serialised: stdout and stderr are copied by two goroutines.
type installSender struct {
	mu     sync.Mutex
	server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse]
}

func (s *installSender) send(msg *pulumirpc.InstallDependenciesResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.server.Send(msg)
}

func (s *installSender) stdout(b []byte) error {
	return s.send(&pulumirpc.InstallDependenciesResponse{Stdout: clone(b)})
}

func (s *installSender) stderr(b []byte) error {
	return s.send(&pulumirpc.InstallDependenciesResponse{Stderr: clone(b)})
}

// installCommand says how the dependencies of dir are installed: `npm ci` when a lockfile is there
// (exactly what it pins, and it fails rather than changing it), else `npm install`.
func installCommand(dir string) []string {
	for _, lock := range []string{"npm-shrinkwrap.json", "package-lock.json"} {
		if _, err := os.Stat(filepath.Join(dir, lock)); err == nil {
			return []string{"ci"}
		}
	}
	return []string{"install"}
}

// InstallDependencies installs a program's (or policy pack's) npm dependencies in its directory,
// for `pulumi install` and `pulumi new`: `npm ci` with a lockfile, `npm install` without. Only npm
// is supported; a project that asks for another package manager gets an error saying so rather
// than a silent success.
func (h *nodeHost) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest, server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	info := req.GetInfo()
	dir := firstNonEmpty(info.GetProgramDirectory(), req.GetDirectory())
	if dir == "" {
		return status.Error(codes.InvalidArgument, "InstallDependencies: no program directory")
	}
	out := &installSender{server: server}

	if pm, ok := info.GetOptions().AsMap()["packagemanager"].(string); ok && pm != "" && pm != "npm" {
		return status.Errorf(codes.Unimplemented,
			"Stackrail's Node.js language host installs dependencies with npm only; this project asks for %q: "+
				"install its dependencies with %s yourself, or remove the packagemanager option", pm, pm)
	}
	if _, err := os.Stat(filepath.Join(dir, "package.json")); errors.Is(err, fs.ErrNotExist) {
		return out.stdout([]byte(fmt.Sprintf("No package.json in %s: no npm dependencies to install.\n", dir)))
	} else if err != nil {
		return status.Errorf(codes.Internal, "reading %s: %v", filepath.Join(dir, "package.json"), err)
	}

	npm, err := exec.LookPath("npm")
	if err != nil {
		return status.Errorf(codes.FailedPrecondition,
			"npm is not on PATH, so the dependencies in %s were not installed: install them with npm yourself", dir)
	}
	args := installCommand(dir)
	if err := out.stdout([]byte(fmt.Sprintf("Installing dependencies with `npm %s` in %s\n",
		strings.Join(args, " "), dir))); err != nil {
		return err
	}

	cmd := exec.CommandContext(server.Context(), npm, args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	cmd.Stdout = writerFunc(out.stdout)
	cmd.Stderr = writerFunc(out.stderr)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	logging.V(5).Infof("InstallDependencies: %s %s (in %s)", npm, strings.Join(args, " "), dir)
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return status.Errorf(codes.Unknown, "`npm %s` in %s failed with exit code %d",
				strings.Join(args, " "), dir, exitErr.ExitCode())
		}
		return status.Errorf(codes.Internal, "running `npm %s` in %s: %v", strings.Join(args, " "), dir, err)
	}
	return nil
}
