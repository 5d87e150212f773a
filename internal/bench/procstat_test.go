package bench

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// The /proc readers see this process, and a child's CPU in the tree's
// once it has ended and been waited for.
func TestProcStat(t *testing.T) {
	st, err := readProcStat(os.Getpid())
	if err != nil || st.ppid != os.Getppid() {
		t.Fatalf("readProcStat(self): %+v, %v; want ppid %d", st, err, os.Getppid())
	}
	before := treeCPU(os.Getpid())
	// A child that burns about 0.3 s of CPU.
	cmd := exec.Command("sh", "-c", "i=0; end=$(( $(date +%s%N) + 300000000 )); while [ $(date +%s%N) -lt $end ]; do i=$((i+1)); done")
	if err := cmd.Run(); err != nil {
		t.Skipf("no sh to burn CPU with: %v", err)
	}
	if got := treeCPU(os.Getpid()) - before; got < 100*time.Millisecond {
		t.Errorf("treeCPU grew by %v after a child burnt ~300 ms", got)
	}
	if env := os.Getenv("EVENTLINE_TEST_TREE_PID"); env != "" {
		pid, _ := strconv.Atoi(env)
		t.Logf("treeCPU(%d) = %v, processCPU = %v", pid, treeCPU(pid), processCPU(pid))
	}
}
