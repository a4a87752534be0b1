package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// packageJSON is the part of a package.json this host reads.
type packageJSON struct {
	Name                 string                   `json:"name"`
	Version              string                   `json:"version"`
	Dependencies         map[string]string        `json:"dependencies"`
	DevDependencies      map[string]string        `json:"devDependencies"`
	OptionalDependencies map[string]string        `json:"optionalDependencies"`
	Pulumi               *plugin.PulumiPluginJSON `json:"pulumi"`
}

// declared returns every dependency the package names, with the range it asks for. A name listed
// in more than one section keeps the first: dependencies, then optional, then dev (npm's own order).
func (p *packageJSON) declared() map[string]string {
	out := map[string]string{}
	for _, section := range []map[string]string{p.Dependencies, p.OptionalDependencies, p.DevDependencies} {
		for name, spec := range section {
			if _, seen := out[name]; !seen {
				out[name] = spec
			}
		}
	}
	return out
}

func readPackageJSON(file string) (*packageJSON, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var pkg packageJSON
	if err := json.Unmarshal(b, &pkg); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &pkg, nil
}

// packageLock is the part of an npm lockfile (v2 or v3, "packages" map) this host reads.
type packageLock struct {
	Packages map[string]struct {
		Version  string `json:"version"`
		Resolved string `json:"resolved"`
		Link     bool   `json:"link"`
	} `json:"packages"`
}

// readPackageLock reads npm-shrinkwrap.json or package-lock.json in dir (npm's order of precedence);
// nil when there is neither.
func readPackageLock(dir string) (*packageLock, error) {
	for _, name := range []string{"npm-shrinkwrap.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var lock packageLock
		if err := json.Unmarshal(b, &lock); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
		}
		return &lock, nil
	}
	return nil, nil
}

// version returns the version the lockfile resolved for the top-level dependency name ("" when it
// does not list it). A `file:` dependency is a link entry whose version sits on its target's entry.
func (l *packageLock) version(name string) string {
	if l == nil {
		return ""
	}
	entry, ok := l.Packages["node_modules/"+name]
	if !ok {
		return ""
	}
	if entry.Link && entry.Version == "" {
		return l.Packages[entry.Resolved].Version
	}
	return entry.Version
}

// all returns every installed package the lockfile lists (name and version, deduplicated), for
// `pulumi about --transitive`.
func (l *packageLock) all() []*pulumirpc.DependencyInfo {
	seen := map[string]bool{}
	var out []*pulumirpc.DependencyInfo
	for key, entry := range l.Packages {
		i := strings.LastIndex(key, "node_modules/")
		if i < 0 {
			continue // the root package, or a link target outside node_modules (listed under its link)
		}
		name := key[i+len("node_modules/"):]
		version := entry.Version
		if entry.Link && version == "" {
			version = l.Packages[entry.Resolved].Version
		}
		if id := name + "@" + version; !seen[id] {
			seen[id] = true
			out = append(out, &pulumirpc.DependencyInfo{Name: name, Version: version})
		}
	}
	return out
}

// resolvePackage finds the folder of package name as Node's resolution would from dir: the first
// <ancestor>/node_modules/<name>/package.json walking up. ("", nil) when it is not installed.
func resolvePackage(name, dir string) (string, *packageJSON, error) {
	for {
		candidate := filepath.Join(dir, "node_modules", filepath.FromSlash(name))
		pkg, err := readPackageJSON(filepath.Join(candidate, "package.json"))
		if err == nil {
			return candidate, pkg, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", nil, err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", nil, nil
		}
		dir = parent
	}
}

// programPackage reads the package.json of the program directory; nil when there is none (a
// plain JavaScript file needs none).
func programPackage(programDir string) (*packageJSON, error) {
	pkg, err := readPackageJSON(filepath.Join(programDir, "package.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return pkg, err
}

// programDependencies lists the program's declared dependencies with the versions installed for
// them: the lockfile's (package-lock.json or npm-shrinkwrap.json next to package.json) when it has
// one, else the installed package's, else the declared range. With transitive, every package the
// lockfile lists, or else every installed package reachable from the declared ones.
func programDependencies(programDir string, transitive bool) ([]*pulumirpc.DependencyInfo, error) {
	pkg, err := programPackage(programDir)
	if err != nil || pkg == nil {
		return nil, err
	}
	lock, err := readPackageLock(programDir)
	if err != nil {
		return nil, err
	}
	var out []*pulumirpc.DependencyInfo
	switch {
	case transitive && lock != nil:
		out = lock.all()
	case transitive:
		err = walkInstalled(pkg, programDir, func(_ string, dep *packageJSON) error {
			out = append(out, &pulumirpc.DependencyInfo{Name: dep.Name, Version: dep.Version})
			return nil
		})
	default:
		for name, spec := range pkg.declared() {
			version := lock.version(name)
			if version == "" {
				if _, installed, rerr := resolvePackage(name, programDir); rerr != nil {
					return nil, rerr
				} else if installed != nil {
					version = installed.Version
				} else {
					version = spec
				}
			}
			out = append(out, &pulumirpc.DependencyInfo{Name: name, Version: version})
		}
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// walkInstalled visits every installed package reachable from root's declared dependencies once
// (resolved the way Node resolves them, from the folder of the package that depends on them).
// Dependencies that are not installed are skipped: optional ones legitimately are.
func walkInstalled(root *packageJSON, rootDir string, visit func(dir string, pkg *packageJSON) error) error {
	type item struct {
		name string
		from string
	}
	queue := []item{}
	for name := range root.declared() {
		queue = append(queue, item{name, rootDir})
	}
	sort.Slice(queue, func(i, j int) bool { return queue[i].name < queue[j].name })
	seen := map[string]bool{}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		dir, pkg, err := resolvePackage(next.name, next.from)
		if err != nil {
			return err
		}
		if pkg == nil {
			continue
		}
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return err
		}
		if seen[real] {
			continue
		}
		seen[real] = true
		if pkg.Name == "" {
			pkg.Name = next.name
		}
		if err := visit(dir, pkg); err != nil {
			return err
		}
		deps := make([]string, 0, len(pkg.Dependencies)+len(pkg.OptionalDependencies))
		for name := range pkg.Dependencies {
			deps = append(deps, name)
		}
		for name := range pkg.OptionalDependencies {
			deps = append(deps, name)
		}
		sort.Strings(deps)
		for _, name := range deps {
			// Resolve from the real folder: a linked (file:) package finds its dependencies beside itself.
			queue = append(queue, item{name, real})
		}
	}
	return nil
}

// requiredPackages lists the resource plugins the program's installed dependencies (direct and
// transitive) declare: a pulumi-plugin.json next to a package's package.json, or its "pulumi"
// field (the older place). The plugin name defaults to the package name without its scope, the
// version to the package's version, as Pulumi's Node.js SDK packages are published.
func requiredPackages(programDir string) ([]*pulumirpc.PackageDependency, error) {
	pkg, err := programPackage(programDir)
	if err != nil || pkg == nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []*pulumirpc.PackageDependency
	err = walkInstalled(pkg, programDir, func(dir string, dep *packageJSON) error {
		info, err := plugin.LoadPulumiPluginJSON(filepath.Join(dir, "pulumi-plugin.json"))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			info = dep.Pulumi
		case err != nil:
			return fmt.Errorf("%s: %w", filepath.Join(dir, "pulumi-plugin.json"), err)
		}
		if info == nil || !info.Resource {
			return nil
		}
		name := info.Name
		if name == "" {
			name = dep.Name[strings.LastIndex(dep.Name, "/")+1:]
		}
		version := info.Version
		if version == "" {
			version = dep.Version
		}
		if version != "" && !strings.HasPrefix(version, "v") {
			version = "v" + version
		}
		p := &pulumirpc.PackageDependency{
			Kind:             "resource",
			Name:             name,
			Version:          version,
			Server:           info.Server,
			Parameterization: parameterization(info.Parameterization),
			Extension:        parameterization(info.ExtensionParameterization),
		}
		id := p.Name + "@" + p.Version
		for _, param := range []*pulumirpc.PackageParameterization{p.Parameterization, p.Extension} {
			if param != nil {
				id += "/" + param.Name + "@" + param.Version
			}
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

func parameterization(p *plugin.PulumiParameterizationJSON) *pulumirpc.PackageParameterization {
	if p == nil {
		return nil
	}
	return &pulumirpc.PackageParameterization{Name: p.Name, Version: p.Version, Value: p.Value}
}
