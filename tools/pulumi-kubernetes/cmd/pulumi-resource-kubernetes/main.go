// pulumi-resource-kubernetes: upstream's main (provider/v4/cmd/pulumi-resource-kubernetes/main.go),
// which cannot be built straight from the module cache because it embeds files that
// upstream's `go generate` writes (schema-embed.json, terraform-mapping-embed.json) and
// the module zip does not contain. Generate them with ./cmd/gen-k8s-schema first.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
