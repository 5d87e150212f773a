// Command eventline is the single CLI of the eventline toolkit. Everything it
// does lives in internal/cli, where it is tested without a process.
package main

import (
	"os"

	"github.com/eventline/eventline/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
