package bench

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

// The /proc readers see this process, and a child's CPU in the tree's
// once it has ended and been waited for.
func TestProcStat(t *testing.T) {
	st, err := readProcStat(os.Getpid())
	if err != nil || st.ppid != os.Getppid() {
		t.Fatalf("readProcStat(self): %+v, %v; want ppid %d", st, err, os.Getppid())
	}
	before := treeCPU(os.Getpid())
	// A child doing a fixed amount of work (about 0.2 s of CPU here),
	// whatever else the machine runs meanwhile.
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	if err := cmd.Run(); err != nil {
		t.Skipf("no sh to burn CPU with: %v", err)
	}
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if got := treeCPU(os.Getpid()) - before; got < child/2 {
		t.Errorf("treeCPU grew by %v after a child used %v", got, child)
	}
}

// A child process does not inherit the bench's own profile path (it would
// write its profile over the bench's); other variables pass through.
func TestChildEnvironDropsTheBenchsProfile(t *testing.T) {
	t.Setenv("EVENTLINE_CPUPROFILE", "/tmp/bench.pprof")
	t.Setenv("EVENTLINE_RELAY_CPUPROFILE", "/tmp/relay.pprof")
	env := childEnviron()
	if slices.Contains(env, "EVENTLINE_CPUPROFILE=/tmp/bench.pprof") {
		t.Fatal("a child inherits EVENTLINE_CPUPROFILE")
	}
	if !slices.Contains(env, "EVENTLINE_RELAY_CPUPROFILE=/tmp/relay.pprof") {
		t.Fatal("childEnviron dropped another variable")
	}
}
