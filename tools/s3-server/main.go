// Command s3-server serves an S3-compatible API (gofakes3) on a loopback port for Stackrail's
// tests: the blob store and the Pulumi diy backend talk to it exactly as they would to S3.
// It prints `listening on 127.0.0.1:<port>` once the socket accepts connections, so a caller can
// ask for port 0 and read the port chosen by the kernel.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	buckets := flag.String("bucket", "", "bucket to create at start (repeatable as a comma-separated list)")
	flag.Parse()

	backend := s3mem.New()
	faker := gofakes3.New(backend, gofakes3.WithAutoBucket(true), gofakes3.WithLogger(gofakes3.DiscardLog()))
	for _, name := range splitList(*buckets) {
		if err := backend.CreateBucket(name); err != nil {
			log.Fatalf("creating bucket %q: %v", name, err)
		}
	}

	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("listening on %s: %v", *addr, err)
	}
	fmt.Printf("listening on %s\n", listener.Addr().String())

	server := &http.Server{Handler: faker.Server()}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
		<-stop
		_ = server.Close()
	}()
	if err := server.Serve(listener); err != nil && err != http.ErrServerClosed {
		log.Fatalf("serving: %v", err)
	}
}

func splitList(raw string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(raw); i++ {
		if i == len(raw) || raw[i] == ',' {
			if i > start {
				out = append(out, raw[start:i])
			}
			start = i + 1
		}
	}
	return out
}
