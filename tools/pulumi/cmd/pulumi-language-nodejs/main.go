// Command pulumi-language-nodejs is Stackrail's own, minimal Node.js language host for the Pulumi
// engine.
//
// Why it exists: the official host (module github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3)
// is not served by the Go module proxy this project builds from (every version answers 403), and
// without a `pulumi-language-nodejs` plugin next to the CLI the bare CLI cannot run a
// `runtime: nodejs` project. Automation API inline programs do not need it (the CLI talks to the
// in-process language server over --client), but `pulumi up` on a Pulumi.yaml, and Node.js policy
// packs loaded through the language runtime, do.
//
// It is written from the LanguageRuntime gRPC contract in sdk/v3/proto and the command-line
// contract of @pulumi/pulumi's own runners (cmd/run, cmd/run-plugin, cmd/run-policy-pack); the
// heavy lifting (connecting to the resource monitor, serialising resources, running policies)
// stays in the Node SDK, exactly as with the official host.
//
// What it does, and where it differs from the official host:
//   - GetRequiredPackages/GetRequiredPlugins report the resource plugins that the program's
//     installed dependencies declare (pulumi-plugin.json, or package.json's "pulumi" field),
//     walking from the program's package.json through node_modules as Node resolves them
//     (deps.go).
//   - GetProgramDependencies (`pulumi about`) lists package.json's dependencies with the versions
//     the lockfile resolved, or else the installed ones (deps.go).
//   - InstallDependencies (`pulumi install`, `pulumi new`) runs `npm ci` when the program has a
//     lockfile and `npm install` otherwise (install.go). npm only: another `packagemanager` is
//     refused with an error that says so.
//   - TypeScript runs on Node 24 itself with --experimental-transform-types (enums, namespaces and
//     parameter properties too, not only erasable syntax; PULUMI_NODEJS_TYPESCRIPT is "false").
//     Set the runtime option `typescript: true` to get the SDK's ts-node path instead.
//   - No debugger attach, no program generation, no packing, no conformance-test hooks.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Exit code with which @pulumi/pulumi's runners say "the error was already reported to the user
// through the engine's log": the host must then bail without adding a message of its own.
const exitCodeErrorAlreadyReported = 32

// options holds what the engine (or a person) passed on the command line.
type options struct {
	engineAddress string
	tracing       string
	root          string
	logToStderr   bool
	verbose       int
}

// parseArgs reads the engine's command line: optional flags (--logtostderr, -v=N, --tracing URL,
// and -root DIR), then the engine's gRPC address as the first positional argument. Flags it does
// not know are skipped rather than fatal, so a newer engine passing something new still works.
func parseArgs(args []string) options {
	var opts options
	var positional []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			positional = append(positional, arg)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		takeValue := func() string {
			if hasValue {
				return value
			}
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch name {
		case "tracing":
			opts.tracing = takeValue()
		case "root":
			opts.root = takeValue()
		case "logtostderr":
			opts.logToStderr = !hasValue || value == "true"
		case "v":
			if n, err := strconv.Atoi(value); err == nil {
				opts.verbose = n
			}
		default:
			// Unknown flag: ignored. Without "=value" it is taken as a boolean switch.
		}
	}
	if len(positional) > 0 {
		opts.engineAddress = positional[0]
	}
	return opts
}

func main() {
	opts := parseArgs(os.Args[1:])
	logging.InitLogging(opts.logToStderr, opts.verbose, false)
	if opts.tracing != "" {
		cmdutil.InitTracing("pulumi-language-nodejs", "pulumi-language-nodejs", opts.tracing)
		defer cmdutil.CloseTracing()
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Stop serving when the engine goes away, so a crashed CLI does not leave this process behind.
	if opts.engineAddress != "" {
		if err := rpcutil.Healthcheck(ctx, opts.engineAddress, 5*time.Minute, cancel); err != nil {
			fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: could not start the engine health check: %v\n", err)
			os.Exit(1)
		}
	}

	host := newHost(opts)
	stop := make(chan bool)
	go func() {
		<-ctx.Done()
		close(stop)
	}()
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: stop,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: could not start the gRPC server: %v\n", err)
		os.Exit(1)
	}

	// Like every Pulumi plugin: the first line on stdout is the port the engine should dial.
	fmt.Printf("%d\n", handle.Port)

	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: %v\n", err)
		os.Exit(1)
	}
}

// nodeHost implements pulumirpc.LanguageRuntimeServer for Node.js programs.
type nodeHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	mu            sync.Mutex
	engineAddress string
	root          string
}

func newHost(opts options) *nodeHost {
	return &nodeHost{engineAddress: opts.engineAddress, root: opts.root}
}

func (h *nodeHost) engine() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.engineAddress
}

// Handshake records the engine address and root directory the engine sends (it is only sent when
// the engine attaches to an already running host; a launched host got them on its command line).
func (h *nodeHost) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	if req.RootDirectory != nil && *req.RootDirectory != "" {
		h.root = *req.RootDirectory
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

// GetPluginInfo reports the version stamped into the build (-X .../common/version.Version=v3.x.y),
// i.e. the engine version this host was built with.
func (h *nodeHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

// GetRequiredPlugins is the older form of GetRequiredPackages, kept for engines that still ask it.
func (h *nodeHost) GetRequiredPlugins(
	_ context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	dir := firstNonEmpty(req.GetInfo().GetProgramDirectory(), req.GetPwd())
	packages, err := requiredPackages(dir)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading the dependencies of %s: %v", dir, err)
	}
	plugins := make([]*pulumirpc.PluginDependency, 0, len(packages))
	for _, p := range packages {
		if p.Parameterization == nil && p.Extension == nil {
			plugins = append(plugins, &pulumirpc.PluginDependency{
				Name: p.Name, Kind: p.Kind, Version: p.Version, Server: p.Server,
			})
		}
	}
	return &pulumirpc.GetRequiredPluginsResponse{Plugins: plugins}, nil
}

// GetRequiredPackages reports the resource plugins the program's installed packages declare; the
// engine installs the missing ones before a run (and `pulumi install` does).
func (h *nodeHost) GetRequiredPackages(
	_ context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	dir := req.GetInfo().GetProgramDirectory()
	packages, err := requiredPackages(dir)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading the dependencies of %s: %v", dir, err)
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: packages}, nil
}

// GetProgramDependencies lists the program's npm dependencies and their resolved versions for
// `pulumi about` (all installed packages with --transitive).
func (h *nodeHost) GetProgramDependencies(
	_ context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	dir := firstNonEmpty(req.GetInfo().GetProgramDirectory(), req.GetPwd())
	deps, err := programDependencies(dir, req.GetTransitiveDependencies())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading the dependencies of %s: %v", dir, err)
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}

// RuntimeOptionsPrompts asks nothing extra during `pulumi new`.
func (h *nodeHost) RuntimeOptionsPrompts(
	context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

// About reports the Node.js binary that programs run on and its version.
func (h *nodeHost) About(context.Context, *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	node, err := findNode()
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "running %s --version: %v", node, err)
	}
	return &pulumirpc.AboutResponse{
		Executable: node,
		Version:    strings.TrimPrefix(strings.TrimSpace(string(out)), "v"),
	}, nil
}

// Run executes a Pulumi program: `node [nodeargs] <@pulumi/pulumi>/cmd/run <flags> <entry point> [args]`,
// with the configuration in PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS. The program's stdout and
// stderr go to this process's, which the engine shows to the user. A failing program is reported in
// the response (Error, or Bail when the SDK already logged the error), not as a gRPC error.
func (h *nodeHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	programDir := firstNonEmpty(info.GetProgramDirectory(), req.GetPwd())
	if programDir == "" {
		var err error
		if programDir, err = os.Getwd(); err != nil {
			return nil, err
		}
	}
	rootDir := firstNonEmpty(info.GetRootDirectory(), programDir)
	entryPoint := firstNonEmpty(info.GetEntryPoint(), req.GetProgram(), ".")

	node, err := findNode()
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	runner, err := findSDKCommand("run", programDir, rootDir, h.root)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	runtimeOptions := info.GetOptions().AsMap()

	args := nodeArgs(runtimeOptions)
	args = append(args, runner,
		"--monitor="+req.GetMonitorAddress(),
		"--project="+req.GetProject(),
		"--stack="+req.GetStack(),
		"--pwd="+programDir,
		"--root-directory="+rootDir,
	)
	if engine := h.engine(); engine != "" {
		args = append(args, "--engine="+engine)
	}
	if org := req.GetOrganization(); org != "" {
		args = append(args, "--organization="+org)
	}
	if req.GetParallel() > 0 {
		args = append(args, "--parallel="+strconv.Itoa(int(req.GetParallel())))
	}
	if req.GetDryRun() {
		args = append(args, "--dry-run")
	}
	if cmdutil.TracingEndpoint != "" {
		args = append(args, "--tracing="+cmdutil.TracingEndpoint)
	}
	args = append(args, entryPoint)
	args = append(args, req.GetArgs()...)

	env, err := programEnv(req, runtimeOptions)
	if err != nil {
		return nil, err
	}

	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = programDir
	cmd.Env = env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	// If the engine cancels the run, ask Node to stop before killing it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	logging.V(5).Infof("Run: %s %s (in %s)", node, strings.Join(args, " "), programDir)

	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			switch code := exitErr.ExitCode(); code {
			case exitCodeErrorAlreadyReported:
				return &pulumirpc.RunResponse{Bail: true}, nil
			case -1:
				return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program was terminated: %v", exitErr)}, nil
			default:
				return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", code)}, nil
			}
		}
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Problem executing program (could not run %s): %v", node, err)}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// programEnv is this process's environment plus what @pulumi/pulumi's runner reads from it.
func programEnv(req *pulumirpc.RunRequest, runtimeOptions map[string]any) ([]string, error) {
	config := req.GetConfig()
	if config == nil {
		config = map[string]string{}
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("encoding the stack configuration: %w", err)
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretKeysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("encoding the secret configuration keys: %w", err)
	}

	env := append(os.Environ(),
		"PULUMI_CONFIG="+string(configJSON),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeysJSON),
	)
	typescript := "false"
	if v, ok := runtimeOptions["typescript"].(bool); ok && v {
		typescript = "true"
	}
	env = append(env, "PULUMI_NODEJS_TYPESCRIPT="+typescript)
	if tsconfig, ok := runtimeOptions["tsconfig"].(string); ok && tsconfig != "" {
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+tsconfig)
	}
	return env, nil
}

// RunPlugin runs a plugin written in Node.js: a policy pack (kind "analyzer", through
// @pulumi/pulumi/cmd/run-policy-pack with `<engine address> <pack dir>`) or a provider or other
// plugin (through cmd/run-plugin with `<plugin dir> -- <engine args>`). Output is streamed back,
// then the exit code.
func (h *nodeHost) RunPlugin(
	req *pulumirpc.RunPluginRequest, server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	info := req.GetInfo()
	programDir := firstNonEmpty(info.GetProgramDirectory(), req.GetPwd())
	if programDir == "" {
		return status.Error(codes.InvalidArgument, "RunPlugin: no program directory")
	}
	program := programDir
	if entry := info.GetEntryPoint(); entry != "" && entry != "." {
		program = filepath.Join(programDir, entry)
	}

	node, err := findNode()
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}

	runtimeOptions := info.GetOptions().AsMap()
	args := nodeArgs(runtimeOptions)
	if req.GetKind() == "analyzer" {
		runner, err := findSDKCommand("run-policy-pack", programDir, info.GetRootDirectory(), h.root)
		if err != nil {
			return status.Error(codes.FailedPrecondition, err.Error())
		}
		engine := lastPositional(req.GetArgs())
		if engine == "" {
			engine = h.engine()
		}
		args = append(args, runner, engine, program)
	} else {
		runner, err := findSDKCommand("run-plugin", programDir, info.GetRootDirectory(), h.root)
		if err != nil {
			return status.Error(codes.FailedPrecondition, err.Error())
		}
		args = append(args, runner, program, "--")
		args = append(args, req.GetArgs()...)
	}

	env := req.GetEnv()
	if len(env) == 0 {
		env = os.Environ()
	}

	out := &streamSender{server: server}
	cmd := exec.CommandContext(server.Context(), node, args...)
	cmd.Dir = programDir
	cmd.Env = env
	cmd.Stdout = writerFunc(out.stdout)
	cmd.Stderr = writerFunc(out.stderr)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	logging.V(5).Infof("RunPlugin: %s %s (in %s)", node, strings.Join(args, " "), programDir)

	if err := cmd.Start(); err != nil {
		return status.Errorf(codes.Internal, "starting %s: %v", node, err)
	}
	exitCode := int32(0)
	if err := cmd.Wait(); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			if server.Context().Err() != nil {
				return nil // the engine closed the plugin; nobody is listening any more
			}
			return status.Errorf(codes.Internal, "waiting for %s: %v", node, err)
		}
		exitCode = int32(exitErr.ExitCode())
	}
	if server.Context().Err() != nil {
		return nil
	}
	return out.send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: exitCode}})
}

// streamSender serialises sends on a gRPC stream: stdout and stderr are copied by two goroutines,
// and a gRPC stream must not be sent on concurrently.
type streamSender struct {
	mu     sync.Mutex
	server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse]
}

func (s *streamSender) send(msg *pulumirpc.RunPluginResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.server.Send(msg)
}

func (s *streamSender) stdout(b []byte) error {
	return s.send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: clone(b)}})
}

func (s *streamSender) stderr(b []byte) error {
	return s.send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: clone(b)}})
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

type writerFunc func([]byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

var _ io.Writer = writerFunc(nil)

// findNode returns the Node.js binary programs run on: $PULUMI_NODEJS_NODE if set, else `node` on
// PATH (Stackrail's runners put the project's own Node 24 first), else the project's Node found
// relative to this binary (<root>/.engine/pulumi-vX/bin/ -> <root>/node_modules/.bin/node, which npm
// links to the platform's node-<os>-<arch> package).
func findNode() (string, error) {
	if node := os.Getenv("PULUMI_NODEJS_NODE"); node != "" {
		return node, nil
	}
	if node, err := exec.LookPath("node"); err == nil {
		return node, nil
	}
	if exe, err := os.Executable(); err == nil {
		candidate := filepath.Join(filepath.Dir(exe), "..", "..", "..", "node_modules", ".bin", "node")
		if st, err := os.Stat(candidate); err == nil && !st.IsDir() {
			return filepath.Clean(candidate), nil
		}
	}
	return "", errors.New("could not find Node.js: set PULUMI_NODEJS_NODE or put node on PATH " +
		"(Stackrail runs on node_modules/.bin/node)")
}

// findSDKCommand finds <dir>/node_modules/@pulumi/pulumi/cmd/<name>, walking up from each start
// directory in turn, the way Node's module resolution would from the program.
func findSDKCommand(name string, starts ...string) (string, error) {
	for _, start := range starts {
		if start == "" {
			continue
		}
		dir, err := filepath.Abs(start)
		if err != nil {
			continue
		}
		for {
			candidate := filepath.Join(dir, "node_modules", "@pulumi", "pulumi", "cmd", name)
			if st, err := os.Stat(filepath.Join(candidate, "index.js")); err == nil && !st.IsDir() {
				return candidate, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("could not find @pulumi/pulumi/cmd/%s from %s: is @pulumi/pulumi installed (npm ci)?",
		name, strings.Join(nonEmpty(starts), ", "))
}

// nodeArgs returns Node's flags for a program or plugin: full TypeScript support unless the
// project chose the SDK's ts-node path (`typescript: true`), then the `nodeargs` runtime option,
// split on whitespace (later flags win, so `nodeargs: --no-experimental-transform-types` goes back
// to Node's default, type stripping only).
func nodeArgs(runtimeOptions map[string]any) []string {
	var args []string
	if ts, ok := runtimeOptions["typescript"].(bool); !ok || !ts {
		// Node 24 only strips types by default, which rejects enums, namespaces and parameter
		// properties ("not supported in strip-only mode"); transforming supports all of TypeScript.
		// Its ExperimentalWarning on every run is the host's choice, not something an operator
		// can act on, so it is not shown.
		args = append(args, "--experimental-transform-types", "--disable-warning=ExperimentalWarning")
	}
	if s, ok := runtimeOptions["nodeargs"].(string); ok {
		args = append(args, strings.Fields(s)...)
	}
	return args
}

// lastPositional returns the last argument that is neither a flag nor a flag's value; for plugins
// the engine passes [--logtostderr] [-v=N] [--tracing URL] <engine address>.
func lastPositional(args []string) string {
	last := ""
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if strings.HasPrefix(arg, "-") {
			if (arg == "--tracing" || arg == "-tracing") && i+1 < len(args) {
				i++
			}
			continue
		}
		last = arg
	}
	return last
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func nonEmpty(values []string) []string {
	var out []string
	for _, v := range values {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
