package bench

import (
	"runtime"
	"strings"
)

func numCPU() int { return runtime.NumCPU() }

func splitLines(s string) []string { return strings.Split(s, "\n") }

func cutPrefix(line, key string) (string, bool) {
	k, v, ok := strings.Cut(line, ":")
	if !ok || strings.TrimSpace(k) != key {
		return "", false
	}
	return strings.TrimSpace(v), true
}
